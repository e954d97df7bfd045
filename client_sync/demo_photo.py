"""A photo as a phone takes it, EXIF and GPS included, for `make demo` and the tests.

The place and the phone are invented. Pillow is imported when a photo is made.
"""

from __future__ import annotations

import io

MAKE = "InventedPhone"
MODEL = "Zhel 7"
COMMENT = b"taken at the consulate gate"
# 43 deg 14' 16.8" N, 76 deg 53' 20.4" E: an invented place; its EXIF text and bytes
# are what a grep of the server must not find.
GPS = {1: "N", 2: (43.0, 14.0, 16.8), 3: "E", 4: (76.0, 53.0, 20.4)}
EXIF_STRINGS = [MAKE.encode(), MODEL.encode(), COMMENT, b"2026:12:04 18:30:05"]


def photo_with_gps(size: tuple[int, int] = (96, 64), orientation: int = 1, seed: int = 0) -> bytes:
    """A JPEG with EXIF (make, model, time, orientation), a GPS position and a comment."""
    from PIL import Image

    img = Image.new("RGB", size)
    img.putdata(
        [
            ((x * 7 + seed) % 256, (y * 5 + seed) % 256, (x ^ y) % 256)
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    exif = Image.Exif()
    exif[0x010F] = MAKE
    exif[0x0110] = MODEL
    exif[0x0132] = "2026:12:04 18:30:05"
    exif[0x0112] = orientation
    exif.get_ifd(0x8825).update(GPS)
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif, comment=COMMENT, quality=90)
    return out.getvalue()
