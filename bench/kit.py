"""Shared parts of the benchmarks: the machine, child processes with their peak memory,
medians, and the tables of docs/BENCHMARKS.md (between markers, so prose stays).

Every bench module exposes `run(quick: bool) -> dict[str, float]` (a key per figure,
numbers only) and may expose `tables(figures) -> dict[str, str]`: markdown tables by
name, each written between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"
BIN = Path(sys.executable).parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass
class Ran:
    """One child process: exit code, wall seconds, peak resident memory (MiB), output."""

    rc: int
    wall: float
    peak_mib: float
    out: bytes
    err: bytes


# Started by a small Python process of its own: on Linux a child's peak RSS (from
# `wait4`) counts the memory of the process that forked it, up to its exec, so a
# command forked straight from this (large) benchmark would report our memory.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(proc.returncode)
"""


def run_child(args: Sequence[str], env: dict[str, str], stdout_path: Path | None = None) -> Ran:
    """Run a command to its end: wall time, and its own peak RSS (with the workers it
    waited for), through `_LAUNCHER`."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        out_fh = open(stdout_path, "wb") if stdout_path else None
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, rss.name, *args],
            env=child_env(env),
            stdout=out_fh or subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        wall = time.perf_counter() - start
        if out_fh is not None:
            out_fh.close()
        peak = int(rss.read() or 0) / 1024
    return Ran(proc.returncode, wall, peak, proc.stdout or b"", proc.stderr)


def child_env(env: dict[str, str]) -> dict[str, str]:
    """A command's environment as a user's: bytecode caches written and read (an
    installed package has them; this workplace turns them off for its own tools)."""
    return {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}


def fieldsync(*args: str, env: dict[str, str], stdout_path: Path | None = None) -> Ran:
    ran = run_child([str(BIN / "fieldsync"), *args], env, stdout_path)
    if ran.rc != 0:
        raise RuntimeError(f"fieldsync {' '.join(args)} failed ({ran.rc}): {ran.err.decode()}")
    return ran


def repeat(fn: Callable[[], Ran], times: int) -> tuple[float, float]:
    """Median wall seconds and the largest peak memory of `times` runs."""
    runs = [fn() for _ in range(times)]
    return median([r.wall for r in runs]), max(r.peak_mib for r in runs)


# --- docs/BENCHMARKS.md ---------------------------------------------------------------


def write_tables(tables: dict[str, str], doc: Path = DOC) -> None:
    """Put each table between its markers; a table without markers yet goes at the end,
    under a heading of its name."""
    text = doc.read_text(encoding="utf-8")
    for name, table in tables.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        block = f"{start}\n{table.rstrip()}\n{end}"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=block: b, text)
        else:
            text = text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    doc.write_text(text, encoding="utf-8")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A markdown table; `align` gives l or r per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def num(x: float, digits: int = 0) -> str:
    if x != x:  # NaN: not measured
        return "–"
    return f"{x:,.{digits}f}"
