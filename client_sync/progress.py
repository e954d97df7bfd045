"""Progress of long operations: a bar on stderr when it is a terminal, nothing on a pipe,
and, for the workbench, reports to a sink set for the thread that runs the job."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import TextIO

# (label, done, total) -> None: where the workbench's job thread wants progress.
SINK: ContextVar[Callable[[str, int, int | None], None] | None] = ContextVar(
    "fieldsync_progress_sink", default=None
)


class Progress:
    """`with Progress("pushing", total) as bar: bar.advance(n)`; total may be unknown (None)."""

    WIDTH = 28

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: TextIO | None = None,
        unit: str = "",
    ) -> None:
        self.label = label
        self.unit = unit  # "B": counts are bytes, shown in MB
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled and self.done:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.done += n
        sink = SINK.get()
        if sink is not None:
            sink(self.label, self.done, self.total)
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        rate = self.done / max(now - self._start, 1e-6)
        if self.unit == "B":
            done, total, speed = _mb(self.done), _mb(self.total or 0) + " MB", _mb(rate) + " MB"
        else:
            done, total, speed = str(self.done), str(self.total), f"{rate:,.0f}"
        if self.total:
            filled = int(self.WIDTH * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = f"\r{self.label} [{bar}] {done}/{total} ({speed}/s)"
        else:
            text = f"\r{self.label} {done} ({speed}/s)"
        self.stream.write(text)
        self.stream.flush()


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"
