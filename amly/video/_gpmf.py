"""GoPro GPMF telemetry: KLV payloads of the ``gpmd`` track, GPS5 and GPS9 streams.

A payload holds ``DEVC`` devices, each with ``STRM`` streams of KLV entries (4-byte key,
1-byte type, 1-byte structure size, 2-byte repeat, data padded to 4 bytes). GPS comes as
``GPS5`` (lat, lon, alt, 2D and 3D speed; one ``GPSU`` UTC time, ``GPSF`` fix and ``GPSP``
DOP x100 per payload) or, on newer cameras, ``GPS9`` (the same plus days since 2000,
seconds since midnight, DOP and fix for every point, its layout described by ``TYPE``).
GPS9 is kept over GPS5 when a device has both, as mapillary_tools does.
"""

from __future__ import annotations

import calendar
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

from ._points import TrackPoint

_EPOCH_2000 = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()

#: GPMF type character -> (struct code, size)
TYPES = {
    "b": ("b", 1),
    "B": ("B", 1),
    "c": ("c", 1),
    "d": ("d", 8),
    "f": ("f", 4),
    "F": ("4s", 4),
    "G": ("16s", 16),
    "j": ("q", 8),
    "J": ("Q", 8),
    "l": ("i", 4),
    "L": ("I", 4),
    "q": ("I", 4),
    "Q": ("Q", 8),
    "s": ("h", 2),
    "S": ("H", 2),
    "U": ("16s", 16),
}


class GpmfError(ValueError):
    """A payload that is not GPMF."""


@dataclass
class Klv:
    key: bytes
    type: str
    size: int  # structure size
    repeat: int
    start: int  # data offset in the payload
    buf: bytes

    @property
    def data(self) -> bytes:
        return self.buf[self.start : self.start + self.size * self.repeat]

    def children(self) -> Iterator[Klv]:
        return iter_klv(self.buf, self.start, self.start + self.size * self.repeat)

    def values(self) -> list[tuple]:
        """One tuple per repeat, decoded by the type character (numbers or bytes)."""
        t = TYPES.get(self.type)
        if t is None:
            raise GpmfError(f"{self.key!r}: type {self.type!r} needs a TYPE description")
        code, width = t
        if self.type == "c":
            return [(self.data[i * self.size : (i + 1) * self.size],) for i in range(self.repeat)]
        n = self.size // width
        if n == 0:
            return []
        fmt = ">" + code * n
        step = struct.calcsize(fmt)
        return (
            [
                struct.unpack_from(fmt, self.buf, self.start + i * self.size)
                for i in range(self.repeat)
            ]
            if step <= self.size
            else []
        )

    def text(self) -> str:
        return self.data.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def iter_klv(buf: bytes, pos: int, end: int) -> Iterator[Klv]:
    while pos + 8 <= end:
        key, typ, size, repeat = struct.unpack_from(">4scBH", buf, pos)
        if key == b"\0\0\0\0":
            return  # padding
        n = size * repeat
        if pos + 8 + n > end:
            raise GpmfError(f"{key!r} at {pos} runs past its parent")
        yield Klv(key, typ.decode("latin-1"), size, repeat, pos + 8, buf)
        pos += 8 + (n + 3) // 4 * 4


class _Raw(NamedTuple):
    """GPS points of one payload before times are given (video-relative time set later)."""

    lat: float
    lon: float
    alt: float
    speed: float
    epoch: float | None
    fix: int | None
    precision: float | None
    idx_time: float | None = None  # GPS9: its own seconds since the payload's first point


def _complex_format(desc: bytes) -> str:
    out = []
    for ch in desc.decode("latin-1"):
        t = TYPES.get(ch)
        if t is None:
            raise GpmfError(f"unknown TYPE character {ch!r}")
        out.append(t[0])
    return ">" + "".join(out)


def _scales(stream: dict[bytes, Klv], n: int) -> list[float] | None:
    scal = stream.get(b"SCAL")
    if scal is None:
        return None
    vals = [float(v) for row in scal.values() for v in row]
    if len(vals) == 1:
        vals = vals * n
    if len(vals) < n or any(v == 0 for v in vals[:n]):
        return None
    return vals[:n]


def _gpsu(klv: Klv | None) -> float | None:
    if klv is None:
        return None
    s = klv.data[:16]
    try:
        y, mo, d, h, mi = (int(s[i : i + 2]) for i in range(0, 10, 2))
        sec = float(s[10:16])
        return (
            calendar.timegm((2000 + y, mo, d, h, mi, 0)) + sec
            if 1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and sec < 61
            else None
        )
    except ValueError:
        return None


def _gps5(stream: dict[bytes, Klv]) -> list[_Raw]:
    gps5 = stream[b"GPS5"]
    sc = _scales(stream, 5)
    if sc is None or gps5.type not in ("l", "L") or gps5.size < 20:
        return []
    fix = _first_int(stream.get(b"GPSF"))
    prec = _first_int(stream.get(b"GPSP"))
    epoch = _gpsu(stream.get(b"GPSU"))
    fmt = (">5i" if gps5.type == "l" else ">5I") + f"{gps5.size - 20}x"
    s0, s1, s2, s3 = sc[0], sc[1], sc[2], sc[3]
    p = float(prec) if prec is not None else None
    return [
        _Raw(v[0] / s0, v[1] / s1, v[2] / s2, v[3] / s3, epoch, fix, p)
        for v in struct.iter_unpack(fmt, gps5.data)
    ]


def _gps9(stream: dict[bytes, Klv]) -> list[_Raw]:
    gps9 = stream[b"GPS9"]
    typ = stream.get(b"TYPE")
    sc = _scales(stream, 9)
    if sc is None or typ is None:
        return []
    desc = typ.data.rstrip(b"\0")
    if len(desc) != 9:
        raise GpmfError(f"GPS9 TYPE {desc!r} does not describe 9 values")
    fmt = _complex_format(desc)
    if struct.calcsize(fmt) > gps9.size:
        raise GpmfError(f"GPS9 TYPE {desc!r} is larger than its {gps9.size}-byte structure")
    out = []
    first = None
    for i in range(gps9.repeat):
        v = [
            a / s
            for a, s in zip(
                struct.unpack_from(fmt, gps9.buf, gps9.start + i * gps9.size), sc, strict=False
            )
        ]
        epoch = _EPOCH_2000 + v[5] * 86400 + v[6]
        if first is None:
            first = epoch
        out.append(_Raw(v[0], v[1], v[2], v[3], epoch, int(v[8]), v[7] * 100, epoch - first))
    return out


def _first_int(klv: Klv | None) -> int | None:
    if klv is None:
        return None
    vals = klv.values()
    if not vals or not vals[0] or not isinstance(vals[0][0], int):
        return None
    return vals[0][0]


@dataclass
class Payload:
    """What one GPMF payload gives: device names and the GPS points of each device."""

    names: dict[object, str]
    gps: dict[object, list[_Raw]]
    devices: int


def parse_payload(buf: bytes) -> Payload:
    names: dict[object, str] = {}
    gps: dict[object, list[_Raw]] = {}
    devices = 0
    for dev in iter_klv(buf, 0, len(buf)):
        if dev.key != b"DEVC" or dev.type != "\0":
            continue
        devices += 1
        dvid: object = 1 << 32
        gps5: list[_Raw] = []
        gps9: list[_Raw] = []
        for klv in dev.children():
            if klv.key == b"DVID":
                dvid = klv.data
            elif klv.key == b"DVNM":
                names[dvid] = klv.data.replace(b"\0", b"").decode("utf-8", "replace")
            elif klv.key == b"STRM" and klv.type == "\0":
                end = klv.start + klv.size * klv.repeat
                if buf.find(b"GPS", klv.start, end) < 0:
                    continue  # accelerometer, gyro, exposure...: no need to walk it
                stream: dict[bytes, Klv] = {}
                for s in klv.children():
                    stream[s.key] = s
                if not gps9 and b"GPS9" in stream:
                    gps9 = _gps9(stream)
                if not gps5 and b"GPS5" in stream:
                    gps5 = _gps5(stream)
        pts = gps9 or gps5
        if pts:
            gps.setdefault(dvid, []).extend(pts)
    return Payload(names, gps, devices)


def camera_model(names: list[str]) -> str:
    """The camera among the device names, as mapillary_tools picks it.

    >>> camera_model(["Camera", "GoPro Karma v1.0"])
    'GoPro Karma v1.0'
    >>> camera_model(["HERO11 Black", "GoPro Karma v1.0"])
    'HERO11 Black'
    """
    if not names:
        return ""
    names = sorted(names)
    for key in ("hero", "gopro"):
        for n in names:
            if key in n.lower():
                return n.strip()
    return names[0].strip()


def minf_model(buf: bytes) -> str:
    """The ``MINF`` model name in a ``udta`` GPMF box ('' when absent)."""
    try:
        for dev in iter_klv(buf, 0, len(buf)):
            if dev.type != "\0":
                continue
            for klv in dev.children():
                if klv.key == b"STRM" and klv.type == "\0":
                    for s in klv.children():
                        if s.key == b"MINF":
                            return s.text()
                elif klv.key == b"MINF":
                    return klv.text()
    except GpmfError:
        return ""
    return ""


def points_of(
    payloads: list[tuple[float, float, bytes]],
) -> tuple[list[TrackPoint], list[str], int]:
    """Track points of the first device with GPS, from ``(time, duration, payload)`` triples.

    Each point's video time is spread evenly over its payload's duration; its epoch comes
    from GPSU (GPS5: the payload's time plus the point's offset in it) or GPS9's own time.
    Returns the points, all device names, and how many devices were seen.
    """
    by_dev: dict[object, list[TrackPoint]] = {}
    names: dict[object, str] = {}
    devices = 0
    for t0, dur, buf in payloads:
        try:
            p = parse_payload(buf)
        except GpmfError:
            continue
        devices += p.devices
        names.update(p.names)
        for dev, raws in p.gps.items():
            step = dur / len(raws)
            out = by_dev.setdefault(dev, [])
            for i, r in enumerate(raws):
                t = t0 + step * i
                if r.idx_time is not None:
                    epoch = r.epoch
                else:
                    epoch = r.epoch + step * i if r.epoch is not None else None
                out.append(TrackPoint(t, r.lat, r.lon, r.alt, epoch, r.fix, r.precision, r.speed))
    pts = next(iter(by_dev.values()), [])
    _backfill(pts)
    return pts, list(names.values()), devices


def _backfill(pts: list[TrackPoint]) -> None:
    """Points without GPS time get one from the nearest point that has it (video clock)."""
    ref = next((p for p in pts if p.epoch is not None), None)
    if ref is None:
        return
    for i, p in enumerate(pts):
        if p.epoch is None:
            pts[i] = p.with_epoch(ref.epoch + (p.time - ref.time))  # type: ignore[operator]
        else:
            ref = p
