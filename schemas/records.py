"""The record types volunteers capture, after the HURIDOCS Events Standard Formats.

picket = Event; detention = Act with Arrest details and a penalty extension;
relative = Person plus Act, with fuzzy dates and whereabouts. Every record also
carries its sources and a reliability grade, because this documentation is
attacked on its accuracy.

This module is the one source of each field's name, kind, label, help text,
choices and whether a capture needs it: the command line's prompts and `--help`,
the workbench's forms and the validation of both read them from here (`specs`).
Labels, help and messages are English message ids marked with `N_` so that the
workbench translates them (gettext); the command line shows them as they are.
Values arrive as text (a terminal, a form) or JSON and are loaded to their typed
form (int, bool, ISO date text) before sealing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from protocol.tags import NAME_RE

DELETED_FIELD = "_deleted"  # reserved: a tombstone cell; see docs/PROTOCOL.md "Deletion"
MAX_TEXT = 4000


def N_(message: str) -> str:
    """Mark a message for the catalogue; it is translated where it is shown."""
    return message


# ASCII digits only: `\d` would take "٢٠١٩" as a year, and exports and duplicate
# checks would then see another date than 2019.
_FUZZY_DATE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?\Z")
_RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{22}\Z")

# Messages shown beside a field; each is a catalogue entry (no numbers spliced in).
MISSING = N_("Required: fill this in.")
NOT_TEXT = N_("Not text.")
TOO_LONG = N_("Too long: at most 4000 characters.")
EMPTY = N_("Empty: leave the field out instead.")
NOT_DATE = N_("Not a date: use YYYY, YYYY-MM or YYYY-MM-DD.")
NO_SUCH_DAY = N_("No such day in the calendar.")
NOT_DATETIME = N_("Not a date and time: use YYYY-MM-DDTHH:MM, e.g. 2026-12-04T18:30.")
NOT_RECORD_ID = N_("Not a record id (22 characters, as printed by `fieldsync add`).")
NOT_COUNT = N_("Not a whole number.")
NOT_IN_RANGE = N_("Out of range: a whole number from 0 to 10^12.")
NOT_CHOICE = N_("Not one of the choices.")
NOT_CURRENCY = N_("Use a 3-letter code, e.g. KZT.")
NOT_BOOL = N_("Not yes or no.")
NOT_CODE = N_("At most 64 characters.")
UNKNOWN_FIELD = N_("No such field.")

_TEXT_ERRORS: dict[str, Any] = {"invalid": NOT_TEXT, "required": MISSING, "null": MISSING}


class FuzzyDate(fields.String):
    """A date of reduced precision: `2019`, `2019-05` or `2019-05-14` (HURIDOCS fuzzy dates)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        text = super()._deserialize(value, attr, data, **kw).strip()
        if not _FUZZY_DATE.match(text):
            raise ValidationError(NOT_DATE)
        if len(text) == 10:
            try:
                datetime.strptime(text, "%Y-%m-%d")
            except ValueError as exc:
                raise ValidationError(NO_SUCH_DAY) from exc
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
        raise ValidationError(NOT_DATETIME)


class RecordRef(fields.String):
    """The id of another record (22 characters of base64url)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        text = super()._deserialize(value, attr, data, **kw).strip()
        if not _RECORD_ID.match(text):
            raise ValidationError(NOT_RECORD_ID)
        return text


class Count(fields.Integer):
    """A whole number ≥ 0 that also accepts its decimal text from a terminal or a form."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(
            validate=validate.Range(min=0, max=10**12, error=NOT_IN_RANGE),
            error_messages={"invalid": NOT_COUNT, **_TEXT_ERRORS},
            **kw,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> int:
        # Not floats: marshmallow would truncate 1.5 to 1 and change what was reported.
        # ASCII digits only: "٣".isdigit() is true, and int() reads it as 3.
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, str))
            or (isinstance(value, str) and not re.fullmatch(r"\s*[0-9]{1,13}\s*", value))
        ):
            raise ValidationError(NOT_COUNT)
        return super()._deserialize(value, attr, data, **kw)


class YesNo(fields.Boolean):
    """true/false, also yes/no from a terminal or a form."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(
            truthy={True, "true", "yes", "1"},
            falsy={False, "false", "no", "0"},
            error_messages={"invalid": NOT_BOOL, **_TEXT_ERRORS},
            **kw,
        )


# --- field declarations, with what forms and prompts show ---------------------------------


def _meta(
    kind: str,
    label: str,
    help_text: str,
    choices: list[tuple[str, str]] | None,
    *,
    capture: bool = True,
) -> Any:
    return {
        "kind": kind,
        "label": label,
        "help": help_text,
        "choices": choices or [],
        "capture": capture,
    }


def _text(label: str, help_text: str = "", *, long: bool = False, required: bool = False) -> Any:
    return fields.String(
        required=required,
        validate=[
            validate.Length(min=1, error=EMPTY),
            validate.Length(max=MAX_TEXT, error=TOO_LONG),
        ],
        error_messages=_TEXT_ERRORS,
        metadata=_meta("longtext" if long else "text", label, help_text, None),
    )


def _choice(
    label: str, options: list[tuple[str, str]], help_text: str = "", *, required: bool = False
) -> Any:
    return fields.String(
        required=required,
        validate=validate.OneOf([value for value, _ in options], error=NOT_CHOICE),
        error_messages=_TEXT_ERRORS,
        metadata=_meta("choice", label, help_text, options),
    )


def _date(label: str, help_text: str = "", *, required: bool = False) -> Any:
    return FuzzyDate(
        required=required,
        error_messages=_TEXT_ERRORS,
        metadata=_meta("date", label, help_text or N_("YYYY-MM-DD; or YYYY-MM or YYYY"), None),
    )


def _datetime(label: str, help_text: str = "") -> Any:
    return LocalDateTime(
        error_messages=_TEXT_ERRORS,
        metadata=_meta(
            "datetime", label, help_text or N_("Local time, e.g. 2026-12-04T18:30"), None
        ),
    )


def _count(label: str, help_text: str = "") -> Any:
    return Count(metadata=_meta("count", label, help_text, None))


RELIABILITY = [
    ("high", N_("High: seen first-hand or documented")),
    ("medium", N_("Medium: a credible second-hand account")),
    ("low", N_("Low: hearsay, not confirmed")),
    ("unknown", N_("Unknown")),
]
DATE_PRECISION = [
    ("exact", N_("Exact")),
    ("estimate", N_("Estimate")),
    ("unknown_day", N_("Day unknown")),
    ("unknown_month", N_("Month unknown")),
]
STATUS = [
    ("camp", N_("In a camp")),
    ("prison", N_("In prison")),
    ("detained", N_("Detained (other)")),
    ("house_arrest", N_("House arrest")),
    ("released", N_("Released")),
    ("deceased", N_("Deceased")),
    ("unknown", N_("Unknown")),
]
WHEREABOUTS = [
    ("acknowledged", N_("Acknowledged by the authorities")),
    ("not_disclosed", N_("Not disclosed")),
    ("denied", N_("Denied")),
    ("unknown", N_("Unknown")),
]


class _Record(Schema):
    class Meta:
        unknown = RAISE

    sources = _text(
        N_("Sources"), N_("Who reported it and how they know"), long=True
    )  # attacked on accuracy: every record says where it comes from
    reliability = _choice(N_("Reliability"), RELIABILITY, N_("How sure the source is"))
    notes = _text(N_("Notes"), long=True)
    # Set by a coordinator who finds two records of one event or person: this one
    # then stands behind the other, its testimony kept (not asked at capture).
    same_as = RecordRef(
        error_messages=_TEXT_ERRORS,
        metadata=_meta(
            "record",
            N_("Same as"),
            N_("The record this one duplicates: the same event or person"),
            None,
            capture=False,
        ),
    )


class PicketSchema(_Record):
    """HURIDOCS Event: one picket."""

    date = _date(N_("Date"), required=True)
    date_precision = _choice(N_("Date precision"), DATE_PRECISION)
    place = _text(N_("Place"), N_("Where the picket stood"), required=True)
    attendance = _count(N_("Attendance"), N_("How many people took part"))
    police_action = _text(N_("Police action"), N_("e.g. dispersed, detained participants, none"))
    outcome = _text(N_("Outcome"))
    description = _text(N_("Description"), long=True)


class DetentionSchema(_Record):
    """HURIDOCS Act (Arrest) plus a penalty extension: one person detained at a picket."""

    person_name = _text(N_("Person detained"), N_("Full name, in any script"), required=True)
    picket_id = RecordRef(
        error_messages=_TEXT_ERRORS,
        metadata=_meta(
            "record", N_("Picket"), N_("The picket where it happened (its record id)"), None
        ),
    )
    detained_at = _datetime(N_("Detained at"))
    held_at = _text(N_("Held at"), N_("Place of detention"))
    released_at = _datetime(N_("Released at"))
    charges = _text(N_("Charges"), N_("Article of the code, e.g. Art. 488 Administrative Code"))
    court = _text(N_("Court"))
    court_date = _date(N_("Court date"))
    sentence_days = _count(N_("Sentence (days)"))
    fine_amount = _count(N_("Fine amount"), N_("In whole units of the currency"))
    fine_currency = fields.String(
        validate=validate.Regexp(r"^[A-Z]{3}\Z", error=NOT_CURRENCY),
        error_messages=_TEXT_ERRORS,
        metadata=_meta("currency", N_("Fine currency"), N_("3 letters, e.g. KZT"), None),
    )
    fine_paid = YesNo(metadata=_meta("bool", N_("Fine paid"), "", None))


class RelativeSchema(_Record):
    """HURIDOCS Person plus Act: a family member held in China."""

    full_name = _text(N_("Full name"), N_("As the family writes it, in any script"), required=True)
    name_kazakh = _text(N_("Name in Kazakh"))
    name_chinese = _text(N_("Name in Chinese"))
    name_latin = _text(N_("Name in Latin letters"))
    status = _choice(N_("Status"), STATUS, required=True)
    whereabouts = _choice(N_("Whereabouts"), WHEREABOUTS)
    petitioner = _text(N_("Petitioner"), N_("Who speaks for them at the picket"))
    relation = _text(N_("Relation"), N_("Relation to the petitioner: brother, mother, ..."))
    detained_since = _date(N_("Detained since"))
    date_precision = _choice(N_("Date precision"), DATE_PRECISION)
    sentence = _text(N_("Sentence"))
    place = _text(N_("Place"), N_("Camp, prison or town, if known"))
    last_contact = _date(N_("Last contact"))
    victims_db_id = fields.String(
        validate=validate.Length(1, 64, error=NOT_CODE),
        error_messages=_TEXT_ERRORS,
        metadata=_meta(
            "code",
            N_("Victims database entry"),
            N_("Entry number of the same person in a public victims database"),
            None,
        ),
    )


RECORD_TYPES: dict[str, type[Schema]] = {
    "picket": PicketSchema,
    "detention": DetentionSchema,
    "relative": RelativeSchema,
}
TYPE_LABELS = {
    "picket": N_("Picket"),
    "detention": N_("Detention"),
    "relative": N_("Relative"),
}
TYPE_PLURALS = {
    "picket": N_("Pickets"),
    "detention": N_("Detentions"),
    "relative": N_("Relatives"),
}

# A device's name, sealed like a record so that only members read it (a name in the
# key log, in the clear, would tell whoever seizes the server who is in the group).
DEVICE_TYPE = "_device"
DEVICE_NAME_FIELD = "name"
DEVICE_NAME_MAX = 64
BAD_DEVICE_NAME = N_("A device name is 1 to 64 characters, on one line.")


# Two records a coordinator judged not to be duplicates: record id derived from the
# pair (protocol.tags.distinct_pair_record), one field holding both ids.
DISTINCT_TYPE = "_distinct"
DISTINCT_FIELD = "pair"

# Fields coordinators compare to point out likely duplicates.
DATE_FIELD = {"picket": "date", "detention": "detained_at", "relative": "detained_since"}
NAME_FIELD = {"picket": "place", "detention": "person_name", "relative": "full_name"}
# A field that links to another record: detention.picket_id -> a picket.
LINKS = {("detention", "picket_id"): "picket"}


@dataclass(frozen=True)
class FieldSpec:
    """What a form or a prompt needs of one field (labels are untranslated message ids)."""

    name: str
    kind: str  # text longtext date datetime count choice bool currency code record
    label: str
    help: str
    required: bool
    choices: tuple[tuple[str, str], ...]
    capture: bool = True  # asked when a record is made (else only when it is edited)


_BASE = ("sources", "reliability", "notes", "same_as")


def specs(record_type: str) -> list[FieldSpec]:
    """The fields of a type in form order: its own fields as declared, then sources,
    reliability and notes (which every type shares)."""
    declared = RECORD_TYPES[record_type]().fields
    order = [n for n in declared if n not in _BASE] + list(_BASE)
    out = []
    for name in order:
        f = declared[name]
        meta = f.metadata
        out.append(
            FieldSpec(
                name=name,
                kind=meta["kind"],
                label=meta["label"],
                help=meta["help"],
                required=bool(f.required),
                choices=tuple(meta["choices"]),
                capture=meta["capture"],
            )
        )
    return out


def required_fields(record_type: str) -> list[str]:
    return [s.name for s in specs(record_type) if s.required]


class RecordError(ValueError):
    """Values that do not validate. `errors` maps each field to its message ids; the
    text (`str()`) names every field and what is wrong, for the command line."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


def field_names(record_type: str) -> list[str]:
    return sorted(RECORD_TYPES[record_type]().fields)


def closest_field(record_type: str, name: str) -> str | None:
    """The field a mistyped name most likely meant (`atendance` -> `attendance`)."""
    found = difflib.get_close_matches(name, field_names(record_type), n=1, cutoff=0.6)
    return found[0] if found else None


def _cli_text(record_type: str, name: str, message: str) -> str:
    """A message for the command line, where no form shows the choices."""
    if message == NOT_CHOICE:
        field = RECORD_TYPES[record_type]().fields[name]
        return "Must be one of: " + ", ".join(v for v, _ in field.metadata["choices"]) + "."
    return message


def load_fields(record_type: str, values: dict[str, Any], *, whole: bool = False) -> dict[str, Any]:
    """Validate and type `values`: `{"attendance": "40"}` -> `{"attendance": 40}`.

    `whole=True` is a new record: every required field must be there. An edit
    (`whole=False`) may set any subset.
    """
    schema_cls = RECORD_TYPES.get(record_type)
    if schema_cls is None:
        raise RecordError(
            f"unknown record type {record_type!r}: use one of {', '.join(RECORD_TYPES)}"
        )
    for name in values:
        if not NAME_RE.match(name) or name.startswith("_"):
            raise RecordError(f"{record_type}.{name}: not a field name", {name: [UNKNOWN_FIELD]})
    try:
        loaded: dict[str, Any] = schema_cls().load(values, partial=not whole)
    except ValidationError as exc:
        msgs = exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}
        errors: dict[str, list[str]] = {}
        parts = []
        for name, errs in sorted(msgs.items()):
            texts = [str(e) for e in errs] if isinstance(errs, list) else [str(errs)]
            if texts == ["Unknown field."]:
                errors[name] = [UNKNOWN_FIELD]
                guess = closest_field(record_type, name)
                hint = f"did you mean {guess}? " if guess else ""
                text = f"no such field ({hint}fields: {', '.join(field_names(record_type))})"
            else:
                errors[name] = texts
                text = "; ".join(_cli_text(record_type, name, t) for t in texts)
            parts.append(f"{record_type}.{name}: {text}")
        raise RecordError("; ".join(parts), errors) from exc
    return loaded


def load_device_name(text: Any) -> str:
    """A device's name, its spaces collapsed; `RecordError` when empty, too long or
    holding control characters."""
    name = " ".join(text.split()) if isinstance(text, str) else ""
    if not 1 <= len(name) <= DEVICE_NAME_MAX or not name.isprintable():
        raise RecordError(f"device name: {BAD_DEVICE_NAME}", {"name": [BAD_DEVICE_NAME]})
    return name
