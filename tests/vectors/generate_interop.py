"""The vectors that settle what independent clients had to guess (docs/IMPLEMENTERS.md).

Imported by generate.py, which writes them with the others: strict JSON reading,
HLCs of a real clock, Ed25519 edge cases, the merge with roles and the order of a
conflict's values, X-Wing from its parts, and invites with the workspace name in
the server URL's fragment.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import urllib.parse
from pathlib import Path
from typing import Any

from generate import (
    EPOCHS,
    SMALL_ORDER,
    T0,
    TAG_KEY,
    WEAK_KEY,
    WEEK,
    WORKSPACE,
    code_of,
    device_id,
    seed,
    sign_key,
)
from xwing_parts import hpke_open_by_hand, xwing_decapsulate

from protocol import hlc, invite, keylog, keys, merge
from protocol.encoding import b64e, parse_json
from protocol.errors import MergeConflictError

# --- parse_json: the one strict reader of JSON from the network --------------------


def parse_json_vectors() -> list[dict[str, Any]]:
    cases: list[tuple[str, bytes]] = [
        ("an object", b'{"seq": 7, "kind": "revoke", "ok": true, "none": null}'),
        ("2^53 - 1 is exact everywhere", b"9007199254740991"),
        ("a member twice (JSON.parse and Python keep the last)", b'{"seq":7,"seq":1}'),
        ("a member twice, nested", b'{"event":{"body":{"device_id":"a","device_id":"b"}}}'),
        ("the same name spelled with an escape", b'{"seq":7,"s\\u0065q":1}'),
        ("1.0 (JSON.parse gives 1)", b'{"hlc":1.0}'),
        ("an exponent", b"1e3"),
        ("2^53 + 1 (JSON.parse gives 2^53)", b"9007199254740993"),
        ("a 17-digit integer", b"10000000000000000"),
        ("NaN", b"NaN"),
        ("Infinity", b"[Infinity]"),
        ("bytes that are not UTF-8", b'{"name":"\xff"}'),
        ("a UTF-8 byte-order mark", b'\xef\xbb\xbf{"a":1}'),
        ("trailing text", b'{"a":1} x'),
        ("nesting 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
        ("an object with 1,025 members", _members(1025)),
        ("an object with 1,024 members", _members(1024)),
    ]
    out = []
    for name, raw in cases:
        expect = code_of(lambda r=raw: parse_json(r)) if _fails(raw) else "success"  # type: ignore[misc]
        vec: dict[str, Any] = {"name": name}
        if len(raw) > 2000:
            vec["input_repeat"] = _repeat_form(raw)
        else:
            vec["input_hex"] = raw.hex()
        if expect == "success" and "input_hex" in vec:
            vec["value"] = parse_json(raw)
        vec["expect"] = expect
        out.append(vec)
    return out


def _members(n: int) -> bytes:
    return ("{" + ",".join(f'"k{i}":{i}' for i in range(n)) + "}").encode()


def _repeat_form(raw: bytes) -> dict[str, Any]:
    """Long inputs as a recipe: `head` repeated, then `tail` repeated, or members k0..kN."""
    if raw.startswith(b"[["):
        n = raw.count(b"[")
        return {"open": "[", "close": "]", "times": n}
    n = raw.count(b":")
    return {"members": n, "pattern": '"k<i>":<i>'}


def expand(vec: dict[str, Any]) -> bytes:
    """The input bytes of a parse_json vector (the inverse of `_repeat_form`)."""
    if "input_hex" in vec:
        return bytes.fromhex(vec["input_hex"])
    rep = vec["input_repeat"]
    if "times" in rep:
        return (rep["open"] * rep["times"] + rep["close"] * rep["times"]).encode()
    return _members(rep["members"])


def _fails(raw: bytes) -> bool:
    try:
        parse_json(raw)
    except Exception:
        return True
    return False


# --- hlc.json ------------------------------------------------------------------------


def hlc_vectors() -> dict[str, Any]:
    now = T0 * 1000  # 2026-11-25: above 2^32 once shifted, as every real clock is
    packed = [
        {"physical_ms": ms, "counter": c, "hlc": hlc.pack(ms, c)}
        for ms, c in [(now, 0), (now, 1), (now, 1023), (now + 1, 0), (2**43 - 1, 1023)]
    ]
    ticks = []
    for name, last, wall in [
        ("the wall clock is ahead: take it", hlc.pack(now - 5, 3), now),
        ("the same millisecond: count", hlc.pack(now, 0), now),
        ("the wall clock went back: keep counting", hlc.pack(now + 2_000, 7), now),
        ("the counter full: carry into the milliseconds", hlc.pack(now, 1023), now),
    ]:
        ticks.append({"name": name, "last": last, "now_ms": wall, "tick": hlc.tick(last, wall)})
    observes = []
    for name, last, remote, wall in [
        ("a remote clock ahead of ours", hlc.pack(now, 2), hlc.pack(now + 60_000, 5), now),
        ("a remote clock behind ours", hlc.pack(now, 2), hlc.pack(now - 60_000, 5), now),
    ]:
        observes.append(
            {
                "name": name,
                "last": last,
                "remote": remote,
                "now_ms": wall,
                "observe": hlc.observe(last, remote, wall),
            }
        )
    return {
        "description": (
            "hlc = physical_ms * 1024 + counter (a 53-bit integer: multiply, do not shift in "
            "32 bits). tick(last, now_ms) and observe(last, remote, now_ms) as in "
            "docs/PROTOCOL.md, Hybrid logical clock. One save (a bundle) takes one tick: "
            "every cell of it carries the same hlc."
        ),
        "pack": packed,
        "tick": ticks,
        "observe": observes,
        "max_hlc": hlc.MAX_HLC,
    }


# --- ed25519.json ------------------------------------------------------------------

# "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko, SSR 2020), the twelve
# cases of its test suite (github.com/novifinancial/ed25519-speccheck, cases.json).
SPECCHECK_FILE = Path(__file__).with_name("ed25519_speccheck_cases.json")
SPECCHECK_NOTES = [
    "S = 0, A and R of small order",
    "A of small order",
    "R of small order",
    "A and R of mixed order: accepted by every verifier",
    "cofactored equation holds, cofactorless does not",
    "cofactored equation holds only with 8h pre-reduced",
    "S > L",
    "S >> L (high bit set)",
    "R non-canonical, reduced for the hash",
    "R non-canonical, not reduced for the hash",
    "A non-canonical, reduced for the hash",
    "A non-canonical, not reduced for the hash",
]


def ed25519_vectors() -> dict[str, Any]:
    cases = json.loads(SPECCHECK_FILE.read_text(encoding="utf-8"))
    out = []
    for i, (case, note) in enumerate(zip(cases, SPECCHECK_NOTES, strict=True)):
        public = bytes.fromhex(case["pub_key"])
        signature = bytes.fromhex(case["signature"])
        message = bytes.fromhex(case["message"])
        ok = keys.verify_signature(public, signature, message)
        out.append(
            {
                "name": f"speccheck {i}: {note}",
                "message_hex": case["message"],
                "public_hex": case["pub_key"],
                "signature_hex": case["signature"],
                "expect": "success" if ok else "bad_signature",
            }
        )
    return {
        "description": (
            "Verify `signature_hex` over `message_hex` under `public_hex`. fieldsync verifies "
            "Ed25519 strictly: A and R canonical and not of small order, S < L, then RFC 8032's "
            "cofactorless equation. Only case 3 verifies. OpenSSL alone accepts 0, 1, 2, 3 and "
            "11; ZIP-215 verifiers accept 0 to 5 and 8 to 11."
        ),
        "small_order_points_hex": [p.hex() for p in SMALL_ORDER],
        "cases": out,
    }


# --- merge.json --------------------------------------------------------------------


def merge_vectors() -> dict[str, Any]:
    rid = b64e(seed("merge/record", 16))
    tag = b64e(seed("merge/field", 16))
    other_tag = b64e(seed("merge/another field", 16))
    vol_a = device_id(sign_key("volunteer"))
    vol_b = "-" + device_id(sign_key("volunteer-b"))[1:]  # sorts first as ASCII, last as bytes
    coord = device_id(sign_key("coordinator"))
    h = hlc.pack(T0 * 1000, 0)

    def cid(label: str) -> str:
        return b64e(seed("merge/cell/" + label))

    def cell(
        label: str, dev: str, at: int, sup: tuple[str, ...] = (), keyholder: bool = False
    ) -> dict[str, Any]:
        return {
            "record_id": rid,
            "field_tag": tag,
            "cell_id": cid(label),
            "hlc": at,
            "device_id": dev,
            "keyholder": keyholder,
            "supersedes": [cid(s) for s in sup],
        }

    scenarios: list[tuple[str, list[dict[str, Any]]]] = [
        (
            "a device replaces its own value",
            [cell("a1", vol_a, h), cell("a2", vol_a, h + 5, ("a1",))],
        ),
        (
            "two volunteers disagree: a conflict, the greater hlc wins",
            [cell("a1", vol_a, h + 5), cell("b1", vol_b, h + 3)],
        ),
        (
            "a volunteer's naming of another device's cell takes no effect",
            [cell("a1", vol_a, h), cell("b1", vol_b, h + 9, ("a1",))],
        ),
        (
            "a coordinator's naming closes the conflict",
            [
                cell("a1", vol_a, h),
                cell("b1", vol_b, h + 1),
                cell("c1", coord, h + 2, ("a1", "b1"), keyholder=True),
            ],
        ),
        (
            "a naming that arrives before the cell it names",
            [cell("a2", vol_a, h + 5, ("a1",)), cell("a1", vol_a, h)],
        ),
        (
            "equal hlc: the device id decides, as an ASCII string ('-' < 'A')",
            [cell("a1", vol_a, h), cell("b1", vol_b, h)],
        ),
        (
            "equal hlc and device: the cell id decides",
            [cell("a1", vol_a, h), cell("a3", vol_a, h)],
        ),
        (
            "a name of a cell of another register supersedes nothing",
            [
                cell("a1", vol_a, h),
                {**cell("x1", vol_a, h + 1, ("a1",)), "field_tag": other_tag},
            ],
        ),
        (
            "a cell that names itself is not a head (a device superseded its own write)",
            [cell("s1", vol_a, h, ("s1",))],
        ),
        (
            "a write that names only some heads leaves the others open",
            [
                cell("a1", vol_a, h),
                cell("b1", vol_b, h + 1),
                cell("b2", vol_b, h + 2, ("b1",)),
            ],
        ),
    ]
    out = []
    for name, cells in scenarios:
        metas = [_meta(c) for c in cells]
        results = set()
        for order in itertools.permutations(metas):
            state, _ = merge.merge({}, order)
            results.add(
                tuple(sorted((k, tuple(c.cell_id for c in r.heads)) for k, r in state.items()))
            )
        assert len(results) == 1, name  # the order of arrival never matters
        state, _ = merge.merge({}, metas)
        out.append(
            {
                "name": name,
                "cells": cells,
                "heads": [
                    {
                        "record_id": key[0],
                        "field_tag": key[1],
                        "heads": [c.cell_id for c in reg.heads],
                    }
                    for key, reg in sorted(state.items())
                ],
            }
        )

    crowd = [cell(f"v{i}", device_id(sign_key(f"volunteer-{i}")), h + i) for i in range(33)]
    reused = [cell("a1", vol_a, h), {**cell("a1", vol_a, h), "hlc": h + 1}]
    failures = []
    for name, cells, bound in [
        ("a 33rd open value in one register", crowd, merge.MAX_HEADS),
        ("one cell id with two contents", reused, None),
    ]:
        metas = [_meta(c) for c in cells]

        def run(m: list[merge.CellMeta] = metas, b: int | None = bound) -> None:
            merge.fold(merge.View(), m, max_heads=b)

        failures.append({"name": name, "cells": cells, "max_heads": bound, "expect": code_of(run)})
    assert {f["expect"] for f in failures} == {"too_many_heads", "cell_id_reused"}
    assert issubclass(MergeConflictError, Exception)
    return {
        "description": (
            "Each scenario: merge `cells` (any order: the result is the same) and compare the "
            "heads of each register, winner first, then the other open values by (hlc, "
            "device_id, cell_id) descending, ids compared as base64url strings in ASCII order. "
            "`fieldsync conflicts` numbers a conflict's values in this order from 0, and "
            "`resolve --keep N` keeps value N. A naming takes effect when its author is a "
            "keyholder (`keyholder`: the role of its enroll event is coordinator or admin) or "
            "both cells are of one device. failures: fold `cells` into an empty register with "
            "at most `max_heads` heads (null: no bound) and expect the code."
        ),
        "max_heads": merge.MAX_HEADS,
        "scenarios": out,
        "failures": failures,
    }


def _meta(c: dict[str, Any]) -> merge.CellMeta:
    return merge.CellMeta(
        record_id=c["record_id"],
        field_tag=c["field_tag"],
        cell_id=c["cell_id"],
        hlc=c["hlc"],
        device_id=c["device_id"],
        supersedes=tuple(c["supersedes"]),
        keyholder=c["keyholder"],
    )


# --- X-Wing from its parts (keys.json "xwing") ------------------------------------

# draft-connolly-cfrg-xwing-kem, spec/test-vectors.json, the first vector (identical
# in drafts -05 to -10): the 32-byte seed `sk`, the SHA-256 of its public key `pk`,
# the ciphertext `ct` and the shared secret `ss`.
XWING_SEED = "7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb1a6eacfa66ef26"
XWING_PK_SHA256 = "2e816deebcd76c5c80d0cd2d174478871658e8e2ff42bc9d4a6e486372e856bb"
XWING_SS = "d2df0522128f09dd8e2c92b1e905c793d8f57a54c3da25861f10bf4ca613e384"
XWING_CT = (
    "b83aa828d4d62b9a83ceffe1d3d3bb1ef31264643c070c5798927e41fb07914a273f8f96e7826cd5"
    "375a283d7da885304c5de0516a0f0654243dc5b97f8bfeb831f68251219aabdd723bc6512041acba"
    "ef8af44265524942b902e68ffd23221cda70b1b55d776a92d1143ea3a0c475f63ee6890157c7116d"
    "ae3f62bf72f60acd2bb8cc31ce2ba0de364f52b8ed38c79d719715963a5dd3842d8e8b43ab704e47"
    "59b5327bf027c63c8fa857c4908d5a8a7b88ac7f2be394d93c3706ddd4e698cc6ce370101f4d0213"
    "254238b4a2e8821b6e414a1cf20f6c1244b699046f5a01caa0a1a55516300b40d2048c77cc73afba"
    "79afeea9d2c0118bdf2adb8870dc328c5516cc45b1a2058141039e2c90a110a9e16b318dfb53bd49"
    "a126d6b73f215787517b8917cc01cabd107d06859854ee8b4f9861c226d3764c87339ab16c3667d2"
    "f49384e55456dd40414b70a6af841585f4c90c68725d57704ee8ee7ce6e2f9be582dbee985e038ff"
    "c346ebfb4e22158b6c84374a9ab4a44e1f91de5aac5197f89bc5e5442f51f9a5937b102ba3beaebf"
    "6e1c58380a4a5fedce4a4e5026f88f528f59ffd2db41752b3a3d90efabe463899b7d40870c530c88"
    "41e8712b733668ed033adbfafb2d49d37a44d4064e5863eb0af0a08d47b3cc888373bc05f7a33b84"
    "1bc2587c57eb69554e8a3767b7506917b6b70498727f16eac1a36ec8d8cfaf751549f2277db277e8"
    "a55a9a5106b23a0206b4721fa9b3048552c5bd5b594d6e247f38c18c591aea7f56249c72ce7b117a"
    "fcc3a8621582f9cf71787e183dee09367976e98409ad9217a497df888042384d7707a6b78f5f7fb8"
    "409e3b535175373461b776002d799cbad62860be70573ecbe13b246e0da7e93a52168e0fb6a9756b"
    "895ef7f0147a0dc81bfa644b088a9228160c0f9acf1379a2941cd28c06ebc80e44e17aa2f8177010"
    "afd78a97ce0868d1629ebb294c5151812c583daeb88685220f4da9118112e07041fcc24d5564a99f"
    "dbde28869fe0722387d7a9a4d16e1cc8555917e09944aa5ebaaaec2cf62693afad42a3f518fce67d"
    "273cc6c9fb5472b380e8573ec7de06a3ba2fd5f931d725b493026cb0acbd3fe62d00e4c790d965d7"
    "a03a3c0b4222ba8c2a9a16e2ac658f572ae0e746eafc4feba023576f08942278a041fb82a70a595d"
    "5bacbf297ce2029898a71e5c3b0d1c6228b485b1ade509b35fbca7eca97b2132e7cb6bc465375146"
    "b7dceac969308ac0c2ac89e7863eb8943015b24314cafb9c7c0e85fe543d56658c213632599efabf"
    "c1ec49dd8c88547bb2cc40c9d38cbd3099b4547840560531d0188cd1e9c23a0ebee0a03d5577d66b"
    "1d2bcb4baaf21cc7fef1e03806ca96299df0dfbc56e1b2b43e4fc20c37f834c4af62127e7dae86c3"
    "c25a2f696ac8b589dec71d595bfbe94b5ed4bc07d800b330796fda89edb77be0294136139354eb8c"
    "d37591578f9c600dd9be8ec6219fdd507adf3397ed4d68707b8d13b24ce4cd8fb22851bfe9d63240"
    "7f31ed6f7cb1600de56f17576740ce2a32fc5145030145cfb97e63e0e41d354274a079d3e6fb2e15"
)


def xwing_vectors(bundle_doc: dict[str, Any]) -> dict[str, Any]:
    from protocol import crypto

    x_seed = bytes.fromhex(XWING_SEED)
    expanded = hashlib.shake_256(x_seed).digest(96)
    pair = keys.HpkeKeyPair.from_seed(expanded)
    assert hashlib.sha256(pair.public_bytes).hexdigest() == XWING_PK_SHA256
    decap = xwing_decapsulate(expanded, bytes.fromhex(XWING_CT))
    assert decap["shared_secret"].hex() == XWING_SS
    first = bundle_doc["success"][0]["bundle"]
    sealed = first["sealed_key"]
    from protocol.encoding import b64d

    info = crypto.data_key_info(first["workspace"], first["key_epoch"], first["bundle_id"])
    by_hand = hpke_open_by_hand(EPOCHS[1].private_bytes, b64d(sealed), info)
    assert by_hand["plaintext_hex"] == seed("data-key/bundle-1").hex()
    return {
        "from_seed": {
            "xwing_seed_hex": XWING_SEED,
            "private_hex": expanded.hex(),
            "public_sha256": XWING_PK_SHA256,
            "ct_hex": XWING_CT,
            "shared_secret_hex": XWING_SS,
            "note": (
                "An X-Wing seed (32 bytes, draft-connolly-cfrg-xwing-kem's first test vector) "
                "expands to fieldsync's 96-byte private key as SHAKE256(seed, 96); the reverse "
                "is impossible. public_sha256 is the SHA-256 of the draft's 1216-byte `pk`; "
                "decapsulating its `ct` from the parts gives its `ss`."
            ),
        },
        "open_by_hand": {
            "private_hex": EPOCHS[1].private_bytes.hex(),
            "sealed_key": sealed,
            "info_hex": info.hex(),
            **by_hand,
        },
    }


# --- invite.json -------------------------------------------------------------------


def invite_vectors(keylog_doc: dict[str, Any]) -> dict[str, Any]:
    log = keylog_doc["log"]
    founder = sign_key("founder")
    invite_seed = seed("invite-volunteer")
    logged = log[4]["body"]
    assert logged["invite_key"] == b64e(keys.public_bytes(keys.signing_key(invite_seed)))
    name = "Zhelsiz Lane pickets (invented)"
    server = "https://sync.example.org/fs#" + urllib.parse.urlencode({"workspace": name})
    fields = {
        "server": server,
        "workspace": WORKSPACE,
        "root": keylog_doc["pinned_root"],
        "role": logged["role"],
        "expires": logged["expires"],
        "tag_key": b64e(TAG_KEY),
        "invite_seed": b64e(invite_seed),
        "admin": device_id(founder),
    }
    text = invite.encode_invite(fields, founder)
    body = parse_json(b64d_text(text))
    now = T0 + 300

    def check(prefix: int, inv_text: str) -> str:
        def run() -> None:
            state = keylog.verify_log(log[:prefix], keylog_doc["pinned_root"])
            invite.check_invite(invite.decode_invite(inv_text), state, now)

        return code_of(run) if _raises(run) else "success"

    def reencode(obj: Any, raw: bytes | None = None) -> str:
        from protocol.encoding import canonical_json

        return invite.PREFIX + b64e(raw if raw is not None else canonical_json(obj))

    canonical = b64d_text(text)
    tampered = reencode({**body, "server": "https://sync.example.net/fs#workspace=x"})
    cases = [
        ("the invite, against the log up to its invite event", 5, text),
        ("the invite once it was redeemed (event 5)", 6, text),
        ("the invite against a log without its invite event", 4, text),
        ("the server URL changed", 5, tampered),
        (
            "a member twice",
            5,
            reencode(None, canonical[:-1] + b',"role":"admin"}'),
        ),
        ("not canonical (a space)", 5, reencode(None, canonical.replace(b",", b", ", 1))),
        ("another prefix", 5, "fieldsync-invite;" + text[len(invite.PREFIX) :]),
        ("an unknown member", 5, reencode({**body, "extra": 1})),
    ]
    out = [
        {"name": n, "log_prefix": p, "invite": t, "now": now, "expect": check(p, t)}
        for n, p, t in cases
    ]
    return {
        "description": (
            "invite: 'fieldsync-invite:' + base64url(JCS(fields + sig)). The server URL "
            "carries the workspace's name in its fragment, form-encoded "
            "(`#workspace=<name>`, '+' for a space): a fragment is never sent in an HTTP "
            "request, so the server never sees the name, and the admin's signature covers "
            "it. Cases: decode `invite`, verify keylog.json's `log[:log_prefix]` from its "
            "pinned root, check the invite against it at time `now`, expect the code."
        ),
        "invite": text,
        "fields": body,
        "server_url": server.split("#", 1)[0],
        "workspace_name": name,
        "cases": out,
    }


def b64d_text(text: str) -> bytes:
    from protocol.encoding import b64d

    return b64d(text[len(invite.PREFIX) :])


def _raises(fn: Any) -> bool:
    try:
        fn()
    except Exception:
        return True
    return False


__all__ = [
    "WEAK_KEY",
    "WEEK",
    "ed25519_vectors",
    "expand",
    "hlc_vectors",
    "invite_vectors",
    "merge_vectors",
    "parse_json_vectors",
    "xwing_vectors",
]
