"""What is shown of attachments: a record's list, and a descriptor without its key.

Attachments are fields of their record (`_file_<id>`, docs/PROTOCOL.md "Attachments"):
the read layer lists them apart from the fields, and never shows a descriptor's key
or chunk ids (they open the file, and are no one's reading).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol


class OpenValue(Protocol):
    @property
    def value(self) -> Any: ...
    @property
    def device_id(self) -> str: ...
    @property
    def hlc(self) -> int: ...
    @property
    def problem(self) -> str | None: ...


def is_file(name: str) -> bool:
    """An attachment's field (`_file_<id>`): listed as an attachment, not as a field."""
    return name.startswith("_file_")


def public(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """What is shown of a descriptor: everything but its key and chunk ids."""
    return {k: v for k, v in descriptor.items() if k not in ("key", "chunks", "v")}


def shown(name: str, value: Any) -> Any:
    """A value as a person may see it: an attachment's descriptor without its key."""
    return public(value) if is_file(name) and isinstance(value, dict) else value


def listed(
    values: Mapping[str, Sequence[OpenValue]], when: Callable[[int], str]
) -> list[dict[str, Any]]:
    """A record's attachments, in capture order: what each descriptor says but its key
    and chunk ids, who attached it and when, and whether its field is in conflict (a
    removal beside a caption edit). A removed one (null) is left out; a malformed one is
    among the record's invalid values."""
    out = []
    for name, vs in values.items():
        if not is_file(name) or vs[0].problem is not None or not isinstance(vs[0].value, dict):
            continue
        top = vs[0]
        out.append(
            {
                **public(top.value),
                "device_id": top.device_id,
                "at": when(top.hlc),
                "conflict": len(vs) > 1,
            }
        )
    return sorted(out, key=lambda a: (a["captured_at"], a["id"]))
