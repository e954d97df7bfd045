"""Copies of photos without their metadata, for publication (`export --strip-metadata`).

A phone's photo carries EXIF: where it was taken (GPS), when, the phone's make and
model, sometimes its owner's name; and XMP, ICC profiles and comments. The sealed
original keeps all of it (it is evidence); this module makes a separate copy from
the pixels alone, turned the way the original is shown (its EXIF orientation
applied, so that dropping the tag does not turn the picture), and saved without any
of it. Only images Pillow reads are stripped; anything else (video, PDF, an image
format Pillow cannot read) gets no copy, and the caller says so.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

# What can be saved again in its own format without a metadata block.
_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "GIF": "GIF", "BMP": "BMP"}
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
# Kept from `info`: it is part of the picture, not about it.
_PICTURE_INFO = ("transparency",)


class NotStrippable(Exception):
    """Pillow cannot read this file as an image it can save again without metadata."""


def strip(data: bytes) -> tuple[bytes, str]:
    """A copy of the image in `data` with no metadata, and the file extension of its
    format. Raises NotStrippable for anything else."""
    try:
        with warnings.catch_warnings():
            # Phones take 50-200 MP photos now: above Pillow's 89 MP warning, below its
            # 179 MP refusal (DecompressionBombError), which stays.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = _FORMATS.get(img.format or "")
                if fmt is None:
                    raise NotStrippable(f"{img.format} images are not stripped")
                img.load()
                shown = ImageOps.exif_transpose(img)
                clean = shown.copy() if shown is not None else img.copy()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise NotStrippable(str(exc) or type(exc).__name__) from None
    # The pixels stay; everything said about them goes.
    clean.info = {k: v for k, v in clean.info.items() if k in _PICTURE_INFO}
    out = io.BytesIO()
    options: dict[str, object] = {}
    if fmt == "JPEG":
        options = {"quality": 95}
        if clean.mode not in ("RGB", "L", "CMYK"):
            clean = clean.convert("RGB")
    clean.save(out, format=fmt, **options)
    return out.getvalue(), _EXTENSIONS[fmt]


def has_metadata(data: bytes) -> list[str]:
    """What metadata an image carries, by name (for tests and for saying what an
    export keeps): `exif`, `gps`, `xmp`, `icc_profile`, `comment`."""
    with Image.open(io.BytesIO(data)) as img:
        found = [k for k in ("exif", "xmp", "icc_profile", "comment") if img.info.get(k)]
        exif = img.getexif()
        if len(exif) and "exif" not in found:
            found.append("exif")
        if exif.get_ifd(0x8825):  # the GPS IFD
            found.append("gps")
    return found
