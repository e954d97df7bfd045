"""Flood: one device floods the server while another pushes and a coordinator pulls.

    .venv/bin/python bench/flood.py            # the full run (8 MB pushes, 40 samples)
    .venv/bin/python bench/flood.py --quick    # 1 MB pushes, 12 samples

A real `fieldsync-server run` with deploy/gunicorn.conf.py on loopback. One volunteer
key (a seized phone) keeps four connections busy with the largest pushes the server
takes (fresh bundles first, then the same again, which the server verifies again and
answers `stored`), while strangers trickle request heads and bodies on eight more
connections, reconnecting as soon as they are dropped. Meanwhile another volunteer
pushes one small bundle at a time, and a coordinator asks for `changes?limit=1`
(issue 8: it waited 34 s behind such a flood), each in turn.

Reported, as medians beside the same requests with no flood in the same run:
the flood factor (with / without) of the other device's push, the coordinator's
pull and `/v1/health`; how long an admin's `revoke` of the flooding key takes to
be committed during the flood, and from sending it until the flooding key's next
request is refused; the flood's own answers (requests, `429 busy`), 5xx answers, and workers
lost (gunicorn boots beyond the first).

`run(quick) -> dict[str, float]` is what `make bench` calls; nothing here is asserted
as a time in a test (tests/test_bench_flood.py runs `measure` on tiny sizes).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servergun import Gunicorn  # noqa: E402
from serverkit import HttpTransport, Kit, Member  # noqa: E402
from slowkit import Trickle  # noqa: E402

from protocol import roster  # noqa: E402
from protocol.encoding import b64e  # noqa: E402
from server.store import Paths, server_db  # noqa: E402


@dataclass(frozen=True)
class Scale:
    flood_connections: int  # the flooding key's connections (2 of them get a slot)
    bundles_per_push: int  # ~23 KB each: 340 make an 8 MB push (the limit is 8 MiB)
    fresh_pushes: int  # sealed ahead; the flood then repeats them
    strangers: int  # connections trickling heads, and as many trickling bodies
    samples: int  # measurements per request kind, per phase
    header_timeout: float
    workers: int

    @classmethod
    def full(cls) -> Scale:
        return cls(4, 340, 8, 4, 40, 10.0, 2 * (os.cpu_count() or 1))

    @classmethod
    def quick(cls) -> Scale:
        return cls(4, 50, 4, 4, 12, 10.0, 2 * (os.cpu_count() or 1))

    @classmethod
    def tiny(cls) -> Scale:
        return cls(2, 2, 1, 1, 2, 1.0, 2)


def _note(i: int) -> str:
    return f"{i:06d} " + "observed at the gate; " * 700  # ~15 KB of text


class Flooder:
    """The seized key: `connections` threads sending the largest pushes, back to back."""

    def __init__(self, kit: Kit, member: Member, port: int, bodies: list[bytes], n: int) -> None:
        self.kit, self.member, self.port, self.bodies = kit, member, port, bodies
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: list[int] = []
        self.codes: list[str] = []
        # Uploads the server cut: refused (`busy`) before their body was read, the
        # connection closes while a client like this one, which reads no answer
        # before it has sent its whole body, is still sending.
        self.errors = 0
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)
        ]

    def _run(self, index: int) -> None:
        path = self.kit.path("push")
        i = index
        while not self.stop.is_set():
            body = self.bodies[i % len(self.bodies)]
            i += len(self.threads)
            headers = self.kit.signed_headers(
                "POST", path, self.member, body, nonce=b64e(os.urandom(16))
            )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                conn.close()
            except OSError:
                with self.lock:
                    self.errors += 1
                continue
            code = ""
            if resp.status != 200:
                code = json.loads(answer)["error"]["code"]
            with self.lock:
                self.statuses.append(resp.status)
                self.codes.append(code)
            if code == "busy":
                time.sleep(0.01)  # as soon as a slot frees, like a determined attacker

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=300)


class Strangers:
    """Connections that trickle a head or an unsigned body, reconnecting when dropped."""

    def __init__(self, port: int, push_path: str, n: int) -> None:
        self.port, self.path, self.n = port, push_path.encode(), n
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(2 * n)
        ]

    def _run(self, i: int) -> None:
        while not self.stop.is_set():
            if i % 2:
                first = b"POST " + self.path + b" HTTP/1.1\r\n"
                rest = b"X-Slow: " + b"a" * 2000
            else:
                first = (
                    b"POST " + self.path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                    b"\r\nContent-Length: 100000\r\n\r\n{"
                )
                rest = b" " * 2000
            try:
                t = Trickle(self.port, first, rest, every=0.5, timeout=120)
            except OSError:
                time.sleep(0.1)
                continue
            with t:
                while not (t.done.wait(0.2) or self.stop.is_set()):
                    pass

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def _timed(call: Any) -> tuple[float, int]:
    t = time.perf_counter()
    status = call()
    return time.perf_counter() - t, status


def _samples(kit: Kit, victim: Member, coord: Member, port: int, n: int) -> dict[str, list[float]]:
    """`n` of each, in turn: the other device's 1-bundle push, the coordinator's
    `changes?limit=1`, health. Returns seconds; raises on any answer but 200."""
    out: dict[str, list[float]] = {"push": [], "pull": [], "health": []}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def health() -> int:
        conn.request("GET", "/v1/health")
        resp = conn.getresponse()
        resp.read()
        return resp.status

    for i in range(n):
        bundle = kit.seal(victim, {"place": f"Sarnel Gate {i}", "attended": i})
        for name, call in (
            ("push", lambda b=bundle: kit.push(victim, [b]).status),
            ("pull", lambda: kit.changes(coord, since=0, limit=1).status),
            ("health", health),
        ):
            took, status = _timed(call)
            if status != 200:
                raise RuntimeError(f"{name}: {status}")
            out[name].append(took)
    conn.close()
    return out


def measure(scale: Scale) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="fieldsync-flood-"))
    env = {"FIELDSYNC_HEADER_TIMEOUT": str(scale.header_timeout)}
    server = Gunicorn(tmp / "data", workers=scale.workers, log_dir=tmp / "logs", env=env)
    try:
        server.start()
        code = server_db.new_code(Paths(tmp / "data"), int(time.time()))
        kit = Kit.create(HttpTransport(server.url, timeout=300), code, seed=17)
        thief, victim = kit.member("volunteer"), kit.member("volunteer")
        coord = kit.member("coordinator")
        spare = kit.member("volunteer")  # revoked in the quiet phase, for a baseline
        bodies = [
            json.dumps(
                {
                    "bundles": [
                        kit.seal(thief, {"note": _note(p * scale.bundles_per_push + i)}).to_wire()
                        for i in range(scale.bundles_per_push)
                    ]
                }
            ).encode()
            for p in range(scale.fresh_pushes)
        ]
        quiet = _samples(kit, victim, coord, server.port, scale.samples)
        took, status = _timed(lambda: kit.post_event(_revoke(kit, spare)).status)
        assert status == 201, status
        revoke_quiet = took

        flood = Flooder(kit, thief, server.port, bodies, scale.flood_connections)
        strangers = Strangers(server.port, kit.path("push"), scale.strangers)
        flood.start()
        strangers.start()
        try:
            time.sleep(min(2.0, scale.header_timeout))  # the flood is under way
            loud = _samples(kit, victim, coord, server.port, scale.samples)
            sent = time.perf_counter()
            took, status = _timed(lambda: kit.post_event(_revoke(kit, thief)).status)
            assert status == 201, status
            revoke_loud = took
            # The key's next request (a small one, whose answer this client reads).
            probe = kit.request("GET", kit.path("log"), thief)
            assert probe.code == "revoked_device", probe
            refused_after = time.perf_counter() - sent
        finally:
            flood.join()
            strangers.join()
        log = server.log_text()
    finally:
        server.stop()
    med = statistics.median
    statuses = flood.statuses
    figures = {
        "push_ms": med(quiet["push"]) * 1000,
        "push_flood_ms": med(loud["push"]) * 1000,
        "pull_ms": med(quiet["pull"]) * 1000,
        "pull_flood_ms": med(loud["pull"]) * 1000,
        "health_ms": med(quiet["health"]) * 1000,
        "health_flood_ms": med(loud["health"]) * 1000,
        "revoke_ms": revoke_quiet * 1000,
        "revoke_flood_ms": revoke_loud * 1000,
        "revoke_to_refusal_ms": refused_after * 1000,
        "flood_requests": float(len(statuses)),
        "flood_busy": float(flood.codes.count("busy")),
        "flood_cut": float(flood.errors),
        "flood_bytes_per_push": float(len(bodies[0])),
        "server_5xx": float(sum(s >= 500 for s in statuses)),
        "workers_lost": float(log.count("Booting worker") - scale.workers),
        "worker_timeouts": float(log.count("WORKER TIMEOUT")),
    }
    for name in ("push", "pull", "health"):
        figures[f"{name}_flood_factor"] = figures[f"{name}_flood_ms"] / figures[f"{name}_ms"]
    return figures


def _revoke(kit: Kit, member: Member) -> dict[str, Any]:
    return roster.revoke(kit.state, kit.founder.key, member.device_id, kit.now())


def run(quick: bool) -> dict[str, float]:
    """The figures of one run, for `make bench` (quick: smaller pushes, fewer samples)."""
    return measure(Scale.quick() if quick else Scale.full())


ROWS = [
    ("another device's 1-bundle push (ms)", "push_ms", "push_flood_ms", "push_flood_factor"),
    ("coordinator's changes?limit=1 (ms)", "pull_ms", "pull_flood_ms", "pull_flood_factor"),
    ("/v1/health (ms)", "health_ms", "health_flood_ms", "health_flood_factor"),
    ("admin's revoke committed (ms)", "revoke_ms", "revoke_flood_ms", None),
]


def report(f: dict[str, float]) -> str:
    lines = [
        "| median | no flood | flood | flood factor |",
        "|---|---:|---:|---:|",
    ]
    for label, quiet, loud, factor in ROWS:
        ratio = f"{f[factor]:.2f}" if factor else ""
        lines.append(f"| {label} | {f[quiet]:.1f} | {f[loud]:.1f} | {ratio} |")
    lines += [
        "",
        "revoke sent, committed, and the flooding key's next request refused:"
        f" {f['revoke_to_refusal_ms']:.0f} ms;"
        f" flood: {f['flood_requests']:.0f} pushes of {f['flood_bytes_per_push'] / 1e6:.1f} MB"
        f" answered, {f['flood_busy']:.0f} of them `busy`, and {f['flood_cut']:.0f} uploads"
        " cut short (refused before their body was read);"
        f" 5xx: {f['server_5xx']:.0f};"
        f" workers lost: {f['workers_lost']:.0f}; worker timeouts: {f['worker_timeouts']:.0f}",
    ]
    return "\n".join(lines)


def tables(f: dict[str, float]) -> dict[str, str]:
    """For `make bench`: the same report between its markers in docs/BENCHMARKS.md."""
    return {"flood": report(f)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 MB pushes, 12 samples")
    args = ap.parse_args(argv)
    print(report(run(args.quick)))


if __name__ == "__main__":
    main()
