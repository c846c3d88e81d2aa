"""Reading one JPEG's metadata: the hot path of ``amly process``.

Only the header is read: the first 32 KiB (more only when the segments before the image data
are larger), plus the last two bytes to check the end-of-image marker. The JPEG segments and
the EXIF TIFF structure are parsed here directly (IFD0, Exif IFD, GPS IFD: only the tags
amly uses), which is several times faster than a general EXIF library and bounds-checks
every offset, so a malicious file fails with a :class:`~amly.errors.MetadataError` instead
of looping or allocating. Every failure says what is wrong and what to do.
"""

from __future__ import annotations

import errno
import math
import os
import struct
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo

from ..errors import MetadataError
from ..types import CAPTURE_YEARS, GPS_YEARS, ImageMeta
from . import _tiff as T
from ._jpeg import EOI, JpegError, Layout, NeedMore, sof_size, walk
from ._tz import parse_exif_datetime, parse_offset

#: First read: the whole header of most camera JPEGs; a larger header costs one more read.
#: (Measured: 16-32 KiB reads are ~10% faster than 64 KiB ones; smaller gains nothing.)
HEAD_BYTES = 32768
#: Headers larger than this (segments before the image data) are treated as corrupt.
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: How far back from the end of the file the end-of-image marker may sit (trailers).
EOI_SEARCH_BYTES = 65536

_HINT_DAMAGED = "the file is damaged: copy it again from the camera, or leave it out"
_HINT_EXIF = (
    "the EXIF block is damaged: rewrite it with `exiftool -all= -tagsfromfile @ -all:all "
    "FILE`, or leave the file out"
)
_HINT_GPS = (
    "the GPS tags are corrupt: remove them (`exiftool -gps:all= FILE`) and geotag the image "
    "from a GPX track with `amly geotag`"
)


def read_image(path: str | os.PathLike[str], *, tz: tzinfo | None = None) -> ImageMeta:
    """The metadata of the JPEG at ``path``.

    ``capture_time`` is the GPS date/time stamp when there is one, else the camera clock;
    ``camera_time`` is always the camera clock (DateTimeOriginal, else DateTimeDigitized or
    DateTime). A camera time without an offset is wall-clock time in ``tz`` (``None``: this
    machine's zone). A missing position is not an error here (``lat`` is ``None``); a file
    that is empty, not a JPEG, truncated, without EXIF, or with corrupt or unrealistic EXIF
    raises :class:`~amly.errors.MetadataError`.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise open_error(name, exc) from None
    try:
        try:
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise MetadataError(
                name, f"cannot read the file: {exc.strerror}", hint="check the file and the disk"
            ) from None
        return read_image_from(name, size, lambda n, offset: _pread(fd, n, offset), tz=tz)
    finally:
        os.close(fd)


def read_image_from(
    name: str, size: int, pread: Callable[[int, int], bytes], *, tz: tzinfo | None = None
) -> ImageMeta:
    """:func:`read_image` for bytes that are not in a local file (an object in a bucket):
    ``pread(n, offset)`` returns up to ``n`` bytes at ``offset`` of the ``size``-byte file
    called ``name``. Reads the header (32 KiB, more only if the header continues) and the
    last bytes (the end-of-image check), never the whole image."""
    try:
        if size == 0:
            raise MetadataError(
                name,
                "empty file (0 bytes)",
                hint="the copy from the camera or card failed: copy it again, or delete it",
            )
        buf = pread(HEAD_BYTES, 0)
        try:
            lay, buf = _walk_header(pread, buf, size)
        except JpegError as exc:
            raise MetadataError(name, exc.message, hint=exc.hint) from None
        _check_eoi(name, pread, size, lay.sos)
        if lay.exif is None:
            raise MetadataError(
                name,
                "no EXIF metadata in the JPEG (no capture time, no position)",
                hint="the camera or an editor did not write any: set a time with "
                "`amly fix-dates` and a position with `amly geotag`, or leave the file out",
            )
        start, end = lay.exif.data + 6, lay.exif.end
        if end <= len(buf):
            tiff = buf[start:end]
        else:
            tiff = pread(end - start, start)
        width = height = None
        if lay.sof is not None and lay.sof.data + 5 <= len(buf):
            width, height = sof_size(buf, lay.sof)
    except OSError as exc:  # a directory, an I/O error on a failing card...
        raise MetadataError(
            name, f"cannot read the file: {exc.strerror}", hint="check the file and the disk"
        ) from None
    meta = ImageMeta(name, filesize=size, width=width, height=height)
    try:
        _decode(meta, tiff, tz)
    except T.TiffError as exc:
        raise MetadataError(name, f"corrupt EXIF: {exc}", hint=_HINT_EXIF) from None
    except (struct.error, IndexError) as exc:  # an entry with a zero count, a short value
        raise MetadataError(name, f"corrupt EXIF: {exc}", hint=_HINT_EXIF) from None
    return meta


def open_error(name: str, exc: OSError) -> MetadataError:
    """The per-file error for a photo that cannot be opened."""
    if exc.errno == errno.ELOOP:
        return MetadataError(
            name,
            "cannot open the file: it is a symbolic link that loops (points back to itself)",
            hint="remove the link or point it at the real photo",
        )
    return MetadataError(
        name,
        f"cannot open the file: {exc.strerror or 'unknown error'}",
        hint="check that it exists and is readable",
    )


def _pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, n)  # pragma: no cover


def _walk_header(pread: Callable[[int, int], bytes], buf: bytes, size: int) -> tuple[Layout, bytes]:
    """Walk the segments, reading more of the file while the header continues past ``buf``."""
    while True:
        try:
            return walk(buf, len(buf) >= size), buf
        except NeedMore as more:
            if len(buf) >= MAX_HEADER_BYTES:
                raise JpegError(
                    f"corrupt JPEG: no image data within the first {MAX_HEADER_BYTES} bytes",
                    _HINT_DAMAGED,
                ) from None
            want = min(max(more.upto, 2 * len(buf)), MAX_HEADER_BYTES, size)
            chunk = pread(want - len(buf), len(buf))
            buf += chunk
            if len(buf) < want:  # the file shrank while we read it: it is all there is
                size = len(buf)


def _check_eoi(name: str, pread: Callable[[int, int], bytes], size: int, sos: int) -> None:
    """A complete JPEG ends with the end-of-image marker (possibly followed by a small
    trailer some phones append): a missing one means the file was cut off."""
    if size >= 2 and pread(2, size - 2) == EOI:
        return
    start = max(sos + 2, size - EOI_SEARCH_BYTES)
    if start < size and EOI in pread(size - start, start):
        return
    # Rare slow path: a large trailer (a phone "motion photo" appends a whole MP4 after the
    # JPEG) hides the marker from the cheap check, so scan the rest before calling it cut off.
    pos, tail = sos + 2, b""
    while pos < start:
        chunk = pread(min(1 << 20, start - pos), pos)
        if not chunk:
            break
        if EOI in tail + chunk:
            return
        tail, pos = chunk[-1:], pos + len(chunk)
    raise MetadataError(
        name,
        f"truncated JPEG: no end-of-image marker (the file ends after {size} bytes)",
        hint="the file was cut off (interrupted copy or full card): copy it again from the camera",
    )


#: Where the camera clock is, best first: (time, subseconds, offset, in the Exif IFD?).
_CAMERA_TIME_TAGS = (
    (T.DATETIME_ORIGINAL, T.SUBSEC_TIME_ORIGINAL, T.OFFSET_TIME_ORIGINAL, True),
    (T.DATETIME_DIGITIZED, T.SUBSEC_TIME_DIGITIZED, T.OFFSET_TIME_DIGITIZED, True),
    (T.DATETIME, T.SUBSEC_TIME, T.OFFSET_TIME, False),
)


def _decode(meta: ImageMeta, tiff: bytes, tz: tzinfo | None) -> None:
    """Fill ``meta`` from the TIFF block of an EXIF segment."""
    e, ifd0_at = T.header(tiff)
    ifd0 = T.read_ifd(tiff, e, ifd0_at, "IFD0")
    exif: dict[int, T.Entry] = {}
    gps: dict[int, T.Entry] = {}
    ent = ifd0.get(T.EXIF_POINTER)
    if ent is not None:
        exif = T.read_ifd(tiff, e, T.ints(tiff, e, ent, T.EXIF_POINTER)[0], "Exif IFD")
    ent = ifd0.get(T.GPS_POINTER)
    if ent is not None:
        gps = T.read_ifd(tiff, e, T.ints(tiff, e, ent, T.GPS_POINTER)[0], "GPS IFD")

    def text(ifd: dict[int, T.Entry], tag: int) -> str | None:
        ent = ifd.get(tag)
        if ent is None:
            return None
        return T.text(tiff, ent, tag) or None

    def number(ifd: dict[int, T.Entry], tag: int) -> float | None:
        ent = ifd.get(tag)
        if ent is None or ent.n < 1:
            return None
        return T.rationals(tiff, e, ent, tag)[0]

    def integer(ifd: dict[int, T.Entry], tag: int) -> int | None:
        ent = ifd.get(tag)
        if ent is None or ent.n < 1:
            return None
        return T.ints(tiff, e, ent, tag)[0]

    name = meta.path
    meta.make = text(ifd0, T.MAKE)
    meta.model = text(ifd0, T.MODEL)
    meta.description = text(ifd0, T.IMAGE_DESCRIPTION)
    orientation = integer(ifd0, T.ORIENTATION)
    if orientation is not None and 1 <= orientation <= 8:  # 0 = "unknown"
        meta.orientation = orientation
    w, h = integer(exif, T.PIXEL_X), integer(exif, T.PIXEL_Y)
    if w and h:
        meta.width, meta.height = w, h
    body = (
        text(exif, T.BODY_SERIAL)
        or text(ifd0, T.BODY_SERIAL)
        or text(ifd0, T.CAMERA_SERIAL)
        or _maker_note_serial(tiff, e, exif, meta.make)
    )
    meta.serial = camera_id(body, text(exif, T.LENS_SERIAL) or text(ifd0, T.LENS_SERIAL))

    # Position.
    lat = _coordinate(tiff, e, gps, T.GPS_LAT, T.GPS_LAT_REF, "S")
    lon = _coordinate(tiff, e, gps, T.GPS_LON, T.GPS_LON_REF, "W")
    if lat is not None and lon is not None:
        if not -90.0 <= lat <= 90.0:
            raise MetadataError(
                name, f"unrealistic GPS latitude {lat:.6f} (must be within ±90)", hint=_HINT_GPS
            )
        if not -180.0 <= lon <= 180.0:
            raise MetadataError(
                name, f"unrealistic GPS longitude {lon:.6f} (must be within ±180)", hint=_HINT_GPS
            )
        meta.lat, meta.lon = lat, lon
        alt = number(gps, T.GPS_ALT)
        if alt is not None:
            if integer(gps, T.GPS_ALT_REF) == 1:
                alt = -alt
            if not -1000.0 <= alt <= 100_000.0:
                raise MetadataError(
                    name,
                    f"unrealistic GPS altitude {alt:.1f} m (expected -1000..100000)",
                    hint=_HINT_GPS,
                )
            meta.alt = alt
        accuracy = number(gps, T.GPS_HPOS_ERROR)
        if accuracy is not None and 0.0 <= accuracy < math.inf:  # never NaN or infinite
            meta.gps_accuracy = accuracy
    heading = number(gps, T.GPS_DIRECTION)
    if heading is None:
        heading = number(gps, T.GPS_TRACK)
    if heading is not None:
        if not 0.0 <= heading <= 360.0:
            raise MetadataError(
                name,
                f"unrealistic GPS image direction {heading:.2f}° (expected 0..360)",
                hint=_HINT_GPS,
            )
        meta.heading = heading % 360.0

    # Time: the GPS clock (UTC) wins as capture time; the camera clock is kept apart (track
    # lookups use it, so geotagging with a clock offset can be rerun without adding it twice).
    gps_time = _gps_time(tiff, e, gps)
    for dt_tag, sub_tag, off_tag, in_exif in _CAMERA_TIME_TAGS:
        s = text(exif if in_exif else ifd0, dt_tag)
        if s is None:
            continue
        try:
            camera_time = _camera_time(s, text(exif, sub_tag), text(exif, off_tag), tz)
        except _BadTime as bad:
            if gps_time is not None:  # the GPS clock is enough: not worth failing the file
                break
            tag = sub_tag if bad.subsec else dt_tag
            raise MetadataError(
                name,
                f"{bad.what} EXIF {_TAG_NAMES[tag]} {bad.value!r}{bad.detail}",
                hint=bad.hint,
            ) from None
        if camera_time is not None:
            meta.camera_time = camera_time
            break
    meta.capture_time = gps_time or meta.camera_time


_TAG_NAMES = {
    T.DATETIME_ORIGINAL: "DateTimeOriginal",
    T.DATETIME_DIGITIZED: "DateTimeDigitized",
    T.DATETIME: "DateTime",
    T.SUBSEC_TIME_ORIGINAL: "SubSecTimeOriginal",
    T.SUBSEC_TIME_DIGITIZED: "SubSecTimeDigitized",
    T.SUBSEC_TIME: "SubSecTime",
}
_HINT_TIME = "set a correct capture time with `amly fix-dates` or exiftool"


class _BadTime(Exception):
    """A camera time that cannot be used: ``value`` is the field's text."""

    def __init__(self, value: str, what: str, detail: str = "", *, subsec: bool = False) -> None:
        super().__init__(value)
        self.value, self.what, self.detail, self.subsec = value, what, detail, subsec
        self.hint = (
            "remove it (`exiftool -SubSecTimeOriginal= FILE`) or set the capture time with "
            "`amly fix-dates`"
            if subsec
            else _HINT_TIME
        )


def _camera_time(
    s: str, subsec: str | None, offset: str | None, tz: tzinfo | None
) -> datetime | None:
    """The camera clock's time in UTC (``None`` for the "unknown" placeholders cameras
    write); :class:`_BadTime` for a time that is no date, a year no photo can have, or
    fractions of a second that are not digits."""
    if subsec is not None and not _subsec_ok(subsec):
        raise _BadTime(subsec, "unreadable", " (fractions of a second: digits only)", subsec=True)
    try:
        dt = _exif_time(s, subsec)
    except (ValueError, OverflowError):  # hour 24 of 9999-12-31 overflows
        raise _BadTime(s, "unreadable") from None
    if dt is None:
        return None
    if dt.year not in CAPTURE_YEARS:
        years = f"{CAPTURE_YEARS.start}..{CAPTURE_YEARS.stop - 1}"
        raise _BadTime(s, "implausible", f" (year {dt.year}, expected {years})")
    if dt.tzinfo is None:
        zone = parse_offset(offset) if offset else None
        if zone is not None:
            dt = dt.replace(tzinfo=zone)
        elif tz is not None:
            dt = dt.replace(tzinfo=tz)
    # (what localize() does, in one conversion: a naive time is taken as local time; the
    # year check above keeps it far from the calendar's ends, where this would overflow)
    return dt.astimezone(timezone.utc)


def _subsec_ok(subsec: str) -> bool:
    """SubSecTime* digits (GoPro pads them with spaces).

    >>> _subsec_ok("042"), _subsec_ok(" 42"), _subsec_ok("²"), _subsec_ok("4.2")
    (True, True, False, False)
    """
    digits = subsec.strip().replace(" ", "0")
    return not digits or (digits.isascii() and digits.isdigit())


def _exif_time(s: str, subsec: str | None) -> datetime | None:
    """:func:`parse_exif_datetime` with a fast path for the form nearly every camera writes
    (``YYYY:MM:DD HH:MM:SS``, subseconds in digits): ``datetime.fromisoformat`` instead of
    the general regex, since every photo pays for it (~3x faster). Anything unusual takes
    the general parser.

    >>> _exif_time("2021:07:15 15:37:30", "12") == parse_exif_datetime("2021:07:15 15:37:30", "12")
    True
    >>> _exif_time("2021:07:15 24:00:00", None), _exif_time("0000:00:00 00:00:00", "0")
    (datetime.datetime(2021, 7, 16, 0, 0), None)
    """
    if len(s) == 19 and s[4] == s[7] == s[13] == s[16] == ":" and s[10] == " ":
        if subsec is None or subsec.isdigit():
            iso = f"{s[:4]}-{s[5:7]}-{s[8:]}"  # fromisoformat (C) wants 3 or 6 digits
            try:
                return datetime.fromisoformat(f"{iso}.{subsec[:6]:0<6}" if subsec else iso)
            except ValueError:
                pass  # year 0, hour 24, second 60...: the general parser knows them
    return parse_exif_datetime(s, subsec)


def camera_id(body: str | None, lens: str | None) -> str | None:
    """The camera identifier the way the official tool builds ``MAPCameraUUID``: body and
    lens serial numbers, letters and digits only, joined by ``_``.

    >>> camera_id("SN-42 ", "L/7"), camera_id(None, None), camera_id("--", None)
    ('SN42_L7', None, None)
    """
    parts = ["".join(c for c in s if c.isalnum()) for s in (body, lens) if s]
    return "_".join(p for p in parts if p) or None


def _coordinate(
    tiff: bytes, e: str, gps: dict[int, T.Entry], tag: int, ref_tag: int, negative: str
) -> float | None:
    """A latitude/longitude in degrees from (deg, min, sec) rationals and its N/S/E/W ref.
    ``None`` when missing or 0/0 (cameras write that when they have no fix)."""
    ent = gps.get(tag)
    if ent is None or not 1 <= ent.n <= 3:
        return None
    parts = T.rationals(tiff, e, ent, tag)
    if None in parts:
        return None
    # (unrolled: this runs twice for every photo)
    value: float = parts[0]  # type: ignore[assignment]
    if len(parts) > 1:
        value += parts[1] / 60.0  # type: ignore[operator]
        if len(parts) > 2:
            value += parts[2] / 3600.0  # type: ignore[operator]
    ref = gps.get(ref_tag)
    if ref is not None and T.text(tiff, ref, ref_tag)[:1].upper() == negative:
        value = -value
    return value


def _gps_time(tiff: bytes, e: str, gps: dict[int, T.Entry]) -> datetime | None:
    """The GPS date + time stamp as UTC; ``None`` if absent or nonsense (the camera clock is
    used instead)."""
    d, t = gps.get(T.GPS_DATESTAMP), gps.get(T.GPS_TIMESTAMP)
    if d is None or t is None or t.n != 3:
        return None
    s = T.text(tiff, d, T.GPS_DATESTAMP)
    try:
        y, mo, da = int(s[0:4]), int(s[5:7]), int(s[8:10])
        day = datetime(y, mo, da, tzinfo=timezone.utc)
    except ValueError:
        return None
    if y not in GPS_YEARS:  # an unset GPS clock (1970-01-01, 0001-01-01) or garbage
        return None
    h, m, sec = T.rationals(tiff, e, t, T.GPS_TIMESTAMP)
    if h is None or m is None or sec is None:
        return None
    # (written so that NaN, which FLOAT/DOUBLE values can hold, fails every comparison)
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= sec < 61):  # 60.x: a leap second
        return None
    # Round to microseconds via integers so 41.140 s does not become 41.139999 s.
    micros = round((h * 3600 + m * 60) * 1_000_000) + round(sec * 1_000_000)
    return day + timedelta(microseconds=micros)


def _maker_note_serial(
    tiff: bytes, e: str, exif: dict[int, T.Entry], make: str | None
) -> str | None:
    """Camera-specific serial numbers from maker notes: Canon (tag 0x000C, an IFD with offsets
    relative to the EXIF block) and Nikon (tag 0x001D, an embedded TIFF). Best effort: a maker
    note we cannot parse just yields no serial."""
    ent = exif.get(T.MAKER_NOTE)
    if ent is None or not make or ent.n < 8 or ent.pos + ent.n > len(tiff):
        return None
    lower = make.lower()
    try:
        if lower.startswith("canon"):
            note = T.read_ifd(tiff, e, ent.pos, "Canon maker note")
            s = note.get(0x000C)
            if s is not None and s.type == T.LONG:
                return str(T.ints(tiff, e, s)[0]) or None
        elif lower.startswith("nikon"):
            raw = tiff[ent.pos : ent.pos + ent.n]
            if raw[:6] == b"Nikon\x00" and len(raw) > 18:
                inner = raw[10:]
                ie, first = T.header(inner)
                note = T.read_ifd(inner, ie, first, "Nikon maker note")
                s = note.get(0x001D)
                if s is not None:
                    return T.text(inner, s) or None
    except (T.TiffError, struct.error):
        return None
    return None
