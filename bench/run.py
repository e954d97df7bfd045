"""`make bench`: run every benchmark, write bench/results.json and the tables of
docs/BENCHMARKS.md.

    .venv/bin/python bench/run.py                 # everything (`make bench`, under 10 minutes)
    .venv/bin/python bench/run.py --quick         # tiny sizes (`make bench QUICK=1`, under 1)
    .venv/bin/python bench/run.py --only server   # one module; the others' figures are kept

Each module of MODULES (a file bench/NAME.py; a missing one is skipped) exposes
`run(quick: bool) -> dict[str, float]` and may expose `tables(figures) -> dict[str, str]`.
results.json holds one key per figure (`module.figure`, numbers only) beside the CPU
model and the core count; each table goes between its markers in BENCHMARKS.md
(`<!-- bench:NAME -->` … `<!-- /bench:NAME -->`), so the prose around them stays.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.append(str(HERE))  # after the packages: bench/server.py is no `server`

import kit  # noqa: E402

MODULES = ["core", "server", "flood", "rekey", "coordinator", "swarm", "attachments"]
RESULTS = HERE / "results.json"


def load(name: str) -> ModuleType | None:
    path = HERE / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def generic_table(figures: dict[str, float]) -> str:
    return kit.table(["figure", "value"], [[k, f"{v:,.4g}"] for k, v in sorted(figures.items())])


def run_all(names: list[str], quick: bool) -> tuple[dict[str, float], dict[str, str]]:
    figures: dict[str, float] = {}
    tables: dict[str, str] = {}
    for name in names:
        module = load(name)
        if module is None:
            print(f"bench/{name}.py: not here, skipped", flush=True)
            continue
        print(f"bench/{name}.py …", flush=True)
        started = time.perf_counter()
        got = module.run(quick)
        took = time.perf_counter() - started
        bad = [k for k, v in got.items() if not isinstance(v, int | float) or math.isnan(v)]
        if bad:
            raise SystemExit(f"bench/{name}.py gave figures that are not numbers: {bad}")
        print(f"  {took:.0f} s", flush=True)
        figures.update({f"{name}.{k}": float(v) for k, v in got.items()})
        figures[f"{name}.run_s"] = took
        made = module.tables(got) if hasattr(module, "tables") else {name: generic_table(got)}
        tables.update(made)
    return figures, tables


def aims(f: dict[str, float]) -> str:
    """The aims of issue 10 beside this run's figures."""
    rows: list[list[str]] = []

    def row(aim: str, key: str, fmt: str, ok: Any) -> None:
        if key in f:
            rows.append([aim, fmt.format(f[key]), "met" if ok(f[key]) else "not met"])

    last = max(
        (int(k.rsplit("_", 1)[1]) for k in f if k.startswith("coordinator.size_")), default=0
    )
    for cmd, label in (("sync_one", "`sync` with one new record"), ("show", "`show ID`"),
                       ("conflicts", "`conflicts`")):  # fmt: skip
        row(f"{label}: at most 1.2 × from the smallest to the largest size (fixed cost off)",
            f"coordinator.{cmd}_growth_{last}", "{:.2f} ×", lambda x: x <= 1.2)  # fmt: skip
    row("`records` grows no faster than the records it prints (per record)",
        f"coordinator.records_growth_{last}", "{:.2f} ×", lambda x: x <= 1.2)  # fmt: skip
    row("the first pull reaches 80 % of cores × one core's `open_bundle`",
        "coordinator.first_pull_over_cores_open", "{:.0%}", lambda x: x >= 0.8)  # fmt: skip
    peaks = [v for k, v in f.items() if k.startswith("coordinator.") and "_peak_mib_" in k
             and k.endswith(f"_{last}")]  # fmt: skip
    if peaks:
        f["coordinator.largest_peak_mib"] = max(peaks)
    row("peak memory of any command at the largest size under 200 MiB",
        "coordinator.largest_peak_mib", "{:.0f} MiB", lambda x: x < 200)  # fmt: skip
    row("`fieldsync --help` under 0.15 s", "coordinator.help_s", "{:.3f} s", lambda x: x < 0.15)
    if f"coordinator.fixed_s_{last}" in f:
        f["coordinator.fixed_without_unlock_s"] = (
            f[f"coordinator.fixed_s_{last}"] - f["coordinator.argon2id_s"]
        )
    row("fixed cost of a command under 0.3 s plus the Argon2id unlock",
        "coordinator.fixed_without_unlock_s", "{:.3f} s + unlock", lambda x: x < 0.3)  # fmt: skip
    row("server push ≥ 5,000 records/s with 8 writers", "server.push_8_writers_per_s",
        "{:,.0f} records/s", lambda x: x >= 5000)  # fmt: skip
    return kit.table(["aim (issue 10)", "this run", ""], rows, "lrl")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--only", help="comma-separated modules (default: all)")
    ap.add_argument("--no-write", action="store_true", help="print, write no file")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else MODULES
    started = time.perf_counter()
    figures, tables = run_all(names, args.quick)
    kept = {}
    if args.only and RESULTS.exists():
        kept = json.loads(RESULTS.read_text(encoding="utf-8")).get("figures", {})
    figures = {**{k: v for k, v in kept.items() if k.split(".")[0] not in names}, **figures}
    tables["aims"] = aims(figures)
    results = {
        "cpu_model": kit.cpu_model(),
        "cores": kit.cores(),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "quick": args.quick,
        "figures": dict(sorted(figures.items())),
    }
    tables["machine"] = (
        f"{results['date']}: {results['cpu_model']}, {results['cores']} cores, Python"
        f" {results['python']}{' (QUICK=1: tiny sizes)' if args.quick else ''};"
        f" `make bench` took {time.perf_counter() - started:.0f} s."
    )
    for text in tables.values():
        print("\n" + text)
    if not args.no_write:
        RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        kit.write_tables(tables)
        print(f"\nwrote {RESULTS.relative_to(HERE.parent)} and docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
