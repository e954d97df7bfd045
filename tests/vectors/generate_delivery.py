"""The vectors of delivery (docs/PROTOCOL.md, "Delivery"): receipts and signed chain heads.

Imported by generate.py, which writes `receipt.json` with the others. A small key
log of its own holds every kind of signer a receipt can name: the founder (admin),
an approved coordinator, a coordinator approved and then revoked, one enrolled but
not approved, and two volunteers; `device_id` is the volunteer whose bundles the
receipts are about, and `sent` its bundle hashes by seq.
"""

from __future__ import annotations

import json
from typing import Any

from generate import EPOCHS, T0, WEEK, WORKSPACE, Actor, b64e, labelled, seed, sign_key

from protocol import keylog, receipts, roster
from protocol.errors import InvalidReceipt


def _log() -> tuple[list[dict[str, Any]], dict[str, Actor]]:
    actors = {
        "founder": Actor("delivery/founder", True),
        "coordinator": Actor("delivery/coordinator", True),
        "departed": Actor("delivery/departed", True),
        "pending": Actor("delivery/pending", True),
        "volunteer": Actor("delivery/volunteer", False),
        "other": Actor("delivery/other-volunteer", False),
    }
    founder = actors["founder"]
    assert founder.hpke is not None
    events: list[dict[str, Any]] = []
    states: list[keylog.KeyLogState] = []

    def add(event: dict[str, Any]) -> None:
        states.append(
            keylog.genesis_state(event) if not events else keylog.apply_event(states[-1], event)
        )
        events.append(event)

    def at() -> int:
        return T0 + 60 * len(events)

    add(
        roster.genesis(
            workspace=WORKSPACE,
            admin_key=founder.key,
            admin_hpke=founder.hpke,
            epoch=EPOCHS[1],
            at=at(),
        )
    )
    epoch_keys = {1: EPOCHS[1].private_bytes}
    for name in ("coordinator", "volunteer", "departed", "pending", "other"):
        actor = actors[name]
        role = "volunteer" if actor.hpke is None else "coordinator"
        invite_key = sign_key(f"delivery/invite/{name}")
        add(roster.invite(states[-1], founder.key, invite_key, role, at() + WEEK, at()))
        hpke_pub = actor.hpke.public_bytes if actor.hpke else None
        add(roster.enroll(states[-1], invite_key, actor.key, role, hpke_pub, at()))
        if actor.hpke is not None and name != "pending":
            add(roster.approve(states[-1], founder.key, actor.id, epoch_keys, at()))
    add(roster.revoke(states[-1], founder.key, actors["departed"].id, at()))
    return events, actors


def _code(fn: Any) -> str:
    try:
        fn()
    except InvalidReceipt as exc:
        return exc.code
    return "success"


def delivery_vectors() -> dict[str, Any]:
    events, actors = _log()
    log = keylog.verify_log(events, keylog.event_hash(events[0]))
    vol = actors["volunteer"]
    sent = {n: b64e(seed(f"delivery/bundle-{n}")) for n in (1, 2, 3)}
    at = T0 + 3600

    def receipt(signer: str, seq: int, **over: Any) -> dict[str, Any]:
        key = sign_key("delivery/outsider") if signer == "outsider" else actors[signer].key
        r = receipts.sign_receipt(
            key,
            workspace=over.pop("workspace", WORKSPACE),
            device_id=over.pop("device_id", vol.id),
            seq=seq,
            hash=over.pop("hash", sent.get(seq, sent[3])),
            at=at,
        )
        return {**r, **over}

    def case(name: str, r: dict[str, Any], own_hash: Any = "auto") -> dict[str, Any]:
        claim = r.get("seq")
        own = sent.get(claim) if own_hash == "auto" else own_hash  # type: ignore[arg-type]

        def check() -> int:
            return receipts.verify_receipt(r, log, device_id=vol.id, sent_seq=3, own_hash=own)

        expect = _code(check)
        out: dict[str, Any] = {"name": name, "receipt": r, "own_hash": own, "expect": expect}
        if expect == "success":
            out["covers"] = check()
        return out

    good = receipt("coordinator", 2)
    statement = {k: good[k] for k in receipts.RECEIPT_FIELDS}
    resigned = json.loads(json.dumps(good))
    resigned["seq"] = 1  # altered after signing
    cases = [
        case("a coordinator's receipt for bundle 2", good),
        case("the founder's receipt for the last bundle sent", receipt("founder", 3)),
        case(
            "bundle 1, which the device no longer keeps: its hash is not checked",
            receipt("coordinator", 1, hash=b64e(seed("delivery/unknown"))),
            own_hash=None,
        ),
        case("an unknown field", {**good, "note": "x"}),
        case("v is 2", receipt("coordinator", 2, v=2)),
        case("seq 0", {**good, "seq": 0}),
        case("seq as a string", {**good, "seq": "2"}),
        case("a hash of 16 bytes", {**good, "hash": b64e(seed("short", 16))}),
        case("no signature", {k: v for k, v in good.items() if k != "sig"}),
        case("another workspace", receipt("coordinator", 2, workspace=b64e(seed("ws2", 16)))),
        case("about another device", receipt("coordinator", 2, device_id=actors["other"].id)),
        case("signed by a key not in the log", receipt("outsider", 2)),
        case("signed by a revoked coordinator (a seized laptop)", receipt("departed", 2)),
        case("signed by a coordinator not approved", receipt("pending", 2)),
        case("signed by a volunteer", receipt("other", 2)),
        case("seq altered after signing", resigned),
        case(
            "signer named as the founder, signed by the coordinator",
            {**good, "signer": actors["founder"].id},
        ),
        case("more than the device sent", receipt("coordinator", 5)),
        case("bundle 2 with the hash of bundle 1", receipt("coordinator", 2, hash=sent[1])),
    ]

    head = receipts.sign_chain_head(vol.key, workspace=WORKSPACE, seq=3, hash=sent[3], at=at)
    head_statement = {k: head[k] for k in receipts.HEAD_FIELDS}
    other_ws = receipts.sign_chain_head(
        vol.key, workspace=b64e(seed("ws2", 16)), seq=3, hash=sent[3], at=at
    )
    stranger = receipts.sign_chain_head(
        sign_key("delivery/outsider"), workspace=WORKSPACE, seq=1, hash=sent[1], at=at
    )
    heads = []
    for name, h in [
        ("the volunteer's head at bundle 3", head),
        ("a receipt's signer field in a head", {**head, "signer": vol.id}),
        ("another workspace", other_ws),
        ("a device not in the log", stranger),
        ("seq altered after signing", {**head, "seq": 4}),
    ]:
        expect = _code(lambda h=h: receipts.verify_chain_head(h, log))  # type: ignore[misc]
        heads.append({"name": name, "head": h, "expect": expect})

    return {
        "log": events,
        "root": log.root,
        "device_id": vol.id,
        "sent": {str(n): h for n, h in sent.items()},
        "sent_seq": 3,
        "signers": {name: a.id for name, a in actors.items()},
        "receipt_signing": {
            "seed_hex": seed("delivery/coordinator").hex(),
            "statement": statement,
            "signed_hex": labelled(receipts.L_RECEIPT, statement).hex(),
            "sig": good["sig"],
        },
        "receipts": cases,
        "head_signing": {
            "seed_hex": seed("delivery/volunteer").hex(),
            "statement": head_statement,
            "signed_hex": labelled(receipts.L_CHAIN_HEAD, head_statement).hex(),
            "sig": head["sig"],
        },
        "heads": heads,
    }
