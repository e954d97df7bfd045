"""`export --strip-metadata`: a copy of a photo without EXIF, GPS or comments, shown the
way the original is; the original untouched; files Pillow cannot read get no copy."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from client_sync.demo_photo import EXIF_STRINGS, photo_with_gps
from client_sync.stripping import NotStrippable, has_metadata, strip


def test_a_stripped_copy_has_no_gps_and_the_original_keeps_it() -> None:
    original = photo_with_gps()
    before = bytes(original)
    assert has_metadata(original) == ["exif", "comment", "gps"]
    copy, ext = strip(original)
    assert ext == ".jpg"
    assert original == before  # never altered
    assert has_metadata(copy) == []
    assert [s for s in EXIF_STRINGS if s in copy] == []
    assert b"Exif" not in copy
    with Image.open(io.BytesIO(copy)) as img:
        assert (img.format, img.size) == ("JPEG", (96, 64))


def test_the_copy_is_turned_as_the_original_is_shown() -> None:
    # Orientation 6: the camera stored it on its side; viewers turn it a quarter.
    copy, _ = strip(photo_with_gps(orientation=6))
    with Image.open(io.BytesIO(copy)) as img:
        assert img.size == (64, 96)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_other_image_formats_lose_their_metadata(fmt: str) -> None:
    with Image.open(io.BytesIO(photo_with_gps())) as src:
        exif = src.getexif()
        out = io.BytesIO()
        src.save(out, fmt, exif=exif)
    data = out.getvalue()
    assert "gps" in has_metadata(data)
    copy, ext = strip(data)
    assert has_metadata(copy) == [] and ext == "." + fmt.lower()


@pytest.mark.parametrize(
    "data", [b"%PDF-1.7 invented", b"\x00\x00\x00\x18ftypmp42 video", b"", b"\xff\xd8\xff\xe0 cut"]
)
def test_what_pillow_cannot_read_is_not_stripped(data: bytes) -> None:
    with pytest.raises(NotStrippable):
        strip(data)
