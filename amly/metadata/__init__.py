"""Reading image metadata (EXIF) and writing it back losslessly and atomically.

``read_image`` is the fast header-only reader; ``update_exif`` / ``set_exif_bytes`` /
``inject_description`` change only the EXIF APP1 segment of a JPEG and keep every other byte.
"""

from __future__ import annotations

from ._tz import parse_timezone
from .read import read_image
from .write import inject_description, set_exif_bytes, update_exif

__all__ = [
    "inject_description",
    "parse_timezone",
    "read_image",
    "set_exif_bytes",
    "update_exif",
]
