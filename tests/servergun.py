"""Run `fieldsync-server run` (real gunicorn) on a free loopback port, for tests and bench.

    with Gunicorn(data_dir, workers=4) as server:
        HttpTransport(server.url) ...

The server runs in its own process group so that `kill9()` takes the master and
every worker down at once, as a power cut would; `stop()` always runs on exit.
Its stdout and stderr go to files (`server.log_text()`), to check what it logs;
each function in `STOPPED` is called with the server once it has stopped (the log
scan of tests/logscan.py reads its logs then).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

BIN = Path(sys.executable).parent / "fieldsync-server"
STOPPED: list[Callable[[Gunicorn], None]] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workspace_code(data_dir: Path) -> str:
    """A one-time workspace code, minted as an operator would."""
    out = subprocess.run(
        [str(BIN), "workspace-code", "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


class Gunicorn:
    def __init__(
        self,
        data_dir: Path,
        *,
        workers: int = 4,
        port: int | None = None,
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.port = port or free_port()
        self.log_dir = Path(log_dir or self.data_dir.parent / "logs")
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Gunicorn:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        out = open(self.log_dir / f"stdout.{self.starts}", "wb")
        err = open(self.log_dir / f"stderr.{self.starts}", "wb")
        cmd = [
            str(BIN), "run", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", str(self.workers),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        out.close()
        err.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_text()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + "/v1/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not come up")

    def kill9(self) -> None:
        """SIGKILL the whole process group: master and workers, mid-request."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._stopped()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stray workers, if any
        self._stopped()

    def _stopped(self) -> None:
        if self.proc is not None:
            self.proc = None
            for observer in STOPPED:
                observer(self)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("std*.*")))

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
