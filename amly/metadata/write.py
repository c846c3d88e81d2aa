"""Writing EXIF losslessly: only the EXIF APP1 segment of a JPEG changes.

Why not piexif: measured with piexif 1.1.3 on JPEGs with JFIF APP0 + EXIF APP1 (Canon-style
MakerNote) + XMP APP1 + ICC APP2 + APP13 + COM (``tests/test_metadata_write.py::
test_piexif_findings``): ``piexif.insert`` always drops the JFIF APP0 segment (also into a
file that had no EXIF); when XMP comes before EXIF it leaves the old EXIF in place and adds
a second EXIF APP1; and since ``piexif.dump`` re-lays out the whole block, the MakerNote moves
and its internal offsets point to the wrong bytes (exiftool: "Possibly incorrect maker notes
offsets", the Canon ImageType is lost). XMP, ICC, APP13 and COM did survive. amly
therefore edits the TIFF structure itself, in pure Python:

* the original EXIF bytes are kept as they are, so a MakerNote (and the thumbnail, and any
  other value) stays at its offset and keeps meaning what it meant;
* a changed value that fits where the old one was is overwritten there; a longer one is
  appended at the end of the block;
* an IFD that gains a tag is rewritten, as a copy, at the end of the block, and the one
  pointer to it (the TIFF header for IFD0, IFD0's Exif/GPS pointer) is updated;
* every other segment (JFIF, XMP, ICC, other APPn, COM) and the scan data are copied
  byte-for-byte; a file without EXIF gets one right after SOI/APP0; a duplicate EXIF APP1
  (some tools write two) is removed, so there is always exactly one.

Files are replaced with :func:`amly._atomic.atomic_write`: a crash leaves the old file or the
new one, never a mix.
"""

from __future__ import annotations

import os
import struct
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from .._atomic import atomic_write
from ..errors import MetadataError
from . import _tiff as T
from ._jpeg import APP1, EOI, EXIF_PREFIX, JpegError, exif_insert_position, segment, walk
from .read import open_error

#: APP1 payload limit: the segment length field is 16 bits and counts itself.
MAX_APP1_PAYLOAD = 0xFFFD
_EXIF_HEADER = b"Exif\x00\x00"
EXIF_VERSION = 0x9000
_Value = tuple[int, int, bytes]  # (TIFF type, count, value bytes in the block's byte order)


def update_exif(
    path: str | os.PathLike[str],
    *,
    capture_time: datetime | None = None,
    lat: float | None = None,
    lon: float | None = None,
    alt: float | None = None,
    heading: float | None = None,
    description: str | None = None,
    make: str | None = None,
    model: str | None = None,
    gps_time: datetime | None = None,
) -> None:
    """Change EXIF fields of the JPEG at ``path`` in place, losslessly and atomically.

    ``None`` leaves a field as it is. ``capture_time`` (timezone-aware) writes
    DateTimeOriginal/SubSecTimeOriginal/OffsetTimeOriginal in the time's own zone, and the
    GPS date/time stamp (UTC) when a position is written too or the file already has one;
    ``lat``/``lon`` (together) the GPS position; ``heading`` GPSImgDirection (true north);
    ``gps_time`` only the GPS date/time stamp, leaving the camera's DateTimeOriginal as it is
    (``amly geotag``: the stamp is the corrected time, the camera's record stays).
    """
    name = os.fspath(path)
    fields = _fields(capture_time, lat, lon, alt, heading, description, make, model, gps_time)
    if not fields:
        return
    jpeg = read_file(name)
    _require_complete(jpeg, name)
    # memoryview slices are written as they are: no copy of the scan data.
    replace_file(name, cast("list[bytes]", _edit(jpeg, name, fields)))


def read_file(name: str) -> bytes:
    """The whole photo; an unreadable one is a :class:`~amly.errors.MetadataError`."""
    try:
        with open(name, "rb") as f:
            return f.read()
    except OSError as exc:
        raise open_error(name, exc) from None


def replace_file(name: str, chunks: bytes | list[bytes]) -> None:
    """:func:`~amly._atomic.atomic_write`, a failure (read-only folder, full disk) being a
    :class:`~amly.errors.MetadataError`: the photo is then unchanged."""
    try:
        atomic_write(name, chunks)
    except OSError as exc:
        raise MetadataError(
            name,
            f"cannot write the file: {exc.strerror or 'unknown error'}",
            hint="check the folder's permissions and free space; the photo was left unchanged",
        ) from None


def _require_complete(jpeg: bytes, name: str) -> None:
    """Refuse to rewrite a photo that was cut off: a fresh write would make the damaged copy
    look like a good file, and the user must copy it again from the camera instead."""
    try:
        lay = walk(jpeg, True)
    except JpegError:
        return  # _edit reports the damaged header precisely
    if jpeg.rfind(EOI) < lay.sos:
        raise MetadataError(
            name,
            f"truncated JPEG: no end-of-image marker (the file ends after {len(jpeg)} bytes)",
            hint="the file was cut off (interrupted copy or full card): copy it again from "
            "the camera; it was left unchanged",
        )


def set_exif_bytes(
    jpeg: bytes,
    *,
    capture_time: datetime | None = None,
    lat: float | None = None,
    lon: float | None = None,
    alt: float | None = None,
    heading: float | None = None,
    description: str | None = None,
    make: str | None = None,
    model: str | None = None,
    gps_time: datetime | None = None,
    name: str = "<jpeg bytes>",
) -> bytes:
    """The same edit as :func:`update_exif` on JPEG bytes in memory. ``name`` only labels
    errors (:class:`~amly.errors.MetadataError`)."""
    fields = _fields(capture_time, lat, lon, alt, heading, description, make, model, gps_time)
    if not fields:
        return jpeg
    return b"".join(_edit(jpeg, name, fields))


def inject_description(jpeg: bytes, description_json: str, *, name: str = "<jpeg bytes>") -> bytes:
    """``jpeg`` with EXIF ImageDescription set to ``description_json`` (the upload fast path:
    header-sized work plus one copy of the bytes).

    >>> from amly import synth
    >>> from datetime import datetime, timezone
    >>> jpeg = synth.splice_exif(synth.base_frames(16, 16)[0],
    ...                          synth.exif_bytes(time=datetime(2024, 1, 1, tzinfo=timezone.utc)))
    >>> out = inject_description(jpeg, '{"MAPLatitude":1}')
    >>> b'{"MAPLatitude":1}' in out, len(out) - len(jpeg) < 200
    (True, True)
    """
    return b"".join(_edit(jpeg, name, {"description": description_json}))


# -- values -----------------------------------------------------------------------------------


def _fields(
    capture_time: datetime | None,
    lat: float | None,
    lon: float | None,
    alt: float | None,
    heading: float | None,
    description: str | None,
    make: str | None,
    model: str | None,
    gps_time: datetime | None = None,
) -> dict[str, Any]:
    """The requested fields, validated (``ValueError`` for values no file should get)."""
    if (lat is None) != (lon is None):
        raise ValueError("lat and lon must be written together")
    if lat is not None and lon is not None:
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"position out of range: {lat}, {lon}")
    for t in (capture_time, gps_time):
        if t is not None and t.utcoffset() is None:
            raise ValueError("capture_time and gps_time must be timezone-aware")
        if t is not None and t.year in (1, 9999):
            try:
                t.astimezone(timezone.utc)
            except OverflowError:
                raise ValueError(f"time outside the calendar in UTC: {t.isoformat()}") from None
    if heading is not None and not 0.0 <= heading % 360.0 < 360.0:  # also NaN, infinite
        raise ValueError(f"bad heading: {heading}")
    if alt is not None and not abs(alt) < 0xFFFFFFFF / 1000:  # what a RATIONAL in mm holds
        raise ValueError(f"altitude out of range: {alt}")
    fields = {
        "capture_time": capture_time,
        "lat": lat,
        "lon": lon,
        "alt": alt,
        "heading": heading,
        "description": description,
        "make": make,
        "model": model,
        "gps_time": gps_time,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _ascii(s: str) -> _Value:
    """A NUL-terminated ASCII value (UTF-8 bytes, as exiftool and the Mapillary tools use).

    >>> _ascii("N")
    (2, 2, b'N\\x00')
    """
    raw = s.encode("utf-8")
    if b"\x00" in raw:
        raise ValueError("EXIF text cannot contain NUL characters")
    return (T.ASCII, len(raw) + 1, raw + b"\x00")


def _rationals(e: str, pairs: list[tuple[int, int]]) -> _Value:
    flat = [v for pair in pairs for v in pair]
    return (T.RATIONAL, len(pairs), struct.pack(f"{e}{len(flat)}L", *flat))


def dms(value: float) -> list[tuple[int, int]]:
    """Degrees as (degrees, minutes, seconds) rationals, exact to 1e-6 arc seconds.

    >>> dms(52.5)
    [(52, 1), (30, 1), (0, 1000000)]
    >>> dms(-13.405)
    [(13, 1), (24, 1), (18000000, 1000000)]
    """
    micro = round(abs(value) * 3600 * 1_000_000)
    deg, rest = divmod(micro, 3600 * 1_000_000)
    minutes, seconds = divmod(rest, 60 * 1_000_000)
    return [(deg, 1), (minutes, 1), (seconds, 1_000_000)]


def format_offset(t: datetime) -> str:
    """EXIF OffsetTime text of an aware datetime.

    >>> format_offset(datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))))
    '-05:30'
    """
    off = t.utcoffset() or timedelta(0)
    sign = "-" if off < timedelta(0) else "+"
    minutes = abs(off) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _exif_datetime(t: datetime) -> str:
    """EXIF ``YYYY:MM:DD HH:MM:SS`` (not strftime: its %Y writes year 1 as "1").

    >>> _exif_datetime(datetime(1, 2, 3, 4, 5, 6))
    '0001:02:03 04:05:06'
    """
    return f"{t.year:04d}:{t.month:02d}:{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _edits(e: str, fields: dict[str, Any], gps: dict[int, T.Entry]) -> dict[str, dict[int, _Value]]:
    """The tag values to write per IFD ("0th", "Exif", "GPS")."""
    ifd0: dict[int, _Value] = {}
    exif: dict[int, _Value] = {}
    gpsv: dict[int, _Value] = {}
    for key, tag in (("description", T.IMAGE_DESCRIPTION), ("make", T.MAKE), ("model", T.MODEL)):
        if key in fields:
            ifd0[tag] = _ascii(fields[key])
    t: datetime | None = fields.get("capture_time")
    if t is not None:
        exif[T.DATETIME_ORIGINAL] = _ascii(_exif_datetime(t))
        us = t.microsecond
        exif[T.SUBSEC_TIME_ORIGINAL] = _ascii(
            f"{us // 1000:03d}" if us % 1000 == 0 else f"{us:06d}"
        )
        exif[T.OFFSET_TIME_ORIGINAL] = _ascii(format_offset(t))
    if "lat" in fields:
        lat, lon = fields["lat"], fields["lon"]
        if T.GPS_VERSION not in gps:
            gpsv[T.GPS_VERSION] = (T.BYTE, 4, bytes((2, 3, 0, 0)))
        gpsv[T.GPS_LAT_REF] = _ascii("N" if lat >= 0 else "S")
        gpsv[T.GPS_LAT] = _rationals(e, dms(lat))
        gpsv[T.GPS_LON_REF] = _ascii("E" if lon >= 0 else "W")
        gpsv[T.GPS_LON] = _rationals(e, dms(lon))
    if "alt" in fields:
        alt = fields["alt"]
        gpsv[T.GPS_ALT_REF] = (T.BYTE, 1, bytes((0 if alt >= 0 else 1,)))
        gpsv[T.GPS_ALT] = _rationals(e, [(round(abs(alt) * 1000), 1000)])
    if "heading" in fields:
        gpsv[T.GPS_DIRECTION_REF] = _ascii("T")
        gpsv[T.GPS_DIRECTION] = _rationals(
            e, [(round(fields["heading"] % 360.0 * 100) % 36000, 100)]
        )
    stamp: datetime | None = fields.get("gps_time")
    if stamp is None and t is not None:
        if "lat" in fields or T.GPS_DATESTAMP in gps or T.GPS_TIMESTAMP in gps:
            stamp = t  # readers prefer the GPS clock: keep it in step with the capture time
    if stamp is not None:
        u = stamp.astimezone(timezone.utc)
        gpsv[T.GPS_DATESTAMP] = _ascii(_exif_datetime(u)[:10])
        gpsv[T.GPS_TIMESTAMP] = _rationals(
            e, [(u.hour, 1), (u.minute, 1), (u.second * 1_000_000 + u.microsecond, 1_000_000)]
        )
    return {"0th": ifd0, "Exif": exif, "GPS": gpsv}


# -- the TIFF edit ----------------------------------------------------------------------------


def _append(out: bytearray, data: bytes) -> int:
    """Append ``data`` at a word-aligned offset (TIFF wants even offsets); return it."""
    if len(out) % 2:
        out.append(0)
    at = len(out)
    out += data
    return at


class _Editor:
    """One TIFF block being edited: ``src`` the original bytes (never changed), ``out`` the
    result (``src`` plus appended data, with patched entries and reused value slots)."""

    def __init__(self, src: bytes, e: str) -> None:
        self.src, self.e = src, e
        self.out = bytearray(src)
        # Ranges an overwritten value must not touch: the header, the IFD tables, the maker
        # note, and every slot already reused (some writers share one slot between tags).
        self.protected: list[tuple[int, int]] = [(0, 8)]

    def protect(self, start: int, end: int) -> None:
        self.protected.append((start, end))

    def protect_ifd(self, at: int | None, entries: dict[int, T.Entry]) -> None:
        if at is not None:
            self.protect(at, at + 2 + 12 * len(entries) + 4)

    def place(self, old: T.Entry | None, value: _Value) -> bytes:
        """Store ``value``; return the 4-byte value field of its entry: inline when it fits,
        else over the old value when that slot is big enough and shared with nothing we know,
        else appended."""
        data = value[2]
        if len(data) <= 4:
            return data.ljust(4, b"\x00")
        if old is not None:
            size = T.TYPE_SIZES.get(old.type, 1) * old.n
            start, end = old.pos, old.pos + size
            if (
                size > 4
                and len(data) <= size
                and end <= len(self.src)
                and not any(start < b and a < end for a, b in self.protected)
            ):
                self.out[start:end] = data.ljust(size, b"\x00")
                self.protect(start, end)
                return struct.pack(self.e + "L", start)
        return struct.pack(self.e + "L", _append(self.out, data))

    def apply_ifd(
        self, at: int | None, entries: dict[int, T.Entry], edits: dict[int, _Value], sub: bool
    ) -> int:
        """Apply ``edits`` to the IFD at ``at`` (``None``: create it); return where it is now.
        ``sub``: an Exif/GPS IFD, whose next-IFD link means nothing (written as 0)."""
        e, out = self.e, self.out
        if at is not None and all(tag in entries for tag in edits):
            for tag, value in edits.items():  # same tags: patch the entries in place
                old = entries[tag]
                field = self.place(old, value)
                out[old.at : old.at + 12] = struct.pack(e + "HHL", tag, value[0], value[1]) + field
            return at
        records = {tag: self.src[ent.at : ent.at + 12] for tag, ent in entries.items()}
        for tag, value in edits.items():
            field = self.place(entries.get(tag), value)
            records[tag] = struct.pack(e + "HHL", tag, value[0], value[1]) + field
        nxt = T.ifd_next(self.src, e, at) if at is not None and not sub else 0
        body = b"".join(records[tag] for tag in sorted(records))
        return _append(out, struct.pack(e + "H", len(records)) + body + struct.pack(e + "L", nxt))


def edit_tiff(tiff: bytes | None, fields: dict[str, Any]) -> bytes:
    """The TIFF block of an EXIF segment with ``fields`` written (``None``: a new block).

    >>> t = edit_tiff(None, {"make": "Cam"})
    >>> t[:4], b"Cam\\x00" in t
    (b'II*\\x00', True)
    """
    if tiff is None:
        src, e, ifd0_at = b"II*\x00\x00\x00\x00\x00", "<", None
    else:
        src = tiff
        e, first = T.header(src)
        ifd0_at = first
    ed = _Editor(src, e)
    ifds: dict[str, dict[int, T.Entry]] = {"0th": {}, "Exif": {}, "GPS": {}}
    where: dict[str, int | None] = {"0th": ifd0_at, "Exif": None, "GPS": None}
    if ifd0_at is not None:
        ifds["0th"] = T.read_ifd(src, e, ifd0_at, "IFD0")
    for key, tag in (("Exif", T.EXIF_POINTER), ("GPS", T.GPS_POINTER)):
        ent = ifds["0th"].get(tag)
        if ent is not None and ent.n >= 1:
            where[key] = at = T.ints(src, e, ent, tag)[0]
            ifds[key] = T.read_ifd(src, e, at, f"{key} IFD")
    _check_disjoint(where, ifds)
    for key in ifds:
        ed.protect_ifd(where[key], ifds[key])
    note = ifds["Exif"].get(T.MAKER_NOTE)
    if note is not None:
        ed.protect(note.pos, note.pos + note.n)
    edits = _edits(e, fields, ifds["GPS"])
    if where["Exif"] is None and edits["Exif"]:
        edits["Exif"][EXIF_VERSION] = (T.UNDEFINED, 4, b"0232")  # required in a new Exif IFD
    for key, tag in (("Exif", T.EXIF_POINTER), ("GPS", T.GPS_POINTER)):
        if edits[key]:
            at = ed.apply_ifd(where[key], ifds[key], edits[key], sub=True)
            if at != where[key]:
                edits["0th"][tag] = (T.LONG, 1, struct.pack(e + "L", at))
    if edits["0th"]:
        at = ed.apply_ifd(ifd0_at, ifds["0th"], edits["0th"], sub=False)
        if at != ifd0_at:
            struct.pack_into(e + "L", ed.out, 4, at)
    return bytes(ed.out)


def _check_disjoint(where: dict[str, int | None], ifds: dict[str, dict[int, T.Entry]]) -> None:
    """Refuse IFDs that share bytes (a pointer back into IFD0, or onto another IFD): an edit
    would copy one directory's tags into the other."""
    label = {"0th": "IFD0", "Exif": "Exif IFD", "GPS": "GPS IFD"}
    spans = [
        (label[name], at, at + 2 + 12 * len(ifds[name]) + 4)
        for name, at in where.items()
        if at is not None
    ]
    for i, (a, a0, a1) in enumerate(spans):
        for b, b0, b1 in spans[i + 1 :]:
            if a0 < b1 and b0 < a1:
                raise T.TiffError(f"the {a} and the {b} overlap (a pointer loops back)")


# -- the JPEG edit ----------------------------------------------------------------------------


def _edit(jpeg: bytes, name: str, fields: dict[str, Any]) -> list[bytes | memoryview]:
    """The pieces of the edited JPEG: unchanged slices of ``jpeg`` around one new EXIF APP1."""
    if not jpeg:
        raise MetadataError(name, "empty file (0 bytes)", hint="nothing to write EXIF into")
    try:
        lay = walk(jpeg, True)
    except JpegError as exc:
        raise MetadataError(name, exc.message, hint=exc.hint) from None
    view = memoryview(jpeg)
    exif = lay.exif
    try:
        if exif is None:
            prefix, tiff = _EXIF_HEADER, edit_tiff(None, fields)
        else:
            prefix = jpeg[exif.data : exif.data + 6]
            tiff = edit_tiff(jpeg[exif.data + 6 : exif.end], fields)
    except (T.TiffError, struct.error, IndexError) as exc:
        raise MetadataError(
            name,
            f"corrupt EXIF, not rewritten: {exc}",
            hint="repair it with `exiftool -all= -tagsfromfile @ -all:all FILE` first",
        ) from None
    if len(prefix) + len(tiff) > MAX_APP1_PAYLOAD:
        size = len(fields.get("description") or "")
        raise MetadataError(
            name,
            f"the EXIF block would grow to {len(prefix) + len(tiff)} bytes, over the "
            f"{MAX_APP1_PAYLOAD}-byte limit of a JPEG segment"
            + (f" (the description is {size} bytes)" if size else ""),
            hint="shorten the description, or strip the EXIF thumbnail with "
            "`exiftool -ThumbnailImage= FILE`",
        )
    new = segment(APP1, prefix + tiff)
    if exif is None:
        pos = exif_insert_position(jpeg, lay)
        return [view[:pos], new, view[pos:]]
    # Drop any further EXIF APP1 segment: a file must carry exactly one.
    dups = [
        s
        for s in lay.segments
        if s.marker == APP1 and s.start > exif.start and jpeg[s.data : s.data + 5] == EXIF_PREFIX
    ]
    parts: list[bytes | memoryview] = [view[: exif.start], new]
    pos = exif.end
    for s in dups:
        parts.append(view[pos : s.start])
        pos = s.end
    parts.append(view[pos:])
    return parts
