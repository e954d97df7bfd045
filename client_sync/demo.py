"""`make demo`: one day of a picket, played through the real command line.

It starts a real server (`fieldsync-server run` on a free loopback port, with a
temporary data directory), founds a workspace, enrolls two volunteers and a
second coordinator, and records a day: a picket, three detentions (one fined),
two relatives. The volunteers disagree on the attendance; one adds a release
time later, and attaches a photo of the police van (EXIF and GPS kept: it is
evidence). A coordinator syncs, reads the merged records and the conflict,
resolves it, exports CSV, and fetches the photo, verified against the SHA-256 taken
at capture. Last, every plaintext value, the photo's metadata included, is searched
for in the server's data directory, byte for byte: none is there.

Every name and place is invented. The server and client helpers here are also
used by the end-to-end tests (tests/test_client_*.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .demo_photo import EXIF_STRINGS, photo_with_gps

BIN = Path(sys.executable).parent


def _command(script: str, module: str) -> list[str]:
    exe = BIN / script
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


def client_command() -> list[str]:
    return _command("fieldsync", "client_sync")


def server_command() -> list[str]:
    return _command("fieldsync-server", "server.cli")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    port: int

    def stop(self) -> None:
        """Stop the server and its workers: only the process group this helper started."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)  # gunicorn: quick shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def workspace_code(self) -> str:
        out = subprocess.run(
            [*server_command(), "workspace-code", "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip().splitlines()[-1]


def start_server(data_dir: Path, port: int | None = None, workers: int = 2) -> ServerProcess:
    """Start `fieldsync-server run` on 127.0.0.1 and wait (at most 30 s) until it answers."""
    port = port or free_port()
    log = open(data_dir.parent / f"server-{port}.log", "ab")  # the child keeps it open
    proc = subprocess.Popen(
        [
            *server_command(),
            "run",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,  # its own process group, so stop() ends exactly it
    )
    log.close()
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", data_dir, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fieldsync-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(server.url + "/v1/health", timeout=1) as resp:  # noqa: S310
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("fieldsync-server did not answer within 30 s")


@contextlib.contextmanager
def running_server(data_dir: Path, workers: int = 2) -> Iterator[ServerProcess]:
    server = start_server(data_dir, workers=workers)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def last(self) -> str:
        return self.out.strip().splitlines()[-1]


class Device:
    """Runs `fieldsync` for one device (its own FIELDSYNC_HOME), optionally as a transcript."""

    def __init__(
        self,
        name: str,
        home: Path,
        passphrase: str,
        echo: TextIO | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.home = home
        self.echo = echo
        self.env = {
            **os.environ,
            "FIELDSYNC_HOME": str(home),
            "FIELDSYNC_PASSPHRASE": passphrase,
            **(env or {}),
        }

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [*client_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if self.echo is not None:
            shown = " ".join(shlex.quote(a) if len(a) < 90 else a[:40] + "…" for a in args)
            self.echo.write(f"\n[{self.name}] $ fieldsync {shown}\n")
            for line in (proc.stdout + proc.stderr).rstrip().splitlines():
                self.echo.write(f"    {line}\n")
            self.echo.flush()
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"`fieldsync {' '.join(args)}` on {self.name} failed ({proc.returncode}):"
                f" {proc.stderr.strip()}"
            )
        return result


# --- the day ------------------------------------------------------------------------------

PICKET = {
    "date": "2026-12-04",
    "date_precision": "exact",
    "place": "Gate of the consulate, Zhelsiz Lane (invented)",
    "attendance": "40",
    "police_action": "Dispersed the picket after twenty minutes",
    "sources": "Volunteer Asel, present at the gate",
    "reliability": "high",
}
DETENTIONS = [
    {
        "person_name": "Aigul Demokyzy",
        "detained_at": "2026-12-04T11:20",
        "held_at": "Police station No. 7 of Kokterek district (invented)",
        "charges": "Art. 488 Administrative Code",
        "sources": "Volunteer Asel saw the arrest",
    },
    {
        "person_name": "Serik Samplebekov",
        "detained_at": "2026-12-04T11:25",
        "held_at": "Police station No. 7 of Kokterek district (invented)",
        "charges": "Art. 488 Administrative Code",
        "sources": "Volunteer Asel saw the arrest",
    },
    {
        "person_name": "Marat Fictionuly",
        "detained_at": "2026-12-04T11:40",
        "held_at": "Temporary holding centre Birlik (invented)",
        "charges": "Art. 488 Administrative Code",
        "court": "Specialised administrative court No. 3 (invented)",
        "court_date": "2026-12-05",
        "fine_amount": "69000",
        "fine_currency": "KZT",
        "fine_paid": "false",
        "sources": "Volunteer Bolat, from the court hearing",
    },
]
RELATIVES = [
    {
        "full_name": "Nurlan Placeholderuly",
        "name_latin": "Nurlan Placeholderuly",
        "petitioner": "Aigul Demokyzy",
        "relation": "brother",
        "status": "camp",
        "whereabouts": "not_disclosed",
        "detained_since": "2018-03",
        "date_precision": "unknown_day",
        "sources": "Aigul Demokyzy, interviewed by volunteer Bolat",
    },
    {
        "full_name": "Gulnara Inventova",
        "petitioner": "Serik Samplebekov",
        "relation": "mother",
        "status": "prison",
        "whereabouts": "acknowledged",
        "sentence": "Fourteen years, per a letter from relatives",
        "sources": "Serik Samplebekov, interviewed by volunteer Bolat",
    },
]
RELEASED_AT = "2026-12-04T19:45"


def _sets(values: dict[str, str]) -> list[str]:
    out = []
    for name, value in values.items():
        out += ["--set", f"{name}={value}"]
    return out


@dataclass
class Day:
    """Who took part and what they recorded: the ids the tests assert on."""

    admin: Device
    volunteer_a: Device
    volunteer_b: Device
    coordinator: Device
    ids: dict[str, str]
    devices: dict[str, str]


NAMES = {
    "admin": "Dana's laptop",
    "volunteer_a": "Asel's phone",
    "volunteer_b": "Bolat's phone",
    "coordinator": "Erlan's laptop",
}


def enroll(admin: Device, device: Device, role: str, name: str | None = None) -> str:
    invite = admin.run("invite", "--role", role).last
    return device.run("join", invite, *(["--device-name", name] if name else [])).last


def play_day(
    server: ServerProcess,
    root: Path,
    echo: TextIO | None = None,
    env: dict[str, str] | None = None,
) -> Day:
    """Found the workspace, enroll the team, record the day and sync the volunteers."""

    def device(name: str) -> Device:
        return Device(name, root / name, f"passphrase of {name}", echo, env)

    admin, vol_a, vol_b, coord = (
        device("coordinator-dana"),
        device("volunteer-asel"),
        device("volunteer-bolat"),
        device("coordinator-erlan"),
    )
    admin.run(
        "init", "--server", server.url, "--workspace", "Zhelsiz Lane pickets",
        "--code", server.workspace_code(), "--device-name", NAMES["admin"],
    )  # fmt: skip
    ids: dict[str, str] = {}
    devs = {"admin": json.loads(admin.run("status", "--format", "json").out)["device_id"]}
    devs["volunteer_a"] = enroll(admin, vol_a, "volunteer", NAMES["volunteer_a"])
    devs["volunteer_b"] = enroll(admin, vol_b, "volunteer", NAMES["volunteer_b"])
    devs["coordinator"] = enroll(admin, coord, "coordinator", NAMES["coordinator"])
    admin.run("approve", devs["coordinator"])

    ids["picket"] = vol_a.run("add", "picket", *_sets(PICKET)).last
    for n, det in enumerate(DETENTIONS):
        who = vol_a if n < 2 else vol_b
        ids[f"detention{n + 1}"] = who.run(
            "add", "detention", *_sets({"picket_id": ids["picket"], **det})
        ).last
    for n, rel in enumerate(RELATIVES):
        ids[f"relative{n + 1}"] = vol_b.run("add", "relative", *_sets(rel)).last
    # Bolat counted differently: he edits the attendance of Asel's picket record.
    vol_b.run("edit", ids["picket"], "--type", "picket", "--set", "attendance=35")
    vol_a.run("sync")
    vol_b.run("sync")
    # Later that evening Asel learns when Aigul was released.
    vol_a.run("edit", ids["detention1"], "--set", f"released_at={RELEASED_AT}")
    vol_a.run("sync")
    return Day(admin, vol_a, vol_b, coord, ids, devs)


def plaintext_markers() -> list[str]:
    """Every text value of the day, and the type and field names: none may reach the server."""
    values = [PICKET, *DETENTIONS, *RELATIVES]
    # Short words ("camp", "false") and numbers would match by chance in any binary
    # file, so the search covers the distinctive values and the compound field names.
    texts = {v for rec in values for v in rec.values() if not v.isdigit() and len(v) >= 6}
    names = {k for rec in values for k in rec if "_" in k}
    devices = set(NAMES.values())
    return sorted(texts | names | devices | {"picket", "detention", "relative", RELEASED_AT})


def grep_dir(directory: Path, markers: list[str]) -> dict[str, list[str]]:
    """marker -> files under `directory` whose bytes contain it (UTF-8, UTF-16 or base64)."""
    found: dict[str, list[str]] = {}
    files = [p for p in directory.rglob("*") if p.is_file()]
    blobs = {p: p.read_bytes() for p in files}
    for marker in markers:
        forms = [marker.encode("utf-8"), marker.encode("utf-16-le")]
        hits = [str(p) for p, data in blobs.items() if any(f in data for f in forms)]
        if hits:
            found[marker] = hits
    return found


DEMO_DIR = Path("fieldsync-demo")  # kept after the run, so the day can be opened again
CAPTION = "The police van at the consulate gate"


def main() -> int:
    started = time.monotonic()
    out = sys.stdout
    root = DEMO_DIR.resolve()
    if root.exists():
        shutil.rmtree(root)  # the previous run's invented day
    (root / "server-data").mkdir(parents=True)
    out.write(f"fieldsync demo: a server on loopback, data in {root / 'server-data'}\n")
    with running_server(root / "server-data") as server:
        out.write(f"server running at {server.url}\n")
        day = play_day(server, root, out)
        # Asel photographed the police van: the photo is sealed whole, its GPS kept (it
        # is evidence), and sent after the records; Dana fetches and verifies it.
        photo = root / "police-van.jpg"
        photo.write_bytes(photo_with_gps())
        day.volunteer_a.run("attach", day.ids["picket"], str(photo), "--caption", CAPTION)
        day.volunteer_a.run("sync")
        coord = day.admin
        coord.run("sync")
        coord.run("records")
        coord.run("conflicts")
        coord.run("resolve", day.ids["picket"], "attendance", "--keep", "1")
        coord.run("sync")
        day.coordinator.run("sync")
        day.coordinator.run("show", day.ids["picket"])
        csv_path = root / "detentions.csv"
        coord.run("export", "--format", "csv", "--type", "detention", "--out", str(csv_path))
        out.write(f"\n--- {csv_path.name} ---\n{csv_path.read_text(encoding='utf-8-sig')}")
        coord.run("open", day.ids["picket"], "--out", str(root / "evidence"))
        coord.run("devices")
        coord.run("safety-number")
        day.volunteer_a.run("safety-number")
        markers = [*plaintext_markers(), CAPTION, *(t.decode() for t in EXIF_STRINGS)]
        found = grep_dir(server.data_dir, markers)
    out.write(
        f"\nsearched every byte of the server's data directory for {len(markers)}"
        " plaintext values and names:\n"
    )
    for marker in markers:
        out.write(f"    {'FOUND' if marker in found else 'absent':6}  {marker}\n")
    if found:
        out.write(f"PLAINTEXT FOUND ON THE SERVER: {sorted(found)}\n")
        return 1
    out.write(f"none is there. Demo finished in {time.monotonic() - started:.1f} s.\n")
    bin_dir = Path(sys.executable).parent
    out.write(
        "\nOpen the same day in the workbench, as Dana the coordinator (her passphrase is"
        f" {day.admin.env['FIELDSYNC_PASSPHRASE']!r}):\n"
        f"    {bin_dir / 'fieldsync-server'} run --data-dir {root / 'server-data'}"
        f" --port {server.port} &    # the demo's server again, to sync\n"
        f"    FIELDSYNC_HOME={day.admin.home} {bin_dir / 'fieldsync'} ui\n"
        "Every record, conflict and device of the day is there; the volunteers' profiles"
        f" are beside it in {root}.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
