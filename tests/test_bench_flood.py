"""bench/flood.py runs end to end on tiny sizes. No time is asserted: the figures
belong in docs/RELIABILITY.md, not in a test; what is asserted is what must hold
whatever the machine (every answer to the others was 200, none was a 5xx, no worker
was lost, the revoke stopped the flood)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "flood.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_flood", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_flood"] = module
    spec.loader.exec_module(module)
    return module


def test_flood_bench_on_tiny_sizes(bench: ModuleType) -> None:
    figures = bench.measure(bench.Scale.tiny())
    assert sorted(figures) == sorted(
        [
            *(
                f"{n}_{k}"
                for n in ("push", "pull", "health")
                for k in ("ms", "flood_ms", "flood_factor")
            ),
            "revoke_ms",
            "revoke_flood_ms",
            "revoke_to_refusal_ms",
            "flood_requests",
            "flood_busy",
            "flood_cut",
            "flood_bytes_per_push",
            "server_5xx",
            "workers_lost",
            "worker_timeouts",
        ]
    )
    assert (figures["server_5xx"], figures["workers_lost"], figures["worker_timeouts"]) == (0, 0, 0)
    assert figures["flood_requests"] > 0 and math.isfinite(figures["revoke_to_refusal_ms"])
    text = bench.report(figures)
    assert "| another device's 1-bundle push (ms) |" in text and "workers lost: 0" in text
