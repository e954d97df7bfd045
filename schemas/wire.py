"""Wire messages of API v1. Unknown fields are refused and every size is bounded.

This is the one place where JSON from the network becomes validated data; the
server and the client both load through these schemas.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from protocol import attachment, keys
from protocol.hlc import MAX_HLC
from protocol.keylog import KINDS, ROLES

from .fields import B64, StrictInt

MAX_CELLS_PER_BUNDLE = 256
MAX_BUNDLES_PER_PUSH = 500
MAX_SUPERSEDES = 32
MAX_CT_BYTES = 64 * 1024
MAX_EPOCH = 2**31 - 1
MAX_SEQ = 2**53 - 1
SEALED_DATA_KEY_LEN = 1120 + 32 + 16  # ML-KEM-768+X25519 enc, key, Poly1305 tag
SEALED_EPOCH_KEY_LEN = 1120 + keys.HPKE_PRIV_LEN + 16

_id = dict(length=16, required=True)
_hash = dict(length=32, required=True)


class Strict(Schema):
    class Meta:
        unknown = RAISE


class CellSchema(Strict):
    record_id = B64(**_id)
    field_tag = B64(**_id)
    cell_id = B64(**_hash)
    hlc = StrictInt(required=True, validate=validate.Range(0, MAX_HLC))
    supersedes = fields.List(
        B64(length=32), required=True, validate=validate.Length(max=MAX_SUPERSEDES)
    )
    ct = B64(required=True, max_length=MAX_CT_BYTES)


class BundleSchema(Strict):
    workspace = B64(**_id)
    bundle_id = B64(**_id)
    device_id = B64(**_id)
    seq = StrictInt(required=True, validate=validate.Range(1, MAX_SEQ))
    prev = B64(**_hash)
    epoch = StrictInt(required=True, validate=validate.Range(1, MAX_EPOCH))
    key_commit = B64(**_hash)
    key_epoch = StrictInt(required=True, validate=validate.Range(1, MAX_EPOCH))
    sealed_key = B64(length=SEALED_DATA_KEY_LEN, required=True)
    sig = B64(length=keys.SIG_LEN, required=True)
    cells = fields.List(
        fields.Nested(CellSchema), required=True, validate=validate.Length(1, MAX_CELLS_PER_BUNDLE)
    )


class PushRequestSchema(Strict):
    bundles = fields.List(
        fields.Nested(BundleSchema),
        required=True,
        validate=validate.Length(1, MAX_BUNDLES_PER_PUSH),
    )


class ErrorBodySchema(Strict):
    code = fields.String(required=True)
    message = fields.String(required=True)


class ErrorSchema(Strict):
    error = fields.Nested(ErrorBodySchema, required=True)


class PushResultSchema(Strict):
    bundle_id = fields.String(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["accepted", "stored", "rejected"])
    )
    seq = fields.Integer(load_default=None, allow_none=True)
    error = fields.Nested(ErrorBodySchema, load_default=None, allow_none=True)


class PushResponseSchema(Strict):
    results = fields.List(fields.Nested(PushResultSchema), required=True)


class ChangeBundleSchema(BundleSchema):
    """A bundle in the changes feed, with the change number the server gave it."""

    change = StrictInt(required=True, validate=validate.Range(1, MAX_SEQ))


class ChangesResponseSchema(Strict):
    bundles = fields.List(fields.Nested(ChangeBundleSchema), required=True)
    next = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))
    done = fields.Boolean(required=True)
    # The database's incarnation (new after a restore or recreate) and its last change.
    incarnation = B64(**_id)
    last = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))


# --- key log -------------------------------------------------------------------------


class DeviceKeysSchema(Strict):
    device_id = B64(**_id)
    sign_pub = B64(length=keys.ED25519_LEN, required=True)
    hpke_pub = B64(length=keys.HPKE_PUB_LEN, required=True)


class EpochSchema(Strict):
    n = StrictInt(required=True, validate=validate.Range(1, MAX_EPOCH))
    pub = B64(length=keys.HPKE_PUB_LEN, required=True)


def _sealed_map(max_items: int = 1000) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(validate=validate.Length(1, 22)),
        values=B64(length=SEALED_EPOCH_KEY_LEN),
        required=True,
        validate=validate.Length(max=max_items),
    )


class GenesisBody(Strict):
    workspace = B64(**_id)
    admin = fields.Nested(DeviceKeysSchema, required=True)
    epoch = fields.Nested(EpochSchema, required=True)
    sealed = _sealed_map(1)


class InviteBody(Strict):
    invite_key = B64(length=keys.ED25519_LEN, required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    expires = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))


class EnrollBody(Strict):
    device_id = B64(**_id)
    sign_pub = B64(length=keys.ED25519_LEN, required=True)
    hpke_pub = B64(length=keys.HPKE_PUB_LEN, required=True, allow_none=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class ApproveBody(Strict):
    device_id = B64(**_id)
    sealed = _sealed_map()


class RevokeBody(Strict):
    device_id = B64(**_id)


class RotateBody(Strict):
    epoch = StrictInt(required=True, validate=validate.Range(2, MAX_EPOCH))
    pub = B64(length=keys.HPKE_PUB_LEN, required=True)
    sealed = _sealed_map()


BODY_SCHEMAS: dict[str, type[Schema]] = {
    "genesis": GenesisBody,
    "invite": InviteBody,
    "enroll": EnrollBody,
    "approve": ApproveBody,
    "revoke": RevokeBody,
    "rotate": RotateBody,
}


class KeyLogEventSchema(Strict):
    seq = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))
    prev = B64(**_hash)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    at = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))
    signer = B64(**_id)
    body = fields.Dict(required=True)
    sig = B64(length=keys.SIG_LEN, required=True)

    @validates_schema
    def _body_for_kind(self, data: dict[str, Any], **kw: Any) -> None:
        schema = BODY_SCHEMAS.get(data.get("kind", ""))
        if schema is None:
            return
        errors = schema().validate(data.get("body", {}))
        if errors:
            raise ValidationError({"body": errors})


class KeyLogSchema(Strict):
    events = fields.List(fields.Nested(KeyLogEventSchema), required=True)
    length = StrictInt(required=True)


class AppendEventSchema(Strict):
    event = fields.Nested(KeyLogEventSchema, required=True)


def _unicode(text: str) -> None:
    # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 encoder takes:
    # the server hashes the code as UTF-8, so such a code must stop here, not in a 500.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError("Not valid Unicode (a lone surrogate).") from exc


class CreateWorkspaceSchema(Strict):
    code = fields.String(required=True, validate=[validate.Length(8, 128), _unicode])
    genesis = fields.Nested(KeyLogEventSchema, required=True)


class RekeyItemSchema(Strict):
    bundle_id = B64(**_id)
    key_epoch = StrictInt(required=True, validate=validate.Range(1, MAX_EPOCH))
    sealed_key = B64(length=SEALED_DATA_KEY_LEN, required=True)


class RekeyRequestSchema(Strict):
    items = fields.List(
        fields.Nested(RekeyItemSchema), required=True, validate=validate.Length(1, 1000)
    )


class RekeyPendingSchema(Strict):
    """A bundle whose data key is still sealed to an older epoch."""

    bundle_id = B64(**_id)
    workspace = B64(**_id)
    key_epoch = StrictInt(required=True, validate=validate.Range(1, MAX_EPOCH))
    sealed_key = B64(length=SEALED_DATA_KEY_LEN, required=True)
    key_commit = B64(**_hash)


class RekeyPendingResponseSchema(Strict):
    target_epoch = StrictInt(required=True, validate=validate.Range(1, MAX_EPOCH))
    bundles = fields.List(fields.Nested(RekeyPendingSchema), required=True)
    remaining = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))


# --- small answers (server responses; the OpenAPI document is built from these) --------


class HealthSchema(Strict):
    status = fields.String(required=True, validate=validate.Equal("ok"))


class CreateWorkspaceResponseSchema(Strict):
    workspace = B64(**_id)
    root = B64(**_hash)


class AppendEventResponseSchema(Strict):
    length = StrictInt(required=True, validate=validate.Range(1, MAX_SEQ))
    head = B64(**_hash)


class EnrollResponseSchema(AppendEventResponseSchema):
    device_id = B64(**_id)


class RekeyResponseSchema(Strict):
    updated = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))


MAX_NAME_IN_ERROR = 40  # characters of a field name an error message repeats
MAX_ERROR_LINE = 200
MAX_ERROR_LINES = 5


def _name(key: Any) -> str:
    # A refused field's name is input: a 2 MB name must not come back as a 2 MB answer.
    text = str(key)
    return text if len(text) <= MAX_NAME_IN_ERROR else text[:MAX_NAME_IN_ERROR] + "…"


def error_messages(errors: Any, prefix: str = "") -> list[str]:
    """Flatten marshmallow's nested error dict into 'path: message' lines, each field
    name cut to MAX_NAME_IN_ERROR characters and each line to MAX_ERROR_LINE."""
    out: list[str] = []
    if isinstance(errors, dict):
        for key, val in errors.items():
            path = f"{prefix}.{_name(key)}" if prefix else _name(key)
            out.extend(error_messages(val, path))
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, (dict, list)):
                out.extend(error_messages(item, prefix))
            else:
                out.append(_line(f"{prefix}: {item}" if prefix else str(item)))
    else:
        out.append(_line(f"{prefix}: {errors}" if prefix else str(errors)))
    return out


def _line(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LINE else text[: MAX_ERROR_LINE - 1] + "…"


def error_summary(errors: Any) -> str:
    """One message for a refused request: the first MAX_ERROR_LINES lines, bounded."""
    lines = error_messages(errors)
    more = len(lines) - MAX_ERROR_LINES
    text = "; ".join(lines[:MAX_ERROR_LINES])
    return text + (f"; and {more} more" if more > 0 else "")


# --- delivery: receipts, chain heads, the server's incarnation (docs/PROTOCOL.md) --------

MAX_RECEIPTS_PER_POST = 1000
MAX_RECREATE_EVENTS = 100_000


class ReceiptSchema(Strict):
    v = StrictInt(required=True, validate=validate.Equal(1))
    workspace = B64(**_id)
    signer = B64(**_id)
    device_id = B64(**_id)
    seq = StrictInt(required=True, validate=validate.Range(1, MAX_SEQ))
    hash = B64(**_hash)
    at = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))
    sig = B64(length=keys.SIG_LEN, required=True)


class ReceiptsRequestSchema(Strict):
    receipts = fields.List(
        fields.Nested(ReceiptSchema),
        required=True,
        validate=validate.Length(1, MAX_RECEIPTS_PER_POST),
    )


class ReceiptsResponseSchema(Strict):
    receipts = fields.List(fields.Nested(ReceiptSchema), required=True)


class StoredResponseSchema(Strict):
    stored = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))


class ChainHeadSchema(Strict):
    v = StrictInt(required=True, validate=validate.Equal(1))
    workspace = B64(**_id)
    device_id = B64(**_id)
    seq = StrictInt(required=True, validate=validate.Range(1, MAX_SEQ))
    hash = B64(**_hash)
    at = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))
    sig = B64(length=keys.SIG_LEN, required=True)


class HeadRequestSchema(Strict):
    head = fields.Nested(ChainHeadSchema, required=True)


class HeadsResponseSchema(Strict):
    heads = fields.List(fields.Nested(ChainHeadSchema), required=True)


class ChainResponseSchema(Strict):
    """The server's stored head of the caller's own chain (0 and the zero hash: none)."""

    seq = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))
    hash = B64(**_hash)


class RevocationResponseSchema(Strict):
    events = fields.List(fields.Nested(KeyLogEventSchema), required=True)


class RecreateWorkspaceSchema(Strict):
    code = fields.String(required=True, validate=validate.Length(8, 128))
    log = fields.List(
        fields.Nested(KeyLogEventSchema),
        required=True,
        validate=validate.Length(1, MAX_RECREATE_EVENTS),
    )


class RecreateWorkspaceResponseSchema(CreateWorkspaceResponseSchema):
    length = StrictInt(required=True, validate=validate.Range(1, MAX_SEQ))
    head = B64(**_hash)


# --- attachment chunks (docs/PROTOCOL.md, "Attachments") -------------------------------

MAX_CHUNK_IDS = attachment.MAX_CHUNKS  # ids in one `missing` or release request


def _chunk_ids() -> fields.List:
    return fields.List(B64(length=32), required=True, validate=validate.Length(1, MAX_CHUNK_IDS))


class ChunksMissingRequestSchema(Strict):
    chunks = _chunk_ids()


class ChunksMissingResponseSchema(Strict):
    missing = fields.List(B64(length=32), required=True)


class ChunkStoredResponseSchema(Strict):
    chunk_id = B64(**_hash)
    status = fields.String(required=True, validate=validate.OneOf(["accepted", "stored"]))


class ChunkReleaseSchema(Strict):
    """A device's signed release of chunks (protocol.attachment.sign_release)."""

    v = StrictInt(required=True, validate=validate.Equal(1))
    workspace = B64(**_id)
    device_id = B64(**_id)
    change = StrictInt(required=True, validate=validate.Range(1, MAX_SEQ))
    chunks = _chunk_ids()
    purge = fields.Boolean(required=True, truthy={True}, falsy={False})
    at = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))
    sig = B64(length=keys.SIG_LEN, required=True)


class ChunkReleaseRequestSchema(Strict):
    release = fields.Nested(ChunkReleaseSchema, required=True)


class ChunkReleaseResponseSchema(Strict):
    released = StrictInt(required=True, validate=validate.Range(0, MAX_CHUNK_IDS))
    dropped = StrictInt(required=True, validate=validate.Range(0, MAX_SEQ))


class ChunkReleaseDocSchema(Strict):
    """The release that let a chunk go, as its device signed it."""

    release = fields.Nested(ChunkReleaseSchema, required=True)
