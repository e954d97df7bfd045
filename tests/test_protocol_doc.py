"""docs/PROTOCOL.md holds the record types and the size bounds as the code has them.

Both tables are rendered from the code (`schemas.record_table.render`, `size_table`
below) and must appear verbatim in the document, between their markers: a change
to the schema or a bound that the specification does not follow fails here.
"""

from __future__ import annotations

from pathlib import Path

from protocol import attachment, encoding, hlc, httpsig, keys, merge
from schemas import record_table, records, wire

DOC = (Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")

SIZE_BEGIN = "<!-- size-bounds: checked by tests/test_protocol_doc.py -->"
SIZE_END = "<!-- size-bounds: end -->"


def _n(value: int) -> str:
    return f"{value:,}".replace(",", " ")


def size_table() -> str:
    rows = [
        ("an id (workspace, bundle, device, record, field tag, invite)", "16 bytes"),
        ("a hash (cell id, `prev`, `key_commit`, log head and root)", "32 bytes"),
        ("an Ed25519 public key; a signature", f"{keys.ED25519_LEN} bytes; {keys.SIG_LEN} bytes"),
        (
            "an HPKE public key; private key",
            f"{_n(keys.HPKE_PUB_LEN)} bytes; {keys.HPKE_PRIV_LEN} bytes",
        ),
        (
            "a sealed data key (`sealed_key`); a sealed epoch key",
            f"{_n(wire.SEALED_DATA_KEY_LEN)} bytes; {_n(wire.SEALED_EPOCH_KEY_LEN)} bytes",
        ),
        ("cells in a bundle", f"1 to {wire.MAX_CELLS_PER_BUNDLE}"),
        ("cell ids a cell supersedes", f"0 to {wire.MAX_SUPERSEDES}"),
        ("a cell's `ct` (ciphertext and tag)", f"at most {_n(wire.MAX_CT_BYTES)} bytes"),
        ("open values (heads) of one register", f"at most {merge.MAX_HEADS}"),
        ("`hlc`", f"0 to 2^53 - 1 ({_n(hlc.MAX_HLC)})"),
        ("`seq` of a bundle or event, `at`, `expires`", "0 to 2^53 - 1 (`seq` of a bundle from 1)"),
        ("`epoch`, `key_epoch`", f"1 to 2^31 - 1 ({_n(wire.MAX_EPOCH)})"),
        ("bundles in one push", f"1 to {wire.MAX_BUNDLES_PER_PUSH}"),
        ("entries of a `sealed` map (approve, rotate)", "at most 1 000"),
        ("items of one re-key request", "1 to 1 000"),
        ("members of one JSON object", f"at most {_n(encoding.MAX_KEYS)}"),
        ("nesting of signed or hashed JSON", "depth 16 (the top value is depth 0)"),
        ("a JSON integer", "-(2^53) < n < 2^53"),
        ("a record type or field name", "1 to 64 characters of `[a-z0-9_]`, not a digit first"),
        ("a text value of a record", f"1 to {records.MAX_TEXT} code points"),
        ("a request nonce", "16 to 64 characters"),
        ("a request's `created`", f"within {httpsig.WINDOW_SECONDS} s of the server's clock"),
        ("receipts in one post", f"1 to {_n(wire.MAX_RECEIPTS_PER_POST)}"),
        (
            "events of a log posted to recreate a workspace",
            f"1 to {_n(wire.MAX_RECREATE_EVENTS)}",
        ),
        (
            "an attachment's `chunk_size`",
            f"a power of two from {attachment.MIN_CHUNK_SIZE} to"
            f" {_n(attachment.MAX_CHUNK_SIZE)} bytes",
        ),
        ("chunks of one attachment", f"1 to {_n(attachment.MAX_CHUNKS)}"),
        ("an attachment's `size`", f"0 to {_n(attachment.MAX_SIZE)} bytes"),
        ("a chunk (ciphertext and tag)", f"17 to {_n(attachment.MAX_CHUNK_CT)} bytes"),
        (
            "an attachment's name; caption; media type",
            f"1 to {attachment.MAX_NAME}; 1 to {_n(attachment.MAX_CAPTION)} code points;"
            f" at most {attachment.MAX_MEDIA_TYPE} characters",
        ),
        ("chunk ids of one `missing` or release request", f"1 to {_n(wire.MAX_CHUNK_IDS)}"),
    ]
    lines = ["| what | bound |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    return "\n".join([SIZE_BEGIN, *lines, SIZE_END])


def _block(begin: str, end: str) -> str:
    start = DOC.index(begin)
    return DOC[start : DOC.index(end, start) + len(end)]


def test_the_record_types_table_is_the_schema() -> None:
    assert _block(record_table.BEGIN, record_table.END) == record_table.render()


def test_the_size_bounds_are_the_code() -> None:
    assert _block(SIZE_BEGIN, SIZE_END) == size_table()


def test_bounds_the_table_states_by_hand_are_the_code() -> None:
    # The rows above whose numbers are not read from a constant.
    assert [v.max for v in wire._sealed_map().validators] == [1000]  # type: ignore[attr-defined]
    field = wire.RekeyRequestSchema().fields["items"]
    assert [(v.min, v.max) for v in field.validators] == [(1, 1000)]  # type: ignore[attr-defined]
    nested: object = 1
    for _ in range(16):
        nested = [nested]
    encoding.canonical_json(nested)  # depth 16 is fine, 17 is too_deep
    try:
        encoding.canonical_json([nested])
        raise AssertionError("depth 17 was accepted")
    except encoding.InvalidEncoding as exc:
        assert exc.code == "too_deep"
    assert hlc.MAX_HLC == wire.MAX_SEQ == 2**53 - 1
