"""GPS tracks in and out: GPX 1.0/1.1 and NMEA 0183 reading, GPX 1.1 writing.

The parsers are pure (``parse_gpx_text``, ``parse_nmea_text`` take text or bytes); only
:func:`read_track`, :func:`read_nmea` and :func:`join_gpx` touch files. GPX is parsed with the
C ``xml.etree`` parser rather than gpxpy: same results on real files, several times faster on
long tracks (see ``bench/bench_gpx.py``); gpxpy stays the reference in the tests.

A track is returned as segments (``list[list[Point]]``), each sorted by time: interpolation
must never bridge two segments (the logger was off in between), see :func:`amly.geo.locate`.

A track is validated once, here, when it is read: a point whose position is not a number or
out of range (NaN, infinite, 101°...) or whose time is no date a photo can have is dropped and
counted (:attr:`GpxTrack.dropped`); an elevation that is not a number or beyond -1000..100000 m
is ignored and counted (:attr:`GpxTrack.bad_elevations`). Nothing downstream ever sees one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from collections.abc import Sequence as Seq
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ._atomic import atomic_write
from .types import CAPTURE_YEARS, Point

__all__ = [
    "GpxTrack",
    "join_gpx",
    "offset_to_align",
    "parse_gpx_text",
    "parse_gpx_tracks",
    "parse_nmea_text",
    "parse_nmea_track",
    "parse_time",
    "read_nmea",
    "read_track",
    "read_tracks",
    "track_to_gpx",
]

Segments = list[list[Point]]


@dataclasses.dataclass
class GpxTrack:
    """One ``<trk>``: its name and its segments of time-sorted points."""

    name: str | None
    segments: Segments
    dropped: int = 0
    """Timed points left out: position not a number or out of range, time unreadable or
    beyond the years a photo can have."""
    bad_elevations: int = 0
    """Points kept without their elevation (not a number, or beyond -1000..100000 m)."""


@dataclasses.dataclass
class _Counts:
    dropped: int = 0
    bad_elevations: int = 0


#: Elevations beyond these (m) are glitches; the EXIF reader rejects the same range.
MIN_ELEVATION, MAX_ELEVATION = -1000.0, 100_000.0


def _position_ok(lat: float, lon: float) -> bool:
    """A real position (never NaN: every comparison with NaN is false).

    >>> _position_ok(52.5, 13.4), _position_ok(float("nan"), 0.0), _position_ok(101.0, 202.0)
    (True, False, False)
    """
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


# --- time -----------------------------------------------------------------------------------

_TIME_RE = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$"
)


_FAST_ISO = sys.version_info >= (3, 11)


def parse_time(text: str) -> datetime:
    """An ISO 8601 GPX time as a UTC datetime; no zone means UTC (the GPX rule).

    Any number of fraction digits (truncated to microseconds), ``Z`` or ``±hh:mm`` offsets.

    >>> parse_time("2024-06-01T10:00:00Z").isoformat()
    '2024-06-01T10:00:00+00:00'
    >>> parse_time("2024-06-01T12:00:00.1234567+02:00").isoformat()
    '2024-06-01T10:00:00.123456+00:00'
    >>> parse_time("2024-06-01T10:00:00").isoformat()
    '2024-06-01T10:00:00+00:00'
    >>> parse_time("9999-12-31T23:59:60Z")
    Traceback (most recent call last):
    ...
    ValueError: time beyond the calendar: '9999-12-31T23:59:60Z'
    """
    try:
        return _parse_time(text)
    except OverflowError:  # 9999-12-31 with a negative offset or a leap second, 0001 + offset
        raise ValueError(f"time beyond the calendar: {text!r}") from None


def _parse_time(text: str) -> datetime:
    if _FAST_ISO and len(text) >= 20 and text[10] == "T" and text[-1] == "Z":
        # Python >= 3.11 parses the common "...T10:00:00[.fff]Z" in C, 3x faster than the regex.
        try:
            t = datetime.fromisoformat(text)
            return t if t.tzinfo is timezone.utc else t.astimezone(timezone.utc)
        except ValueError:
            pass
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    us = int((frac or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0)))
    sec = int(s)
    leap = sec == 60  # a leap second: keep the point, one second later is close enough
    t = datetime(int(y), int(mo), int(d), int(h), int(mi), 59 if leap else sec, us, tzinfo=tz)
    if leap:
        t += timedelta(seconds=1)
    return t.astimezone(timezone.utc)


def _format_time(t: datetime) -> str:
    t = t.astimezone(timezone.utc)
    if t.microsecond:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- GPX reading ----------------------------------------------------------------------------


_LOCAL: dict[str, str] = {}


def _local(tag: str) -> str:
    # "{http://www.topografix.com/GPX/1/1}trkpt" -> "trkpt": accept 1.0, 1.1 and no namespace.
    # Memoised: a track has a handful of distinct tags but millions of elements.
    name = _LOCAL.get(tag)
    if name is None:
        name = tag.rpartition("}")[2]
        if len(_LOCAL) < 1024:
            _LOCAL[tag] = name
    return name


def _child_text(el: ET.Element, name: str) -> str | None:
    for child in el:
        if _local(child.tag) == name:
            return child.text
    return None


def parse_gpx_tracks(data: str | bytes) -> list[GpxTrack]:
    """Every ``<trk>`` (and timed ``<rte>``) of a GPX document with its segments.

    Points without time are skipped, empty segments dropped, each segment sorted by time.

    Raises ``ValueError`` when the document is not well-formed XML or not GPX.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ValueError(f"not a well-formed GPX file: {e}") from None
    if _local(root.tag) != "gpx":
        raise ValueError(f"not a GPX document (root element is <{_local(root.tag)}>)")
    tracks: list[GpxTrack] = []
    for trk in root:
        kind = _local(trk.tag)
        counts = _Counts()
        if kind == "trk":
            segs = [_points(seg, "trkpt", counts) for seg in trk if _local(seg.tag) == "trkseg"]
        elif kind == "rte":  # a timed route (some loggers write these) is a one-segment track
            segs = [_points(trk, "rtept", counts)]
        else:
            continue
        name = _child_text(trk, "name")
        tracks.append(
            GpxTrack(
                name.strip() if name else None,
                [s for s in segs if s],
                counts.dropped,
                counts.bad_elevations,
            )
        )
    return tracks


def _points(parent: ET.Element, tag: str, counts: _Counts) -> list[Point]:
    points: list[Point] = []
    for pt in parent:
        if _local(pt.tag) == tag:
            p = _trkpt(pt, counts)
            if p is not None:
                points.append(p)
    points.sort(key=_time_of)
    return points


def _trkpt(pt: ET.Element, counts: _Counts) -> Point | None:
    t = ele = None
    for child in pt:
        tag = _local(child.tag)
        if tag == "time":
            t = child.text
        elif tag == "ele":
            ele = child.text
    if not t:
        return None  # not a fix: nothing to geotag with (routes, hand-drawn tracks)
    try:
        lat = float(pt.attrib["lat"])
        lon = float(pt.attrib["lon"])
        when = parse_time(t)
    except (KeyError, ValueError):
        counts.dropped += 1
        return None
    # (inline, not _position_ok(): this runs for every point of long tracks)
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0) or when.year not in CAPTURE_YEARS:
        counts.dropped += 1
        return None
    alt = None
    if ele:
        try:
            alt = float(ele)
        except ValueError:
            alt = math.nan if ele.strip() else None
        if alt is not None and not MIN_ELEVATION <= alt <= MAX_ELEVATION:
            counts.bad_elevations += 1
            alt = None
    return Point(when, lat, lon, alt)


def _elevation(text: str, counts: _Counts) -> float | None:
    try:
        alt = float(text)
    except ValueError:
        alt = math.nan
    if MIN_ELEVATION <= alt <= MAX_ELEVATION:
        return alt
    counts.bad_elevations += 1
    return None


def _time_of(p: Point) -> datetime:
    return p.time


def parse_gpx_text(data: str | bytes) -> Segments:
    """All track segments of a GPX document, each sorted by time, in document order.

    >>> doc = '''<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
    ... <trkpt lat="52.5" lon="13.4"><ele>34.5</ele><time>2024-06-01T10:00:01Z</time></trkpt>
    ... <trkpt lat="52.6" lon="13.5"><time>2024-06-01T10:00:00Z</time></trkpt>
    ... <trkpt lat="52.7" lon="13.6"></trkpt></trkseg></trk></gpx>'''
    >>> [(p.lat, p.alt, p.time.second) for p in parse_gpx_text(doc)[0]]
    [(52.6, None, 0), (52.5, 34.5, 1)]
    """
    return [seg for trk in parse_gpx_tracks(data) for seg in trk.segments]


# --- NMEA reading ---------------------------------------------------------------------------


def _nmea_checksum_ok(line: str) -> str | None:
    """The sentence body (between ``$`` and ``*``) when its checksum matches, else None."""
    start = line.find("$")
    star = line.rfind("*")
    if start < 0 or star < start or len(line) < star + 3:
        return None
    body = line[start + 1 : star]
    x = 0
    for ch in body.encode("ascii", "replace"):
        x ^= ch
    try:
        return body if int(line[star + 1 : star + 3], 16) == x else None
    except ValueError:
        return None


def _nmea_coord(value: str, hemi: str) -> float:
    # ddmm.mmmm / dddmm.mmmm: degrees are everything before the last two integer digits.
    dot = value.find(".")
    cut = (dot if dot >= 0 else len(value)) - 2
    minutes = float(value[cut:])
    if not 0.0 <= minutes < 60.0 or not value[:cut].isdigit() and value[:cut]:  # also NaN
        raise ValueError(f"not a coordinate: {value!r}")
    deg = float(value[:cut] or 0) + minutes / 60.0
    return -deg if hemi in ("S", "W") else deg


def _nmea_tod(value: str) -> time:
    h, m, s = int(value[0:2]), int(value[2:4]), float(value[4:])
    whole = int(s)
    return time(h, m, whole, int(round((s - whole) * 1e6)) if s != whole else 0)


def parse_nmea_text(data: str | bytes) -> Segments:
    """Fixes from NMEA 0183 RMC and GGA sentences (any talker: GP, GN, GL...), one segment.

    Sentences with a missing or wrong checksum, void RMC (status ``V``) and GGA without a
    fix (quality 0) are skipped. The date comes from RMC; GGA contributes the altitude (and
    a position at times no RMC covers, dated by the nearest preceding RMC, or the first one).

    >>> text = '''$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47
    ... $GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A
    ... $GPRMC,123520,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*60'''
    >>> [(p.time.isoformat(), round(p.lat, 4), p.alt) for p in parse_nmea_text(text)[0]]
    [('1994-03-23T12:35:19+00:00', 48.1173, 545.4), ('1994-03-23T12:35:20+00:00', 48.1173, None)]
    """
    return parse_nmea_track(data).segments


def parse_nmea_track(data: str | bytes, name: str | None = None) -> GpxTrack:
    """:func:`parse_nmea_text` as one track named ``name``, with the count of fixes dropped
    because their position or time is unusable (sentences with a good checksum and a fix,
    but a coordinate that is no number or out of range, a time like 25:61:00)."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    counts = _Counts()
    # (kind, time of day, lat, lon, alt, date) in file order; dates resolved afterwards.
    records: list[tuple[str, time, float, float, float | None, date | None]] = []
    for line in text.splitlines():
        body = _nmea_checksum_ok(line)
        if body is None:
            continue
        f = body.split(",")
        kind = f[0][-3:]
        try:
            if kind == "RMC" and len(f) >= 10 and f[2] == "A":
                d = date(2000 + int(f[9][4:6]), int(f[9][2:4]), int(f[9][0:2]))
                if int(f[9][4:6]) >= 80:  # two-digit years: 1980..2079 (GPS started 1980)
                    d = d.replace(year=d.year - 100)
                lat, lon = _nmea_coord(f[3], f[4]), _nmea_coord(f[5], f[6])
                if not _position_ok(lat, lon):
                    raise ValueError("position out of range")
                records.append(("RMC", _nmea_tod(f[1]), lat, lon, None, d))
            elif kind == "GGA" and len(f) >= 10 and f[6] not in ("", "0") and f[2]:
                lat, lon = _nmea_coord(f[2], f[3]), _nmea_coord(f[4], f[5])
                if not _position_ok(lat, lon):
                    raise ValueError("position out of range")
                alt = _elevation(f[9], counts) if f[9] else None
                records.append(("GGA", _nmea_tod(f[1]), lat, lon, alt, None))
        except (ValueError, IndexError, OverflowError):  # OverflowError: a time like "inf"
            counts.dropped += 1
            continue
    segments = _nmea_segments(records)
    return GpxTrack(name, segments, counts.dropped, counts.bad_elevations)


def _nmea_segments(
    records: list[tuple[str, time, float, float, float | None, date | None]],
) -> Segments:
    first_date = next((r[5] for r in records if r[5] is not None), None)
    if first_date is None:
        return []  # without any RMC there is no date: times would be guesses
    fixes: dict[datetime, list[Any]] = {}
    current: date = first_date
    last_tod: time | None = None
    for kind, tod, lat, lon, alt, day in records:
        if day is not None:
            current = day
        elif last_tod is not None and tod < last_tod and last_tod.hour >= 12 > tod.hour:
            current = current + timedelta(days=1)  # GGA past midnight before the next RMC
        last_tod = tod
        when = datetime.combine(current, tod, tzinfo=timezone.utc)
        fix = fixes.get(when)
        if fix is None:
            fixes[when] = [lat, lon, alt, kind]
        else:
            if kind == "RMC" and fix[3] != "RMC":
                fix[0], fix[1], fix[3] = lat, lon, kind  # RMC positions win
            if alt is not None:
                fix[2] = alt
    points = [Point(t, v[0], v[1], v[2]) for t, v in sorted(fixes.items())]
    return [points] if points else []


# --- files ----------------------------------------------------------------------------------


def _read(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.read()


_NMEA_SENTENCE = re.compile(rb"\$[A-Z]{2}(?:RMC|GGA),")


def _is_nmea(data: bytes) -> bool:
    # XML starts with "<" (after an optional BOM); NMEA logs may start with logger noise.
    head = data[:65536].lstrip(b"\xef\xbb\xbf \t\r\n")
    return not head.startswith(b"<") and _NMEA_SENTENCE.search(head) is not None


def read_tracks(path: str | os.PathLike[str], *, nmea: bool | None = None) -> list[GpxTrack]:
    """The tracks of a GPX or NMEA file (NMEA: one track named after the file, sans suffix);
    ``nmea``: ``None`` sniffs the content, ``True`` reads NMEA whatever it looks like."""
    data = _read(path)
    if nmea or (nmea is None and _is_nmea(data)):
        stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
        return [parse_nmea_track(data, stem)]
    return parse_gpx_tracks(data)


def read_track(path: str | os.PathLike[str]) -> Segments:
    """Track segments of a GPX (1.0/1.1) or NMEA file (sniffed from the content).

    Each segment is sorted by time; points without time are skipped; empty segments are
    dropped. Raises ``ValueError`` for a file that is neither.
    """
    return [seg for trk in read_tracks(path) for seg in trk.segments]


def read_nmea(path: str | os.PathLike[str]) -> Segments:
    """Fixes of an NMEA 0183 log (see :func:`parse_nmea_text`)."""
    return [seg for trk in read_tracks(path, nmea=True) for seg in trk.segments]


def offset_to_align(first_image_time: datetime, track: Seq[Point] | Seq[Seq[Point]]) -> float:
    """Seconds to add to image times so the first image falls on the track's first fix.

    ``--use-gpx-start-time``: for a camera whose clock is off but that started together with
    the logger (mapillary_tools' ``interpolation_use_gpx_start_time``).

    >>> from datetime import datetime, timezone
    >>> t = datetime(2024, 1, 1, 10, 0, 0, tzinfo=timezone.utc)
    >>> offset_to_align(t, [Point(datetime(2024, 1, 1, 10, 0, 5, tzinfo=timezone.utc), 0, 0)])
    5.0
    """
    firsts = [s.time if isinstance(s, Point) else s[0].time for s in track if s]
    if not firsts:
        raise ValueError("the track has no points")
    return (min(firsts) - first_image_time).total_seconds()


# --- GPX writing ----------------------------------------------------------------------------

_GPX_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gpx version="1.1" creator={creator} xmlns="http://www.topografix.com/GPX/1/1" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://www.topografix.com/GPX/1/1 '
    'http://www.topografix.com/GPX/1/1/gpx.xsd">\n'
)


def _num(v: float) -> str:
    # Shortest round-trip repr (writing loses nothing), but xsd:decimal has no exponent form.
    s = repr(float(v))
    if "e" in s:
        s = f"{v:.12f}".rstrip("0").rstrip(".")
    elif s.endswith(".0"):
        s = s[:-2]
    return "0" if s in ("-0", "") else s


def _trk_xml(name: str | None, segments: Iterable[Seq[Point]]) -> Iterable[str]:
    yield "  <trk>\n"
    if name:
        yield f"    <name>{escape(name)}</name>\n"
    for seg in segments:
        yield "    <trkseg>\n"
        for p in seg:
            yield f'      <trkpt lat="{_num(p.lat)}" lon="{_num(p.lon)}">'
            if p.alt is not None:
                yield f"<ele>{_num(p.alt)}</ele>"
            yield f"<time>{_format_time(p.time)}</time></trkpt>\n"
        yield "    </trkseg>\n"
    yield "  </trk>\n"


def _metadata_xml(name: str | None, description: str | None, when: datetime | None) -> str:
    if not (name or description or when):
        return ""
    parts = ["  <metadata>"]
    if name:
        parts.append(f"<name>{escape(name)}</name>")
    if description:
        parts.append(f"<desc>{escape(description)}</desc>")
    if when:
        parts.append(f"<time>{_format_time(when)}</time>")
    parts.append("</metadata>\n")
    return "".join(parts)


def track_to_gpx(
    track: Seq[Point] | Seq[Seq[Point]],
    name: str | None = None,
    *,
    description: str | None = None,
    creator: str = "amly",
    time: datetime | None = None,
) -> str:
    """A GPX 1.1 document with one ``<trk>``: a list of points (one segment) or of segments.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2024, 6, 1, 10, 0, 0, 500000, tzinfo=timezone.utc)
    >>> doc = track_to_gpx([Point(t, 52.52, 13.405, 34.0)], name="a & b")
    >>> print(doc.splitlines()[3].strip())
    <name>a &amp; b</name>
    >>> print(doc.splitlines()[5].strip())
    <trkpt lat="52.52" lon="13.405"><ele>34</ele><time>2024-06-01T10:00:00.5Z</time></trkpt>
    >>> parse_gpx_text(doc)[0][0] == Point(t, 52.52, 13.405, 34.0)
    True
    """
    segments = _as_segments(track)
    return "".join(
        [
            _GPX_HEAD.format(creator=quoteattr(creator)),
            _metadata_xml(None, description, time),
            *_trk_xml(name, segments),
            "</gpx>\n",
        ]
    )


def _as_segments(track: Seq[Point] | Seq[Seq[Point]]) -> list[Seq[Point]]:
    if not track:
        return []
    if isinstance(track[0], Point):
        return [track]  # type: ignore[list-item]
    return list(track)  # type: ignore[arg-type]


def join_gpx(
    paths: Iterable[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    creator: str = "amly",
) -> int:
    """Merge GPX/NMEA files into one GPX 1.1 file: one ``<trk>`` per input track, in order.

    Track names are kept (NMEA files and unnamed tracks are named after their file); the
    output is written atomically. Returns the number of tracks written. A file that is not
    a track raises ``ValueError`` naming it, and nothing is written.
    """
    parts = [_GPX_HEAD.format(creator=quoteattr(creator)), _metadata_xml(name, None, None)]
    count = 0
    for path in paths:
        base = os.path.splitext(os.path.basename(os.fspath(path)))[0]
        try:
            tracks = read_tracks(path)
        except ValueError as e:  # which file: the parser's message cannot say
            raise ValueError(f"{os.fspath(path)}: {e}") from None
        for trk in tracks:
            if not trk.segments:
                continue
            parts.extend(_trk_xml(trk.name or base, trk.segments))
            count += 1
    parts.append("</gpx>\n")
    atomic_write(out_path, "".join(parts).encode("utf-8"))
    return count
