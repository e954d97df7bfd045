"""Mutations of valid structures, for the fuzz tests (not a test module).

`mutated_value(body)` draws one change to a JSON-like value that really changes it: a
value tweaked within its type and length (a signature, digest or chain check must
catch it), moved from elsewhere in the body (right shape, wrong place), respelled
by one character, replaced by any JSON, deleted, or a member added. `mutated_json`
adds byte-level changes (flipped, cut, inserted, truncated), duplicate members and
wrappers on top.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from fuzzkit import b64ish, edge_ints, json_values
from hypothesis import strategies as st

Where = tuple[str | int, ...]

URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Ordered so that the simplest examples (hypothesis starts from the first) keep the
# value's shape and get past the wire schema to the checks behind it.
KINDS = ["tweak", "move", "respell", "replace", "delete", "add"]
# Characters that look harmless and are not: base64 of the other alphabet, padding,
# space, non-ASCII letters and digits (full-width A, Arabic-Indic 3), NUL, a lone surrogate.
RESPELL = ["+", "/", "=", " ", "\u00e9", "\uff21", "\u0663", "\x00", "\ud800"]


def paths(node: Any, prefix: Where = ()) -> Iterator[Where]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


def get(node: Any, where: Where) -> Any:
    for step in where:
        node = node[step]
    return node


def put(node: Any, where: Where, value: Any) -> Any:
    if not where:
        return value
    get(node, where[:-1])[where[-1]] = value
    return node


def pick(draw: st.DrawFn, options: list[Any]) -> Any:
    """One of `options`, drawn the same way whatever their number: each example may build
    a fresh value whose size varies a little, and hypothesis needs draws of one shape."""
    return options[draw(st.integers(0, 2**16 - 1)) % len(options)]


def _tweak(draw: st.DrawFn, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return draw(json_values)
    if isinstance(value, int):
        return value + pick(draw, [1, -1, 2**31, -value, 2**53 - 1 - value])
    if not value:
        return "A"
    i = pick(draw, list(range(len(value))))
    return value[:i] + pick(draw, [c for c in URL_ALPHABET if c != value[i]]) + value[i + 1 :]


@st.composite
def mutated_value(draw: st.DrawFn, body: Any) -> Any:
    body = copy.deepcopy(body)
    every = list(paths(body))
    inner = every[1:] or every
    kind = draw(st.sampled_from(KINDS))
    if kind == "tweak":
        where = pick(draw, [p for p in inner if isinstance(get(body, p), str | int)] or inner)
        return put(body, where, _tweak(draw, get(body, where)))
    if kind == "move" and len(inner) > 1:
        where, source = pick(draw, inner), pick(draw, inner)
        return put(body, where, copy.deepcopy(get(body, source)))
    if kind == "respell":
        texts = [p for p in inner if isinstance(get(body, p), str) and get(body, p)]
        if texts:
            where = pick(draw, texts)
            value = get(body, where)
            i = pick(draw, list(range(len(value))))
            return put(body, where, value[:i] + pick(draw, RESPELL) + value[i + 1 :])
    if kind == "delete" and every[1:]:
        where = pick(draw, every[1:])
        del get(body, where[:-1])[where[-1]]
        return body
    if kind == "add":
        containers = [p for p in every if isinstance(get(body, p), dict | list)]
        if containers:
            target = get(body, pick(draw, containers))
            if isinstance(target, dict):
                key = draw(st.text(max_size=12).filter(lambda k: k not in target))
                target[key] = draw(json_values)
            else:
                target.append(draw(json_values) if draw(st.booleans()) or not target else target[0])
            return body
    return put(body, pick(draw, every), draw(json_values | b64ish | edge_ints))


@st.composite
def mutated_json(draw: st.DrawFn, body: dict[str, Any]) -> bytes:
    """The JSON bytes of `body` with one mutation, of its structure or of its bytes."""
    how = draw(st.sampled_from(["value", "bytes", "duplicate", "wrap"]))
    if how == "value":
        return json.dumps(draw(mutated_value(body))).encode()
    if how == "wrap":
        return json.dumps(pick(draw, [[body], {"bundles": body}, {"event": body}])).encode()
    raw = json.dumps(body).encode()
    if how == "duplicate":  # the member twice, the injected one first
        key = pick(draw, sorted(body))
        first = json.dumps(key).encode() + b":" + json.dumps(draw(json_values)).encode()
        return b"{" + first + b"," + raw[1:]
    i = pick(draw, list(range(len(raw))))
    op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
    if op == "truncate":
        return raw[:i]
    if op == "cut":
        return raw[:i] + raw[i + 1 :]
    if op == "insert":
        return raw[:i] + pick(draw, [b"{", b"[", b'"', b",", b"\xff", b"\\"]) + raw[i:]
    return raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
