"""bench/core.py still runs: every benchmark with a tiny count. No timing is asserted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "core.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_core", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_core"] = module
    spec.loader.exec_module(module)
    return module


core = load_bench()


def test_run_gives_every_figure() -> None:
    figures = core.run(number=2, repeats=1, merge_size=60)
    assert sorted(figures) == sorted(
        [f"{key}_us" for _, key, _ in core.ROWS]
        + ["seal_over_hpke_seal", "open_over_hpke_open", "merge_over_sqlite_insert",
           "seal_beyond_primitives_us"]
    )  # fmt: skip
    assert all(type(v) is float for v in figures.values())
    text = core.report(figures)
    assert "seal ÷ raw HPKE seal" in text and "SQLite insert ÷ merge" in text


def test_the_benchmarked_record_is_sealed_and_opens() -> None:
    from protocol import crypto

    s = core.make_setup()
    opened = crypto.open_bundle(s.bundle, s.device_public, {1: s.epoch.private_bytes}, s.tag_key)
    assert [(c.field, c.value) for c in opened] == [(c.field, c.value) for c in s.record]


def test_merge_workload_has_edits_and_new_registers() -> None:
    cells = core.merge_cells(60)
    edits = [c for c in cells if c.supersedes]
    assert len(edits) == 10 and len({c.key for c in cells}) == 50


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    core.main(["--number", "2", "--repeats", "1", "--merge-size", "30"])
    out = capsys.readouterr().out
    assert "`seal_bundle`, 10-field record" in out
