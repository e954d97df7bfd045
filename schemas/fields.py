"""Field types shared by the wire and record schemas."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields

from protocol.encoding import check_b64
from protocol.errors import InvalidEncoding


class B64(fields.String):
    """Unpadded base64url with an exact byte length, or a maximum one."""

    def __init__(
        self, *, length: int | None = None, max_length: int | None = None, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.length = length
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError("Not a valid string.")
        if self.max_length is not None and len(value) > (self.max_length * 4 + 2) // 3:
            raise ValidationError(f"Longer than {self.max_length} bytes.")
        try:
            # Checked, not decoded: the core decodes once where it needs the bytes.
            check_b64(value, length=self.length)
        except InvalidEncoding as exc:
            raise ValidationError(exc.reason) from exc
        return value


class StrictInt(fields.Integer):
    """An integer that refuses strings, floats and booleans: the wire has one spelling."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(strict=True, **kw)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> int:
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kw)
