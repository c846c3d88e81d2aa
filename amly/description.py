"""The Mapillary image description: the ``MAP*`` keys embedded in an uploaded image, and the
``mapillary_image_description.json`` file the official tool's ``process`` writes.

Pure functions: building, formatting and validating descriptions; reading and writing the
description file is at the bottom and is the only I/O here.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

from ._atomic import atomic_write
from .errors import FileError
from .types import ImageMeta

CAPTURE_TIME_FORMAT = "%Y_%m_%d_%H_%M_%S_%f"

#: The only keys allowed in a description embedded in an uploaded image.
EMBEDDED_KEYS = frozenset(
    {
        "MAPLatitude",
        "MAPLongitude",
        "MAPCaptureTime",
        "MAPAltitude",
        "MAPCompassHeading",
        "MAPDeviceMake",
        "MAPDeviceModel",
        "MAPGPSAccuracyMeters",
        "MAPCameraUUID",
        "MAPOrientation",
        "MAPFilename",
        "MAPMetaTags",
    }
)
REQUIRED_KEYS = frozenset({"MAPLatitude", "MAPLongitude", "MAPCaptureTime"})


def format_capture_time(t: datetime) -> str:
    """UTC time in Mapillary's format, milliseconds precision.

    >>> format_capture_time(datetime(2021, 2, 13, 13, 24, 41, 140000, tzinfo=timezone.utc))
    '2021_02_13_13_24_41_140'
    >>> format_capture_time(datetime(1, 1, 1, 0, 0, 0, 999, tzinfo=timezone.utc))
    '0001_01_01_00_00_00_000'
    """
    if t.tzinfo is None:
        raise ValueError("capture time must be timezone-aware")
    u = t.astimezone(timezone.utc)
    # Not strftime: its %Y writes year 1 as "1", which nobody parses back.
    return (
        f"{u.year:04d}_{u.month:02d}_{u.day:02d}_{u.hour:02d}_{u.minute:02d}_{u.second:02d}_"
        f"{u.microsecond // 1000:03d}"
    )


def parse_capture_time(s: str) -> datetime:
    """Inverse of :func:`format_capture_time` (also accepts a missing milliseconds part).

    >>> parse_capture_time('2021_02_13_13_24_41_140').isoformat()
    '2021-02-13T13:24:41.140000+00:00'
    """
    parts = s.split("_")
    if len(parts) == 6:
        parts.append("0")
    if len(parts) != 7:
        raise ValueError(f"not a Mapillary capture time: {s!r}")
    y, mo, d, h, mi, sec, ms = (int(p) for p in parts)
    return datetime(y, mo, d, h, mi, sec, ms * 1000, tzinfo=timezone.utc)


def describe(image: ImageMeta) -> dict[str, Any]:
    """The embedded description of a fully geotagged image (allowed keys only).

    >>> from datetime import datetime, timezone
    >>> m = ImageMeta("/x/a.jpg", datetime(2020, 1, 1, tzinfo=timezone.utc), 1.5, 2.25,
    ...               heading=359.99949)
    >>> describe(m)["MAPCompassHeading"]
    {'TrueHeading': 359.999, 'MagneticHeading': 359.999}
    """
    if image.capture_time is None or image.lat is None or image.lon is None:
        raise ValueError(f"{image.path}: cannot describe an image without time and position")
    d: dict[str, Any] = {
        "MAPLatitude": round(image.lat, 7),
        "MAPLongitude": round(image.lon, 7),
        "MAPCaptureTime": format_capture_time(image.capture_time),
        "MAPFilename": os.path.basename(image.path),
        "MAPOrientation": image.orientation or 1,
    }
    if image.alt is not None:
        d["MAPAltitude"] = round(image.alt, 3)
    if image.heading is not None:
        h = round(image.heading % 360.0, 3)
        d["MAPCompassHeading"] = {"TrueHeading": h, "MagneticHeading": h}
    if image.make:
        d["MAPDeviceMake"] = image.make
    if image.model:
        d["MAPDeviceModel"] = image.model
    if image.gps_accuracy is not None:
        d["MAPGPSAccuracyMeters"] = image.gps_accuracy
    if image.serial:
        d["MAPCameraUUID"] = image.serial
    return d


def embeddable(description: dict[str, Any]) -> dict[str, Any]:
    """Only the keys allowed inside an uploaded image (drops MAPSequenceUUID, filename, ...)."""
    return {k: v for k, v in description.items() if k in EMBEDDED_KEYS}


def dumps(description: dict[str, Any]) -> str:
    """Compact JSON with sorted keys: the exact bytes embedded in EXIF ImageDescription.

    >>> dumps({"MAPFilename": os.fsdecode(b"\\xff.jpg"), "MAPDeviceMake": "Ricoh ü"})
    '{"MAPDeviceMake":"Ricoh ü","MAPFilename":"\\\\udcff.jpg"}'
    """
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text if text.isascii() else escape_surrogates(text)


def escape_surrogates(text: str) -> str:
    """JSON text with its lone surrogates written as ``\\udcXX`` escapes.

    A file name that is not valid UTF-8 reaches Python with each undecodable byte as a lone
    surrogate (``b"\\xff"`` -> ``"\\udcff"``), which no UTF-8 encoder accepts. Escaped,
    the JSON stays strict and encodable, reads back to the same string (so to the same
    bytes on disk), and matches what mapillary_tools writes for such names.

    >>> escape_surrogates('["\\udcff.jpg", "ü"]')
    '["\\\\udcff.jpg", "ü"]'
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Only surrogates fail to encode, and they only occur inside JSON strings: the
        # backslash escape Python writes for them is the JSON escape.
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def validate_embedded(description: Any) -> list[str]:
    """Problems with an embedded description (empty list when valid). Used by the server.

    >>> validate_embedded({"MAPLatitude": 1, "MAPLongitude": 2,
    ...                    "MAPCaptureTime": "2020_01_01_00_00_00_000"})
    []
    >>> validate_embedded({"MAPLatitude": 91, "MAPLongitude": 2, "Foo": 1})
    ["unknown key 'Foo'", "missing 'MAPCaptureTime'", 'MAPLatitude out of range: 91']
    """
    if not isinstance(description, dict):
        return ["description is not a JSON object"]
    problems = [f"unknown key {k!r}" for k in description if k not in EMBEDDED_KEYS]
    problems += [f"missing {k!r}" for k in sorted(REQUIRED_KEYS - description.keys())]
    lat, lon = description.get("MAPLatitude"), description.get("MAPLongitude")
    if lat is not None and (not isinstance(lat, (int, float)) or not -90 <= lat <= 90):
        problems.append(f"MAPLatitude out of range: {lat}")
    if lon is not None and (not isinstance(lon, (int, float)) or not -180 <= lon <= 180):
        problems.append(f"MAPLongitude out of range: {lon}")
    t = description.get("MAPCaptureTime")
    if t is not None:
        try:
            parse_capture_time(t)
        except (ValueError, TypeError, AttributeError):
            problems.append(f"bad MAPCaptureTime: {t!r}")
    o = description.get("MAPOrientation")
    if o is not None and o not in range(1, 9):
        problems.append(f"MAPOrientation must be 1..8: {o!r}")
    ch = description.get("MAPCompassHeading")
    if ch is not None and not (
        isinstance(ch, dict) and set(ch) <= {"TrueHeading", "MagneticHeading"}
    ):
        problems.append(f"bad MAPCompassHeading: {ch!r}")
    return problems


# -- the description file ---------------------------------------------------------------------

DESCRIPTION_FILE = "mapillary_image_description.json"


def file_entry(image: ImageMeta, sequence_uuid: str, md5sum: str | None = None) -> dict[str, Any]:
    """One ready image as the official tool writes it in the description file."""
    entry: dict[str, Any] = {
        "filename": os.path.abspath(image.path),
        "filetype": "image",
        **describe(image),
        "MAPSequenceUUID": sequence_uuid,
    }
    if md5sum:
        entry["md5sum"] = md5sum
    if image.filesize:
        entry["filesize"] = image.filesize
    return entry


def error_entry(error: FileError) -> dict[str, Any]:
    """One failed file as the official tool writes it in the description file."""
    return {
        "filename": os.path.abspath(error.path),
        "filetype": "image",
        "error": error.to_description_error(),
    }


def write_file(path: str | os.PathLike[str], entries: list[dict[str, Any]]) -> None:
    """Write a description file atomically (temp + fsync + rename)."""
    text = json.dumps(entries, indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write(path, escape_surrogates(text).encode("utf-8"))


def read_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a description file written by amly or by ``mapillary_tools process``."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{os.fspath(path)}: a description file is a JSON array")
    return data
