"""CAMM (Camera Motion Metadata) samples and the make/model a CAMM camera writes in ``udta``.

Each sample is ``uint16 reserved, uint16 type`` then the type's fields, little-endian (the
Street View CAMM spec). Types 0-7 are parsed; 5 (lat, lon, alt as doubles) and 6 (full GPS
with its own UTC time, fix, accuracies and velocities) carry position.
"""

from __future__ import annotations

import struct

from ._points import TrackPoint

#: type -> (struct format after the 4-byte header, field names)
FORMATS: dict[int, str] = {
    0: "<3f",  # angle axis
    1: "<ii",  # exposure: pixel exposure time, rolling shutter skew (ns)
    2: "<3f",  # gyro
    3: "<3f",  # acceleration
    4: "<3f",  # position
    5: "<3d",  # minimal GPS: lat, lon, alt
    6: "<di2d7f",  # GPS: time, fix, lat, lon, alt, h/v accuracy, vel E/N/U, speed accuracy
    7: "<3f",  # magnetic field
}
SIZES = {t: 4 + struct.calcsize(f) for t, f in FORMATS.items()}
GPS6_SIZE = SIZES[6]


class CammError(ValueError):
    """A sample that is not CAMM."""


def parse_sample(data: bytes) -> tuple[int, tuple]:
    """``(type, values)`` of one CAMM sample.

    >>> parse_sample(struct.pack("<HH3d", 0, 5, 52.5, 13.4, 30.0))
    (5, (52.5, 13.4, 30.0))
    >>> parse_sample(b"\\0\\0\\x09\\0")
    Traceback (most recent call last):
    ...
    amly.video._camm.CammError: unknown CAMM sample type 9
    """
    if len(data) < 4:
        raise CammError(f"a {len(data)}-byte CAMM sample is too short")
    (typ,) = struct.unpack_from("<H", data, 2)
    fmt = FORMATS.get(typ)
    if fmt is None:
        raise CammError(f"unknown CAMM sample type {typ}")
    if len(data) < SIZES[typ]:
        raise CammError(f"CAMM type {typ} sample of {len(data)} bytes (needs {SIZES[typ]})")
    return typ, struct.unpack_from(fmt, data, 4)


def point_of(typ: int, v: tuple, time: float) -> TrackPoint | None:
    """The track point of a type 5 or 6 sample presented at ``time`` (None otherwise)."""
    if typ == 5:
        return TrackPoint(time, v[0], v[1], v[2])
    if typ == 6:
        epoch, fix, lat, lon, alt = v[0], v[1], v[2], v[3], v[4]
        return TrackPoint(time, lat, lon, alt, epoch if epoch > 0 else None, fix)
    return None


def gps6(p: TrackPoint, epoch: float) -> bytes:
    """A type-6 sample for ``p`` (fix 3 with altitude, 2 without, unless ``p.fix`` says)."""
    fix = p.fix if p.fix in (2, 3) else (3 if p.alt is not None else 2)
    alt = p.alt if p.alt is not None else -1.0
    return struct.pack(
        "<HH" + FORMATS[6][1:], 0, 6, epoch, fix, p.lat, p.lon, alt, 0, 0, 0, 0, 0, 0
    )


def gps5(p: TrackPoint) -> bytes:
    return struct.pack("<HH3d", 0, 5, p.lat, p.lon, p.alt if p.alt is not None else -1.0)


def make_model(udta: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    """Make and model from ``udta`` children, in mapillary_tools' order of preference.

    >>> make_model([(b"@mak", b"RICOH"), (b"@mod", b"THETA V")])
    ('RICOH', 'THETA V')
    >>> make_model([(b"\\xa9mak", b"\\x00\\x05\\x00\\x00Insta"), (b"\\xa9mod", b"\\x00\\x05\\x15\\xc7Titan")])
    ('Insta', 'Titan')
    """
    make = model = ""
    for typ, data in udta:
        if typ in (b"\xa9mak", b"\xa9mod"):
            if len(data) < 4:
                continue
            (n,) = struct.unpack_from(">H", data, 0)
            text = _text(data[4 : 4 + n].rstrip(b"\0"))
            if typ == b"\xa9mak" and not make:
                make = text
            elif typ == b"\xa9mod" and not model:
                model = text
        elif typ in (b"@mak", b"manu") and not make:
            make = _text(data)
        elif typ in (b"@mod", b"modl") and not model:
            model = _text(data)
        if make and model:
            break
    return make.strip(), model.strip()


def _text(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def elst_filter(points: list[TrackPoint], segments: list[tuple[float, float]]) -> list[TrackPoint]:
    """Apply a track's edit list as mapillary_tools does: ``segments`` are ``(media_time,
    duration)`` in seconds, ``-1`` media time for an empty edit (a shift of the track)."""
    empty = [s for s in segments if s[0] == -1]
    offset = empty[-1][1] if empty else 0.0
    edits = sorted(s for s in segments if s[0] != -1)
    if not edits:
        return [p.with_time(p.time + offset) for p in points] if offset else points
    out: list[TrackPoint] = []
    i = 0
    for p in points:
        if i >= len(edits):
            break
        start, dur = edits[i]
        if p.time < start:
            continue
        if p.time <= start + dur:
            out.append(p.with_time(p.time + offset))
        else:
            i += 1
    return out
