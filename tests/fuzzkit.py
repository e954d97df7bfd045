"""Shared by the fuzz tests (not a test module): run length, JSON strategies, the signer,
the roles of a fuzzed workspace, and the tally behind the figures in docs/FUZZ.md.

`make test` runs the short, derandomized variant (the same cases on every run);
`make fuzz` sets FIELDSYNC_FUZZ=long: many more cases, random seeds, the example
database on, and the figures written to $FIELDSYNC_FUZZ_FIGURES as JSON.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from protocol.encoding import b64e
from protocol.httpsig import sign_request

LONG = os.environ.get("FIELDSYNC_FUZZ") == "long"


def budget(short: int, long: int) -> int:
    return long if LONG else short


def fuzz_settings(short: int, long: int) -> settings:
    """Short runs are derandomized and keep no database, so CI sees the same cases each run."""
    return settings(
        max_examples=budget(short, long),
        deadline=None,
        derandomize=not LONG,
        database=settings.default.database if LONG else None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# --- JSON the way an attacker writes it ------------------------------------------------

# Integers at and around every bound the wire uses (53 bits, 31 bits, zero), and beyond.
edge_ints = st.sampled_from(
    [0, 1, -1, 2**31 - 1, 2**31, 2**53 - 1, 2**53, -(2**53), 2**64, -(2**63), 10**30]
)
# Strings shaped like ids, hashes, signatures and keys (right and wrong lengths), and not.
b64ish = st.integers(0, 1600).flatmap(
    lambda n: st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=",
        min_size=n,
        max_size=n,
    )
)
id_shaped = st.sampled_from([21, 22, 23, 42, 43, 44, 85, 86, 87]).flatmap(
    lambda n: st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=n, max_size=n
    )
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | edge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["\ud800", "a\udfff", "\x00", "\u0663"])  # lone surrogates, NUL, ٣
    | id_shaped
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.text(max_size=12) | st.sampled_from(["", "seq", "kind", "body"]), inner
        )
    ),
    max_leaves=25,
)


# --- signing -------------------------------------------------------------------------


class SignRequest(requests.auth.AuthBase):
    """RFC 9421-sign a prepared request, after `requests` has built its final URL and body.

    requests calls an auth hook once the URL (query included) and the body bytes are
    final, so the signature covers exactly what goes on the wire, whatever
    schemathesis generated.
    """

    def __init__(self, key: Ed25519PrivateKey, keyid: str) -> None:
        self.key = key
        self.keyid = keyid

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):  # a form body: send the bytes that were signed
            body = body.encode("utf-8")
            r.prepare_body(body, None)
        assert isinstance(body, bytes), type(body)
        assert r.method is not None and r.url is not None
        r.headers.update(
            sign_request(
                method=r.method,
                url=r.url,
                body=body,
                key=self.key,
                keyid=self.keyid,
                created=int(time.time()),
                nonce=b64e(os.urandom(16)),
            )
        )
        return r


@dataclass(frozen=True)
class Role:
    """Who sends a request: a key and the keyid it claims, or nobody (unsigned)."""

    name: str
    key: Ed25519PrivateKey | None = None
    keyid: str | None = None

    def auth(self) -> SignRequest | None:
        if self.key is None or self.keyid is None:
            return None
        return SignRequest(self.key, self.keyid)


# --- the tally ------------------------------------------------------------------------

_BOOT = re.compile(r"Booting worker with pid")
_LOST = re.compile(
    r"WORKER TIMEOUT|was sent SIGKILL|exited with code|Worker \(pid:\d+\) was sent code"
)


def worker_figures(log: str, workers: int) -> dict[str, int]:
    """Workers booted beyond the first `workers`, and gunicorn's lines for a lost worker."""
    boots = len(_BOOT.findall(log))
    return {
        "worker_boots": boots,
        "workers_lost": max(0, boots - workers),
        "worker_timeouts": log.count("WORKER TIMEOUT"),
        "worker_deaths_logged": len(_LOST.findall(log)),
    }


@dataclass
class Tally:
    """What a fuzz run sent and got: the figures, and the failures with a reproduction."""

    name: str
    started: float = field(default_factory=time.monotonic)
    cases: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    off_schema: list[str] = field(default_factory=list)

    def record(self, role: str, label: str, status: int, code: str | None) -> None:
        self.cases += 1
        self.answers[f"{role} {label} {status} {code}"] += 1

    def fail(self, status: int, report: str) -> None:
        (self.server_errors if status >= 500 else self.off_schema).append(report)

    def figures(self, **extra: Any) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "server_errors_5xx": len(self.server_errors),
            "answers_outside_schema": len(self.off_schema),
            "seconds": round(time.monotonic() - self.started, 1),
            "long": LONG,
            **extra,
        }

    def publish(self, **extra: Any) -> dict[str, Any]:
        return publish(self.name, self.figures(**extra))


FIGURES: dict[str, dict[str, Any]] = {}  # printed at the end of the session (conftest.py)
CASES: Counter[str] = Counter()  # hypothesis examples run per test, shrinking included

F = TypeVar("F")


def counted(test: F) -> F:
    """Count each example hypothesis runs (put it under @given): the figures of a run."""
    name = test.__qualname__.split(".<locals>")[0]  # type: ignore[attr-defined]

    @functools.wraps(test)  # type: ignore[arg-type]
    def run(*args: Any, **kwargs: Any) -> Any:
        CASES[name] += 1
        return test(*args, **kwargs)  # type: ignore[operator]

    return run  # type: ignore[return-value]


def publish(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Keep a run's figures for the summary, and add them to $FIELDSYNC_FUZZ_FIGURES."""
    FIGURES[name] = figures
    out = os.environ.get("FIELDSYNC_FUZZ_FIGURES")
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, name: figures}, indent=2, sort_keys=True) + "\n")
    return figures


def error_code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None
