"""bench/rekey.py's building blocks on a handful of bundles: they run and re-key everything.

No timing is asserted here: the figures belong in docs/BENCHMARKS.md, not in a test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "rekey.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_rekey", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_rekey"] = module
    spec.loader.exec_module(module)
    return module


def test_rekey_bench_building_blocks(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_KDF_FAST", "1")
    result = bench.measure(bundles=20, rounds=2, workers=2)
    assert (result["bundles"], result["rounds"], len(result["rates"])) == (20, 2, 2)
    assert result["rate"] > 0 and result["raw"] > 0
    text = bench.report(result)
    assert "| re-key, end to end" in text and "| raw HPKE open + seal" in text
