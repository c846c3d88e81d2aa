"""The TIFF structure inside an EXIF block: header, IFDs, typed values.

A minimal, bounds-checked parser: it reads one IFD at a time (never follows chains, so
offset loops cannot make it spin) and checks every offset against the block before use.
Offsets are relative to the start of the TIFF header, as EXIF defines them.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# TIFF field types -> byte size of one value.
BYTE, ASCII, SHORT, LONG, RATIONAL = 1, 2, 3, 4, 5
SBYTE, UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD = 6, 7, 8, 9, 10, 11, 12, 13
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_INT_CODES = {BYTE: "B", SHORT: "H", LONG: "L", SBYTE: "b", SSHORT: "h", SLONG: "l", IFD: "L"}

_ENTRY = {e: struct.Struct(e + "HHLL") for e in "<>"}
#: Upper bound of entries per IFD: real files have < 100; more means garbage.
MAX_ENTRIES = 1000

# Tags (IFD0 / Exif IFD / GPS IFD).
IMAGE_DESCRIPTION, MAKE, MODEL, ORIENTATION, DATETIME = 0x010E, 0x010F, 0x0110, 0x0112, 0x0132
EXIF_POINTER, GPS_POINTER, CAMERA_SERIAL = 0x8769, 0x8825, 0xC62F
DATETIME_ORIGINAL, DATETIME_DIGITIZED = 0x9003, 0x9004
OFFSET_TIME, OFFSET_TIME_ORIGINAL, OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
SUBSEC_TIME, SUBSEC_TIME_ORIGINAL, SUBSEC_TIME_DIGITIZED = 0x9290, 0x9291, 0x9292
MAKER_NOTE, PIXEL_X, PIXEL_Y, BODY_SERIAL, LENS_SERIAL = 0x927C, 0xA002, 0xA003, 0xA431, 0xA435
GPS_VERSION, GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 0, 1, 2, 3, 4
GPS_ALT_REF, GPS_ALT, GPS_TIMESTAMP, GPS_TRACK_REF, GPS_TRACK = 5, 6, 7, 0x0E, 0x0F
GPS_DIRECTION_REF, GPS_DIRECTION, GPS_DATESTAMP, GPS_HPOS_ERROR = 0x10, 0x11, 0x1D, 0x1F


class TiffError(ValueError):
    """The EXIF/TIFF structure is corrupt (bad header, offset out of bounds...)."""


class Entry(NamedTuple):
    """One IFD entry: ``type``, value count ``n``, and ``pos``, the absolute position of the
    value bytes in the block (inside the entry when they fit in 4 bytes). ``at`` is where the
    12-byte entry itself sits."""

    type: int
    n: int
    pos: int
    at: int


def header(tiff: bytes) -> tuple[str, int]:
    """Byte order (``"<"`` or ``">"``) and the offset of IFD0.

    >>> header(b"II*\\x00\\x08\\x00\\x00\\x00")
    ('<', 8)
    >>> header(b"MM\\x00*\\x00\\x00\\x00\\x08")
    ('>', 8)
    """
    if len(tiff) < 8:
        raise TiffError(f"EXIF block too short ({len(tiff)} bytes)")
    bo = tiff[:2]
    if bo == b"II":
        e = "<"
    elif bo == b"MM":
        e = ">"
    else:
        raise TiffError(f"bad TIFF byte order mark {bo!r}")
    magic, ifd0 = struct.unpack_from(e + "HL", tiff, 2)
    if magic != 42:
        raise TiffError(f"bad TIFF magic number {magic}")
    return e, ifd0


def read_ifd(tiff: bytes, e: str, offset: int, name: str) -> dict[int, Entry]:
    """The entries of the IFD at ``offset`` (tag -> :class:`Entry`), bounds-checked.

    Value positions are checked lazily, when a value is decoded: a broken entry we never
    look at does not make the file unreadable.
    """
    n = len(tiff)
    if offset < 8 or offset + 2 > n:
        raise TiffError(f"{name} offset {offset} is outside the {n}-byte EXIF block")
    (count,) = struct.unpack_from(e + "H", tiff, offset)
    if count > MAX_ENTRIES or offset + 2 + 12 * count > n:
        raise TiffError(f"{name} at offset {offset} claims {count} entries, more than fit")
    entries: dict[int, Entry] = {}
    at = offset + 2
    sizes = TYPE_SIZES
    for tag, typ, cnt, value in _ENTRY[e].iter_unpack(tiff[at : at + 12 * count]):
        if tag not in entries:  # the first of duplicated tags wins
            entries[tag] = Entry(typ, cnt, at + 8 if sizes.get(typ, 1) * cnt <= 4 else value, at)
        at += 12
    return entries


def ifd_next(tiff: bytes, e: str, offset: int) -> int:
    """The next-IFD offset stored after the IFD at ``offset`` (already bounds-checked)."""
    (count,) = struct.unpack_from(e + "H", tiff, offset)
    return int(struct.unpack_from(e + "L", tiff, offset + 2 + 12 * count)[0])


def _span(tiff: bytes, entry: Entry, size: int, tag: int) -> tuple[int, int]:
    end = entry.pos + size * entry.n
    if entry.pos < 0 or end > len(tiff):
        raise TiffError(
            f"tag 0x{tag:04x} points to bytes {entry.pos}..{end}, outside the "
            f"{len(tiff)}-byte EXIF block"
        )
    return entry.pos, end


def text(tiff: bytes, entry: Entry, tag: int = 0) -> str:
    """An ASCII/UNDEFINED value as text: up to the first NUL, UTF-8, stripped.

    >>> text(b"abc\\x00", Entry(ASCII, 4, 0, 0))
    'abc'
    """
    start, end = _span(tiff, entry, 1, tag)
    raw = tiff[start:end]
    nul = raw.find(b"\x00")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "replace").strip()


def ints(tiff: bytes, e: str, entry: Entry, tag: int = 0) -> tuple[int, ...]:
    """Integer values (BYTE/SHORT/LONG and signed variants).

    >>> ints(b"\\x01\\x00\\x02\\x00", "<", Entry(SHORT, 2, 0, 0))
    (1, 2)
    """
    code = _INT_CODES.get(entry.type)
    if code is None:
        raise TiffError(f"tag 0x{tag:04x} has type {entry.type}, expected an integer")
    start, _ = _span(tiff, entry, TYPE_SIZES[entry.type], tag)
    return struct.unpack_from(f"{e}{entry.n}{code}", tiff, start)


def rationals(tiff: bytes, e: str, entry: Entry, tag: int = 0) -> list[float | None]:
    """RATIONAL/SRATIONAL values as floats (``None`` for a zero denominator); integer types
    are accepted too, as some writers use them.

    >>> rationals(b"\\x03\\x00\\x00\\x00\\x02\\x00\\x00\\x00", "<", Entry(RATIONAL, 1, 0, 0))
    [1.5]
    """
    if entry.type in (RATIONAL, SRATIONAL):
        start, _ = _span(tiff, entry, 8, tag)
        code = "L" if entry.type == RATIONAL else "l"
        nums = struct.unpack_from(f"{e}{2 * entry.n}{code}", tiff, start)
        return [n / d if d else None for n, d in zip(nums[::2], nums[1::2], strict=True)]
    if entry.type in (FLOAT, DOUBLE):
        start, _ = _span(tiff, entry, TYPE_SIZES[entry.type], tag)
        code = "f" if entry.type == FLOAT else "d"
        return list(struct.unpack_from(f"{e}{entry.n}{code}", tiff, start))
    return [float(v) for v in ints(tiff, e, entry, tag)]
