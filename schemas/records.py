"""The record types volunteers capture, after the HURIDOCS Events Standard Formats.

picket = Event; detention = Act with Arrest details and a penalty extension;
relative = Person plus Act, with fuzzy dates and whereabouts. Every record also
carries its sources and a reliability grade, because this documentation is
attacked on its accuracy. Values arrive as text from the command line or as JSON
and are loaded to their typed form (int, bool, ISO date text) before sealing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from protocol.crypto import NAME_RE

DELETED_FIELD = "_deleted"  # reserved: a tombstone cell; see docs/PROTOCOL.md "Deletion"
MAX_TEXT = 4000

_FUZZY_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?\Z")
_RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{22}\Z")


class FuzzyDate(fields.String):
    """A date of reduced precision: `2019`, `2019-05` or `2019-05-14` (HURIDOCS fuzzy dates)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        text = super()._deserialize(value, attr, data, **kw).strip()
        if not _FUZZY_DATE.match(text):
            raise ValidationError("Not a date: use YYYY, YYYY-MM or YYYY-MM-DD.")
        if len(text) == 10:
            try:
                datetime.strptime(text, "%Y-%m-%d")
            except ValueError as exc:
                raise ValidationError("No such day in the calendar.") from exc
        return text


class LocalDateTime(fields.String):
    """A local date and time to the minute, e.g. `2026-12-04T18:30`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        text = super()._deserialize(value, attr, data, **kw).strip()
        for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"):
            try:
                return datetime.strptime(text, fmt).strftime("%Y-%m-%dT%H:%M")
            except ValueError:
                continue
        raise ValidationError("Not a date and time: use YYYY-MM-DDTHH:MM, e.g. 2026-12-04T18:30.")


class RecordRef(fields.String):
    """The id of another record (22 characters of base64url)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        text = super()._deserialize(value, attr, data, **kw).strip()
        if not _RECORD_ID.match(text):
            raise ValidationError("Not a record id (22 characters, as printed by `fieldsync add`).")
        return text


class Count(fields.Integer):
    """A whole number ≥ 0 that also accepts its decimal text from the command line."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(validate=validate.Range(min=0, max=10**12), **kw)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> int:
        # Not floats: marshmallow would truncate 1.5 to 1 and change what was reported.
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, str))
            or (isinstance(value, str) and not value.strip().isdigit())
        ):
            raise ValidationError("Not a whole number.")
        return super()._deserialize(value, attr, data, **kw)


def _text(**kw: Any) -> fields.String:
    return fields.String(validate=validate.Length(1, MAX_TEXT), **kw)


def _choice(options: list[str]) -> fields.String:
    return fields.String(validate=validate.OneOf(options, error="Must be one of: {choices}."))


RELIABILITY = ["high", "medium", "low", "unknown"]
DATE_PRECISION = ["exact", "estimate", "unknown_day", "unknown_month"]


class _Record(Schema):
    class Meta:
        unknown = RAISE

    sources = _text()  # who reported it and how they know
    reliability = _choice(RELIABILITY)
    notes = _text()


class PicketSchema(_Record):
    """HURIDOCS Event: one picket."""

    date = FuzzyDate()
    date_precision = _choice(DATE_PRECISION)
    place = _text()
    attendance = Count()
    police_action = _text()  # e.g. dispersed, detained participants, none
    outcome = _text()
    description = _text()


class DetentionSchema(_Record):
    """HURIDOCS Act (Arrest) plus a penalty extension: one person detained at a picket."""

    picket_id = RecordRef()
    person_name = _text()
    detained_at = LocalDateTime()
    held_at = _text()  # place of detention
    released_at = LocalDateTime()
    charges = _text()  # article of the code, e.g. "Art. 488 Administrative Code"
    court = _text()
    court_date = FuzzyDate()
    sentence_days = Count()
    fine_amount = Count()
    fine_currency = fields.String(
        validate=validate.Regexp(r"^[A-Z]{3}\Z", error="Use a 3-letter code, e.g. KZT.")
    )
    fine_paid = fields.Boolean()


class RelativeSchema(_Record):
    """HURIDOCS Person plus Act: a family member held in China."""

    full_name = _text()
    name_kazakh = _text()
    name_chinese = _text()
    name_latin = _text()
    petitioner = _text()  # who speaks for them at the picket
    relation = _text()  # relation to the petitioner: brother, mother, ...
    status = _choice(
        ["camp", "prison", "detained", "house_arrest", "released", "deceased", "unknown"]
    )
    whereabouts = _choice(["acknowledged", "not_disclosed", "denied", "unknown"])
    detained_since = FuzzyDate()
    date_precision = _choice(DATE_PRECISION)
    sentence = _text()
    place = _text()
    last_contact = FuzzyDate()
    victims_db_id = fields.String(
        validate=validate.Length(1, 64)
    )  # entry in a public victims database


RECORD_TYPES: dict[str, type[Schema]] = {
    "picket": PicketSchema,
    "detention": DetentionSchema,
    "relative": RelativeSchema,
}

# Fields coordinators compare to point out likely duplicates.
DATE_FIELD = {"picket": "date", "detention": "detained_at", "relative": "detained_since"}
NAME_FIELD = {"picket": "place", "detention": "person_name", "relative": "full_name"}


class RecordError(ValueError):
    """A value that does not validate; the message names the field and what is wrong."""


def field_names(record_type: str) -> list[str]:
    return sorted(RECORD_TYPES[record_type]().fields)


def load_fields(record_type: str, values: dict[str, Any]) -> dict[str, Any]:
    """Validate and type `values`: `{"attendance": "40"}` -> `{"attendance": 40}`."""
    schema_cls = RECORD_TYPES.get(record_type)
    if schema_cls is None:
        raise RecordError(
            f"unknown record type {record_type!r}: use one of {', '.join(RECORD_TYPES)}"
        )
    for name in values:
        if not NAME_RE.match(name) or name.startswith("_"):
            raise RecordError(f"{record_type}.{name}: not a field name")
    try:
        loaded: dict[str, Any] = schema_cls().load(values)
    except ValidationError as exc:
        msgs = exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}
        parts = []
        for name, errs in sorted(msgs.items()):
            text = "; ".join(str(e) for e in errs) if isinstance(errs, list) else str(errs)
            if text == "Unknown field.":
                text = f"no such field (fields: {', '.join(field_names(record_type))})"
            parts.append(f"{record_type}.{name}: {text}")
        raise RecordError("; ".join(parts)) from exc
    return loaded
