"""Record types: the fields a volunteer fills in, their types, and refusals that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.encoding import b64e
from schemas.records import (
    DELETED_FIELD,
    MAX_TEXT,
    RECORD_TYPES,
    RecordError,
    field_names,
    load_fields,
)

PICKET_ID = b64e(bytes(range(16)))


def refusal(record_type: str, values: dict[str, Any]) -> str:
    with pytest.raises(RecordError) as info:
        load_fields(record_type, values)
    return str(info.value)


def test_record_types() -> None:
    assert sorted(RECORD_TYPES) == ["detention", "picket", "relative"]


@pytest.mark.parametrize(
    ("record_type", "required"),
    [
        (
            "picket",
            {"date", "place", "attendance", "police_action", "outcome", "sources", "reliability"},
        ),
        (
            "detention",
            {"picket_id", "person_name", "released_at", "fine_amount", "fine_currency", "charges"},
        ),
        ("relative", {"full_name", "status", "relation", "whereabouts", "victims_db_id"}),
    ],
)
def test_required_field_names_exist(record_type: str, required: set[str]) -> None:
    assert required <= set(field_names(record_type))


def test_a_picket_loads_typed() -> None:
    values = {
        "date": "2026-11-20",
        "place": "Test Square 7",
        "attendance": "40",
        "police_action": "dispersed",
        "reliability": "high",
        "sources": "seen by the volunteer",
    }
    assert load_fields("picket", values) == {**values, "attendance": 40}


def test_a_detention_loads_typed() -> None:
    values = {
        "picket_id": PICKET_ID,
        "person_name": "Example Person Bir",
        "detained_at": "2026-12-04 14:05",
        "released_at": "2026-12-04T18:30",
        "fine_amount": 50000,
        "fine_currency": "KZT",
        "fine_paid": False,
        "sentence_days": "10",
    }
    assert load_fields("detention", values) == {
        **values,
        "detained_at": "2026-12-04T14:05",
        "sentence_days": 10,
    }


@pytest.mark.parametrize("status", ["camp", "prison", "released", "unknown"])
def test_relative_status(status: str) -> None:
    values = {"full_name": "Example Relative Eki", "status": status}
    assert load_fields("relative", values) == values


def test_relative_status_outside_the_list() -> None:
    assert refusal("relative", {"status": "holiday"}).startswith("relative.status: Must be one of:")


@pytest.mark.parametrize("date", ["2019", "2019-05", "2019-05-14", "2024-02-29"])
def test_fuzzy_dates_accepted(date: str) -> None:
    assert load_fields("relative", {"detained_since": date}) == {"detained_since": date}
    assert load_fields("picket", {"date": date}) == {"date": date}


@pytest.mark.parametrize(
    ("date", "reason"),
    [
        ("19", "Not a date: use YYYY, YYYY-MM or YYYY-MM-DD."),
        ("2019-5", "Not a date: use YYYY, YYYY-MM or YYYY-MM-DD."),
        ("2019-13", "Not a date: use YYYY, YYYY-MM or YYYY-MM-DD."),
        ("2019/05/14", "Not a date: use YYYY, YYYY-MM or YYYY-MM-DD."),
        ("May 2019", "Not a date: use YYYY, YYYY-MM or YYYY-MM-DD."),
        ("2019-05-14T10:00", "Not a date: use YYYY, YYYY-MM or YYYY-MM-DD."),
        ("2019-02-30", "No such day in the calendar."),
        ("2023-02-29", "No such day in the calendar."),
    ],
)
def test_bad_fuzzy_dates_name_the_field(date: str, reason: str) -> None:
    assert refusal("relative", {"last_contact": date}) == f"relative.last_contact: {reason}"


@pytest.mark.parametrize("when", ["2026-12-04", "2026-12-04T25:00", "04.12.2026 18:30", "tomorrow"])
def test_bad_date_times(when: str) -> None:
    assert refusal("detention", {"released_at": when}) == (
        "detention.released_at: Not a date and time: use YYYY-MM-DDTHH:MM, e.g. 2026-12-04T18:30."
    )


@pytest.mark.parametrize("amount", ["-5", "1.5", "ten", True, -1, 1.5, 2.0, None, [1]])
def test_amounts_are_whole_numbers(amount: Any) -> None:
    assert refusal("detention", {"fine_amount": amount}).startswith("detention.fine_amount: ")


@pytest.mark.parametrize("ref", ["", "short", PICKET_ID + "A", "picket-7"])
def test_picket_id_is_a_record_id(ref: str) -> None:
    assert refusal("detention", {"picket_id": ref}).startswith(
        "detention.picket_id: Not a record id"
    )


def test_several_errors_are_all_named_in_order() -> None:
    message = refusal("detention", {"fine_currency": "tenge", "sentence_days": "a week"})
    assert message == (
        "detention.fine_currency: Use a 3-letter code, e.g. KZT.; "
        "detention.sentence_days: Not a whole number."
    )


def test_unknown_field_lists_the_fields() -> None:
    assert refusal("picket", {"colour": "red"}) == (
        f"picket.colour: no such field (fields: {', '.join(field_names('picket'))})"
    )


def test_reserved_and_invalid_names_are_not_fields() -> None:
    assert refusal("picket", {DELETED_FIELD: True}) == "picket._deleted: not a field name"
    assert refusal("picket", {"Place": "x"}) == "picket.Place: not a field name"


def test_unknown_type() -> None:
    assert refusal("protest", {}).startswith("unknown record type 'protest'")


def test_text_is_bounded() -> None:
    assert load_fields("picket", {"notes": "x" * MAX_TEXT}) == {"notes": "x" * MAX_TEXT}
    assert refusal("picket", {"notes": "x" * (MAX_TEXT + 1)}).startswith("picket.notes: ")
    assert refusal("picket", {"place": ""}).startswith("picket.place: ")
