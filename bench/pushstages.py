"""Where the server's CPU per pushed record goes: the push path in-process, stage by stage.

    .venv/bin/python bench/pushstages.py [--bundles 8000] [--writers 8] [--profile FILE]

The Flask app of `server/` on a fresh data directory; requests signed as
bench/server.py signs them (one record of 6 fields per bundle, 250 bundles per
request, each writer its own device). Each request's WSGI environ is built before
the clock starts and handed to the app as gunicorn would hand it, so the figures
leave out gunicorn's HTTP parsing and socket reads (measured by bench/server.py).

The push runs twice on the same workspace: once bare (the total), once with each
stage's functions wrapped in a timer that counts its own thread CPU time, less
the stages nested inside it. "rest of the request" is the timed total less the
stages: Flask's dispatch, the answer, and the timers' own cost. Beside them, in the
same run: raw `Ed25519PublicKey.verify` of the same signatures (the floor no
strict verifier can go below) and SHA-256 of the same cells.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import hashlib
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from serverkit import FlaskTransport, Kit, Member  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

import protocol.crypto as crypto_mod  # noqa: E402
import protocol.keys as keys_mod  # noqa: E402
import server.api.push as push_route  # noqa: E402
import server.auth as auth_mod  # noqa: E402
import server.fastload as fastload_mod  # noqa: E402
import server.ingest as ingest_mod  # noqa: E402
import server.store.bundles as bundles_mod  # noqa: E402
import server.store.keylog as keylog_mod  # noqa: E402
import server.store.nonces as nonces_mod  # noqa: E402
from protocol import keys  # noqa: E402
from protocol.encoding import b64d, b64e  # noqa: E402
from protocol.model import Bundle  # noqa: E402
from server.app import create_app  # noqa: E402
from server.store import Paths, server_db  # noqa: E402

PER_REQUEST = 250
FIELDS = 6


def record(i: int) -> dict[str, Any]:
    return {
        "date": f"2026-11-{1 + i % 28:02d}",
        "place": f"Tereldy Square, gate {i % 7}",
        "attended": 10 + i % 40,
        "police": "dispersed after forty minutes; three detained",
        "outcome": "fined under article 488",
        "source": "witness on site, reliability B",
    }


class Timers:
    """Exclusive thread-CPU time per stage: a stage's own time, less the stages it calls."""

    def __init__(self) -> None:
        self.cpu: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list[int]] = []  # per open stage: [start, time of nested stages]
        self._gc_start = 0
        self.cpu["garbage collection"] = self.calls["garbage collection"] = 0

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time_ns
        stack = self._stack
        cpu, calls = self.cpu, self.calls
        cpu.setdefault(stage, 0)
        calls.setdefault(stage, 0)

        def timed(*args: Any, **kw: Any) -> Any:
            frame = [clock(), 0]
            stack.append(frame)
            try:
                return fn(*args, **kw)
            finally:
                stack.pop()
                took = clock() - frame[0]
                cpu[stage] += took - frame[1]
                calls[stage] += 1
                if stack:
                    stack[-1][1] += took

        return timed

    def gc_callback(self, phase: str, _info: dict[str, Any]) -> None:
        """Garbage collection as a stage of its own, taken out of the stage it interrupts."""
        if phase == "start":
            self._gc_start = time.thread_time_ns()
            return
        took = time.thread_time_ns() - self._gc_start
        self.cpu["garbage collection"] += took
        self.calls["garbage collection"] += 1
        if self._stack:
            self._stack[-1][1] += took

    def wrap_cm(self, enter: str, leave: str, cm: Callable[..., Any]) -> Callable[..., Any]:
        """A context manager whose entry (lock, BEGIN) and exit (COMMIT) are two stages."""
        timers = self

        @contextlib.contextmanager
        def timed(*args: Any, **kw: Any) -> Iterator[Any]:
            inner = cm(*args, **kw)
            value = timers.wrap(enter, inner.__enter__)()
            try:
                yield value
            except BaseException:
                if not timers.wrap(leave, inner.__exit__)(*sys.exc_info()):
                    raise
            else:
                timers.wrap(leave, inner.__exit__)(None, None, None)

        return timed


# (stage, module, attribute): every place the push path looks the function up at call time.
OLDER_CODE_STAGES = frozenset({"bundle hash (prev chain)"})
STAGES: list[tuple[str, Any, str]] = [
    ("request signature: parse headers", auth_mod, "presented"),
    ("request signature: Ed25519 verify", auth_mod, "verify_presented"),
    ("key log state (cached)", keylog_mod, "state"),
    ("nonce: seen", nonces_mod, "seen"),
    ("nonce: record (own file, COMMIT)", nonces_mod, "consume"),
    ("in-flight slot (flock)", auth_mod.inflight, "acquire"),
    ("body read", auth_mod, "read_body"),
    ("content digest (SHA-256 of body)", auth_mod, "check_signed_body"),
    ("parse_json", push_route, "body_json"),
    ("fast loader (wire schema)", fastload_mod, "push_bundles"),
    ("free disk check", shutil, "disk_usage"),
    ("workspace, device, epoch, clock checks", ingest_mod, "check_alone"),
    ("verify_bundle: cell ids, header (base64, SHA-256, JSON)", ingest_mod, "verify_bundle"),
    ("verify_bundle: signed header (canonical JSON)", crypto_mod, "labelled"),
    ("verify_bundle: strict checks of R, S", keys_mod, "check_signature_encoding"),
    ("verify_bundle: key check + load", keys_mod, "verify_key"),
    ("verify_bundle: Ed25519 verify", keys_mod, "verify_signature"),
    # Before this branch the hash and the signed header were encoded apart: kept so
    # that this file profiles the older code too (a stage the code lacks is skipped).
    ("bundle hash (prev chain)", ingest_mod, "bundle_hash"),
    ("SQL: stored bundles by id", bundles_mod, "by_ids"),
    ("SQL: stored bundles by seq", bundles_mod, "by_device_seqs"),
    ("SQL: merge view (heads, known ids)", bundles_mod, "view"),
    ("SQL: next change, usage", bundles_mod, "next_change"),
    ("SQL: next change, usage", bundles_mod, "used_bytes"),
    ("SQL: next change, usage", bundles_mod, "add_usage"),
    ("SQL: insert bundles, cells", bundles_mod, "insert"),
    ("merge (fold)", ingest_mod, "fold"),
    ("cell metas", ingest_mod, "_metas"),
    ("served size", bundles_mod, "served_size"),
    ("judge and write (rest)", ingest_mod, "_judge_and_write"),
    ("revoked re-check in transaction", auth_mod, "recheck_in_transaction"),
    ("answer (to_wire)", ingest_mod.Outcome, "to_wire"),
    ("answer (JSON)", push_route, "json_response"),
]


# The stages in a few groups, for bench/server.py's table and docs/BENCHMARKS.md.
GROUPS: dict[str, tuple[str, ...]] = {
    "ed25519": ("verify_bundle: Ed25519 verify",),
    "bundle_checks": (
        "verify_bundle: cell ids, header (base64, SHA-256, JSON)",
        "verify_bundle: signed header (canonical JSON)",
        "verify_bundle: strict checks of R, S",
        "verify_bundle: key check + load",
        "workspace, device, epoch, clock checks",
        "bundle hash (prev chain)",
    ),
    "parse": ("parse_json", "fast loader (wire schema)"),
    "merge": (
        "merge (fold)",
        "cell metas",
        "served size",
        "judge and write (rest)",
        "revoked re-check in transaction",
    ),
    "sql": (
        "SQL: stored bundles by id",
        "SQL: stored bundles by seq",
        "SQL: merge view (heads, known ids)",
        "SQL: next change, usage",
        "SQL: insert bundles, cells",
    ),
    "commit": ("write lock + BEGIN IMMEDIATE", "COMMIT (fsync)"),
    "per_request": (
        "request signature: parse headers",
        "request signature: Ed25519 verify",
        "key log state (cached)",
        "nonce: seen",
        "nonce: record (own file, COMMIT)",
        "in-flight slot (flock)",
        "body read",
        "content digest (SHA-256 of body)",
        "free disk check",
        "answer (to_wire)",
        "answer (JSON)",
    ),
    "rest": ("garbage collection", "rest of the request (Flask, timers)"),
}


def grouped(stages: dict[str, float]) -> dict[str, float]:
    """µs per record of each group of GROUPS (a stage absent from this code counts 0)."""
    return {g: sum(stages.get(name, 0.0) for name in names) for g, names in GROUPS.items()}


@contextlib.contextmanager
def instrumented(timers: Timers) -> Iterator[None]:
    saved: list[tuple[Any, str, Any]] = []
    for stage, owner, name in STAGES:
        if not hasattr(owner, name):  # a stage of another version of the code
            continue
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, timers.wrap(stage, getattr(owner, name)))
    saved.append((ingest_mod, "write", ingest_mod.write))
    ingest_mod.write = timers.wrap_cm(
        "write lock + BEGIN IMMEDIATE", "COMMIT (fsync)", ingest_mod.write
    )
    gc.callbacks.append(timers.gc_callback)
    try:
        yield
    finally:
        gc.callbacks.remove(timers.gc_callback)
        for owner, name, fn in reversed(saved):
            setattr(owner, name, fn)


class Setup:
    """A fresh server data directory, a workspace, and `writers` devices' signed pushes."""

    def __init__(self, tmp: Path, bundles: int, writers: int) -> None:
        self.app = create_app({"DATA_DIR": tmp / "data"})
        paths = Paths(tmp / "data")
        code = server_db.new_code(paths, int(time.time()))
        self.kit = Kit.create(FlaskTransport(self.app.test_client()), code, seed=11)
        self.members: list[Member] = [self.kit.member("volunteer") for _ in range(writers)]
        per = bundles // writers
        self.boxes = {
            m.device_id: [self.kit.seal(m, record(i)) for i in range(per)] for m in self.members
        }
        self.n = per * writers

    def requests(self) -> list[tuple[dict[str, Any], int]]:
        """(WSGI environ, bundles) per push request, round-robin over the writers."""
        kit, path = self.kit, self.kit.path("push")
        per_writer = []
        for m in self.members:
            box = self.boxes[m.device_id]
            reqs = []
            for i in range(0, len(box), PER_REQUEST):
                part = box[i : i + PER_REQUEST]
                body = json.dumps({"bundles": [b.to_wire() for b in part]}).encode()
                headers = kit.signed_headers("POST", path, m, body, nonce=b64e(os.urandom(16)))
                env = EnvironBuilder(
                    path=path,
                    method="POST",
                    headers=headers,
                    data=body,
                    base_url="http://localhost",
                ).get_environ()
                reqs.append((env, len(part)))
            per_writer.append(reqs)
        return [r for group in zip(*per_writer, strict=True) for r in group]


def call(app: Any, env: dict[str, Any]) -> bytes:
    status: list[str] = []

    def start_response(s: str, _headers: Any, _exc: Any = None) -> Any:
        status.append(s)
        return lambda _data: None

    out = app(env, start_response)
    try:
        data = b"".join(out)
    finally:
        close = getattr(out, "close", None)
        if close is not None:
            close()
    assert status[0].startswith("200"), (status, data[:300])
    return data


def run_pushes(app: Any, reqs: list[tuple[dict[str, Any], int]]) -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) to push every request, one after another."""
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for env, _ in reqs:
        data = call(app, env)
        assert b'"rejected"' not in data, data[:300]
    return time.thread_time() - cpu0, time.perf_counter() - wall0


def floors(bundles: list[Bundle], public: dict[str, bytes]) -> dict[str, float]:
    """µs per bundle of the primitives in the same run: the strict verifier's floor."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from protocol.crypto import L_BUNDLE_SIG, verify_bundle
    from protocol.encoding import labelled

    msgs = [
        (public[b.device_id], b64d(b.sig), labelled(L_BUNDLE_SIG, b.header(), trusted=True))
        for b in bundles
    ]
    loaded = {d: Ed25519PublicKey.from_public_bytes(p) for d, p in public.items()}
    pairs = [(loaded[b.device_id], s, m) for b, (_, s, m) in zip(bundles, msgs, strict=True)]
    cells = [b64d(c.ct) + b"x" * 80 for b in bundles for c in b.cells]

    def best(fn: Callable[[], None], per: int) -> float:
        runs = []
        for _ in range(5):
            t = time.thread_time_ns()
            fn()
            runs.append((time.thread_time_ns() - t) / per / 1000)
        return statistics.median(runs)

    def raw() -> None:
        for key, sig, msg in pairs:
            key.verify(sig, msg)

    def load_and_verify() -> None:
        for pub, sig, msg in msgs:
            Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)

    def sha() -> None:
        for c in cells:
            hashlib.sha256(c).digest()

    def whole() -> None:
        for b in bundles:
            verify_bundle(b, public[b.device_id])

    n = len(bundles)
    return {
        "raw_ed25519_verify_us": best(raw, n),
        "ed25519_load_key_and_verify_us": best(load_and_verify, n),
        "sha256_of_cells_us": best(sha, n),
        "verify_bundle_us": best(whole, n),
    }


def run(bundles: int = 8000, writers: int = 8, profile: Path | None = None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fieldsync-pushstages-"))
    try:
        s = Setup(tmp, bundles, writers)
        half = s.n // 2
        reqs = s.requests()
        split = len(reqs) // 2
        # As deploy/gunicorn.conf.py does in each worker: what exists before the first
        # request (here also the client's sealed bundles) is kept out of collections.
        gc.collect()
        gc.freeze()
        # First half bare (the total), second half instrumented (the stages); the
        # database then holds as many bundles in each as bench/server.py's rounds.
        bare_cpu, bare_wall = run_pushes(s.app, reqs[:split])
        timers = Timers()
        with instrumented(timers):
            timed_cpu, _ = run_pushes(s.app, reqs[split:])
        done = sum(n for _, n in reqs[split:])
        assert sum(n for _, n in reqs[:split]) == half and done == s.n - half
        stages = {k: v / done / 1000 for k, v in timers.cpu.items()}
        stages["rest of the request (Flask, timers)"] = timed_cpu * 1e6 / done - sum(
            stages.values()
        )
        out: dict[str, Any] = {
            "bundles": s.n,
            "writers": writers,
            "push_cpu_us_per_record": bare_cpu * 1e6 / half,
            "push_wall_us_per_record": bare_wall * 1e6 / half,
            "timed_cpu_us_per_record": timed_cpu * 1e6 / done,
            "stages_us_per_record": stages,
        }
        public = {m.device_id: keys.public_bytes(m.key) for m in s.members}
        sample = [b for box in s.boxes.values() for b in box[:100]]
        out.update(floors(sample, public))
        if profile is not None:
            more = Setup(tmp / "p", bundles, writers)
            prof = cProfile.Profile()
            prof.enable()
            run_pushes(more.app, more.requests())
            prof.disable()
            prof.dump_stats(profile)
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(30)
            out["profile_top"] = text.getvalue()
        return out
    finally:
        gc.unfreeze()
        shutil.rmtree(tmp, ignore_errors=True)


def report(f: dict[str, Any]) -> str:
    lines = [
        f"{f['bundles']} bundles of {FIELDS} cells from {f['writers']} devices, "
        f"{PER_REQUEST} a request, in-process, thread CPU µs per record:",
        f"  push, bare: {f['push_cpu_us_per_record']:.0f} µs CPU"
        f" ({f['push_wall_us_per_record']:.0f} µs wall, fsyncs included)",
        f"  push, timed: {f['timed_cpu_us_per_record']:.0f} µs CPU, of which:",
    ]
    for stage, us in sorted(f["stages_us_per_record"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {us:7.1f}  {stage}")
    lines += [
        f"  raw Ed25519PublicKey.verify: {f['raw_ed25519_verify_us']:.0f} µs;"
        f" with from_public_bytes: {f['ed25519_load_key_and_verify_us']:.0f} µs;"
        f" SHA-256 of 6 cells: {f['sha256_of_cells_us']:.1f} µs;"
        f" verify_bundle: {f['verify_bundle_us']:.0f} µs",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundles", type=int, default=8000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--profile", type=Path, help="also run cProfile and write its stats here")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    figures = run(args.bundles, args.writers, args.profile)
    top = figures.pop("profile_top", None)
    print(json.dumps(figures, indent=1) if args.json else report(figures))
    if top:
        print(top)


if __name__ == "__main__":
    main()
