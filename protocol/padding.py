"""Padmé padding (Nikitin et al., PETS 2019) of sealed plaintexts.

Pure: no I/O, no clock, no randomness.

Padmé leaks O(log log L) bits of a length L and costs at most 12% overhead, so a
name of 7 letters and one of 9 seal to the same size.
"""

from __future__ import annotations

import struct

from .errors import InvalidEncoding

MIN_PADDED = 32


def padme(length: int) -> int:
    if length <= 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    last_bits = e - s
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask


def pad(message: bytes) -> bytes:
    """`u32be(len(message)) || message || zeros` up to max(32, padme(4 + len))."""
    body = struct.pack(">I", len(message)) + message
    target = max(MIN_PADDED, padme(len(body)))
    return body + b"\x00" * (target - len(body))


def unpad(padded: bytes) -> bytes:
    if len(padded) < 4:
        raise InvalidEncoding("bad_padding", "padded value shorter than its length prefix")
    (length,) = struct.unpack(">I", padded[:4])
    if 4 + length > len(padded):
        raise InvalidEncoding("bad_padding", "length prefix exceeds the padded value")
    if padded[4 + length :].strip(b"\x00"):
        raise InvalidEncoding("bad_padding", "padding bytes are not zero")
    if len(padded) != max(MIN_PADDED, padme(4 + length)):
        raise InvalidEncoding("bad_padding", "padded length is not the Padmé length")
    return padded[4 : 4 + length]
