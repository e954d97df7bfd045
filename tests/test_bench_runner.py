"""`make bench`'s runner and the replica benchmarks, on tiny sizes: every figure comes out
a number, the tables land between their markers and the prose around them stays.
No timing is asserted (the figures belong in docs/BENCHMARKS.md, not in a test)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str) -> ModuleType:
    sys.path.append(str(BENCH))  # for `import kit`, after the packages
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_tables_go_between_their_markers(tmp_path: Path) -> None:
    kit = load("kit")
    doc = tmp_path / "BENCH.md"
    doc.write_text("# B\n\nprose before\n\n<!-- bench:one -->\nold\n<!-- /bench:one -->\n\nafter\n")
    kit.write_tables({"one": "| a |\n|---|", "two": "new table"}, doc)
    assert doc.read_text() == (
        "# B\n\nprose before\n\n<!-- bench:one -->\n| a |\n|---|\n<!-- /bench:one -->\n\nafter"
        "\n\n## two\n\n<!-- bench:two -->\nnew table\n<!-- /bench:two -->\n"
    )


def test_the_replica_benchmarks_run_on_tiny_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_KDF_FAST", "1")  # honoured under pytest only
    runner = load("run")
    coordinator = load("coordinator")
    swarm = load("swarm")
    monkeypatch.setattr(coordinator, "QUICK_SIZES", (16, 32, 48))
    monkeypatch.setattr(coordinator, "open_rates", lambda ws, count: {
        "open_bundle_one_core_per_s": 1.0, "open_one_core_per_s": 1.0, "open_pool_per_s": 1.0,
        "open_threads_per_s": 1.0})  # fmt: skip
    figures = coordinator.run(quick=True)
    assert all(isinstance(v, float) and not math.isnan(v) for v in figures.values())
    assert [figures[f"size_{i}"] for i in range(3)] == [16.0, 32.0, 48.0]
    tables = coordinator.tables(figures)
    assert sorted(tables) == ["coordinator", "first-pull", "startup"]
    assert "| `show ID` |" in tables["coordinator"]
    monkeypatch.setattr(swarm, "run", lambda quick: {
        "volunteers": 2.0, "captures_each": 2.0, "swarm_s": 1.0, "coordinator_syncs": 1.0,
        "alone_push_s": 1.0, "alone_pull_s": 1.0, "baseline_s": 2.0})  # fmt: skip
    aims = runner.aims({f"coordinator.{k}": v for k, v in figures.items()})
    assert aims.count("\n") == 9  # a header, a rule, eight aims of the coordinator's
    assert "| `fieldsync --help` under 0.15 s |" in aims


def test_a_small_swarm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_KDF_FAST", "1")
    swarm = load("swarm")
    figures = swarm.run(quick=True)
    assert (figures["volunteers"], figures["captures_each"]) == (5.0, 6.0)
    assert figures["coordinator_syncs"] >= 1 and figures["swarm_s"] > 0
    assert "5 volunteers × 6 captures" in swarm.tables(figures)["swarm"]


def test_the_attachment_benchmark_runs_on_a_tiny_file() -> None:
    attachments = load("attachments")
    figures = attachments.run(quick=True, mb=2)
    assert sorted(figures) == sorted(
        ["file_mb", "aead_mb_s", "disk_mb_s", "disk_seq_mb_s", "seal_mb_s", "upload_mb_s",
         "upload_1conn_mb_s", "upload_256k_mb_s", "download_mb_s", "upload_aim", "download_aim",
         "chunk_write_ms", "in_process_upload_mb_s"]
    )  # fmt: skip
    assert all(isinstance(v, float) and v > 0 for v in figures.values())
    assert (
        "| upload through the server, 1 MiB chunks, 2 connections |"
        in (attachments.tables(figures)["attachments"])
    )


def test_the_push_breakdown_times_stages_of_this_code() -> None:
    stages = load("pushstages")
    missing = {stage for stage, owner, name in stages.STAGES if not hasattr(owner, name)}
    assert missing == stages.OLDER_CODE_STAGES  # a renamed function is seen here
    names = {stage for stage, _, _ in stages.STAGES} | {
        "write lock + BEGIN IMMEDIATE",
        "COMMIT (fsync)",
        "garbage collection",
        "rest of the request (Flask, timers)",
    }
    grouped = [name for group in stages.GROUPS.values() for name in group]
    assert sorted(grouped) == sorted(names)  # each stage in one group, no stray name
    f = stages.run(bundles=80, writers=2)
    assert set(f["stages_us_per_record"]) == names - stages.OLDER_CODE_STAGES
    assert f["bundles"] == 80 and f["writers"] == 2
    numbers = [v for k, v in f.items() if k not in ("stages_us_per_record", "bundles", "writers")]
    assert all(type(v) is float and v > 0 for v in numbers)
