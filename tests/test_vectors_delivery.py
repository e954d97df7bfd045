"""Run the delivery vectors (tests/vectors/receipt.json): receipts and signed chain heads.

Made by tests/vectors/generate.py (generate_delivery.py); a phone app in another
language runs the same file: the bytes it signs, and every refusal with its code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import keylog, keys, receipts
from protocol.encoding import b64e, labelled
from protocol.errors import InvalidReceipt

DOC = json.loads((Path(__file__).parent / "vectors" / "receipt.json").read_text("utf-8"))
LOG = keylog.verify_log(DOC["log"], DOC["root"])
DEVICE = DOC["device_id"]


def _code(fn: Any) -> str:
    try:
        fn()
    except InvalidReceipt as exc:
        return exc.code
    return "success"


def _verify(receipt: Any, own_hash: str | None) -> int:
    return receipts.verify_receipt(
        receipt, LOG, device_id=DEVICE, sent_seq=DOC["sent_seq"], own_hash=own_hash
    )


@pytest.mark.parametrize("v", DOC["receipts"], ids=[v["name"] for v in DOC["receipts"]])
def test_receipt(v: dict[str, Any]) -> None:
    assert _code(lambda: _verify(v["receipt"], v["own_hash"])) == v["expect"]
    if v["expect"] == "success":
        assert _verify(v["receipt"], v["own_hash"]) == v["covers"]


@pytest.mark.parametrize("v", DOC["heads"], ids=[v["name"] for v in DOC["heads"]])
def test_chain_head(v: dict[str, Any]) -> None:
    assert _code(lambda: receipts.verify_chain_head(v["head"], LOG)) == v["expect"]
    if v["expect"] == "success":
        h = v["head"]
        assert receipts.verify_chain_head(h, LOG) == (h["device_id"], h["seq"], h["hash"])


def test_the_vectors_cover_every_code() -> None:
    assert {v["expect"] for v in DOC["receipts"]} == {"success", *receipts.RECEIPT_CODES}
    assert {v["expect"] for v in DOC["heads"]} == {"success", *receipts.HEAD_CODES}


@pytest.mark.parametrize(
    ("part", "label", "fields"),
    [
        ("receipt_signing", receipts.L_RECEIPT, receipts.RECEIPT_FIELDS),
        ("head_signing", receipts.L_CHAIN_HEAD, receipts.HEAD_FIELDS),
    ],
)
def test_the_signed_bytes(part: str, label: str, fields: tuple[str, ...]) -> None:
    """Ed25519 is deterministic: the same key and statement give the same bytes and sig."""
    v = DOC[part]
    assert sorted(v["statement"]) == sorted(fields)
    assert labelled(label, v["statement"]).hex() == v["signed_hex"]
    key = keys.signing_key(bytes.fromhex(v["seed_hex"]))
    assert b64e(key.sign(bytes.fromhex(v["signed_hex"]))) == v["sig"]
    if part == "receipt_signing":
        made = receipts.sign_receipt(
            key,
            workspace=v["statement"]["workspace"],
            device_id=v["statement"]["device_id"],
            seq=v["statement"]["seq"],
            hash=v["statement"]["hash"],
            at=v["statement"]["at"],
        )
        assert made == {**v["statement"], "sig": v["sig"]}


GOOD = DOC["receipts"][0]["receipt"]
_b64 = st.integers(0, 40).flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(b64e)
_values = st.one_of(
    st.integers(-(2**60), 2**60), st.text(max_size=50), _b64, st.none(), st.booleans()
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(GOOD)), value=_values)
def test_any_changed_field_is_refused(field: str, value: Any) -> None:
    """One field of a good receipt changed to anything else: refused, never accepted."""
    if value == GOOD[field] and type(value) is type(GOOD[field]):
        return
    changed = {**GOOD, field: value}
    own = DOC["sent"].get(str(value)) if field == "seq" and type(value) is int else None
    code = _code(lambda: _verify(changed, own or DOC["receipts"][0]["own_hash"]))
    assert code in receipts.RECEIPT_CODES


@settings(max_examples=100, deadline=None)
@given(extra=st.text(min_size=1, max_size=10), value=_values)
def test_an_added_or_removed_field_is_malformed(extra: str, value: Any) -> None:
    if extra in GOOD:
        changed = {k: v for k, v in GOOD.items() if k != extra}
    else:
        changed = {**GOOD, extra: value}
    assert _code(lambda: _verify(changed, DOC["receipts"][0]["own_hash"])) == "malformed"
