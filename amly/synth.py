"""Deterministic synthetic drives: JPEGs with real EXIF and matching GPX tracks.

Used by the demo, the tests and the benchmarks. A drive is a list of :class:`~amly.types.Point`
along a wiggly road, one photo every ``interval`` seconds, with an optional red-light stop
(near-duplicate photos) and a long parking gap (a sequence break). Pixels are encoded once
per size into a few textured base frames; each photo is a base frame with its own EXIF
spliced in, so thousands of realistic ~600 KB photos are written at disk speed.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import os
import random
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .types import Point

EARTH_RADIUS = 6_371_008.8


@dataclasses.dataclass(frozen=True)
class DrivePlan:
    """Shape of a synthetic drive. Defaults: 1 photo/s at ~12 m/s in Berlin."""

    n: int = 300
    start_lat: float = 52.52
    start_lon: float = 13.405
    start: datetime = datetime(2024, 6, 1, 10, 0, 0, tzinfo=timezone.utc)
    interval: float = 1.0
    speed: float = 12.0
    stop_at: int | None = None  # index where a red-light stop starts
    stop_photos: int = 20  # photos taken while standing still
    park_at: int | None = None  # index where a long parking gap starts
    park_seconds: float = 900.0
    seed: int = 7


def drive(plan: DrivePlan) -> list[Point]:
    """Positions and times of every photo of ``plan`` (headings are the direction of travel).

    >>> pts = drive(DrivePlan(n=5))
    >>> len(pts), pts[1].time - pts[0].time
    (5, datetime.timedelta(seconds=1))
    """
    rnd = random.Random(plan.seed)
    lat, lon = plan.start_lat, plan.start_lon
    heading = rnd.uniform(0, 360)
    t = plan.start
    points: list[Point] = []
    standing = 0
    for i in range(plan.n):
        if plan.park_at is not None and i == plan.park_at:
            t += timedelta(seconds=plan.park_seconds)
            heading = (heading + 90) % 360
        if plan.stop_at is not None and i == plan.stop_at:
            standing = plan.stop_photos
        points.append(Point(t, lat, lon, 34.0 + 3 * math.sin(i / 25), heading))
        t += timedelta(seconds=plan.interval)
        if standing > 0:
            standing -= 1
            lat += rnd.uniform(-1, 1) * 1e-8  # GPS jitter while standing still
            continue
        heading = (heading + rnd.gauss(0, 4)) % 360
        step = plan.speed * plan.interval
        lat += step * math.cos(math.radians(heading)) / EARTH_RADIUS * 180 / math.pi
        lon += (
            step
            * math.sin(math.radians(heading))
            / (EARTH_RADIUS * math.cos(math.radians(lat)))
            * 180
            / math.pi
        )
    return points


@functools.lru_cache(maxsize=8)
def base_frames(width: int, height: int, count: int = 4, quality: int = 84) -> tuple[bytes, ...]:
    """A few textured JPEG frames of ``width`` x ``height`` (no EXIF, with a JFIF header).

    Texture = gradients + value noise, which compresses like a street scene (~600 KB at
    1920x1080, quality 88).
    """
    from PIL import Image, ImageFilter

    frames = []
    rnd = random.Random(width * 31 + height)
    for k in range(count):
        noise = Image.effect_noise((width, height), 64 + 8 * k).convert("L")
        noise = noise.filter(ImageFilter.GaussianBlur(0.6))
        grad = Image.linear_gradient("L").resize((width, height)).rotate(rnd.uniform(0, 360))
        rgb = Image.merge("RGB", (noise, grad, Image.blend(noise, grad, 0.5)))
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=quality)
        frames.append(buf.getvalue())
    return tuple(frames)


def _rational(x: float, den: int = 1_000_000) -> tuple[int, int]:
    return (int(round(abs(x) * den)), den)


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = (value - d - m / 60) * 3600
    return ((d, 1), (m, 1), (int(round(s * 10_000)), 10_000))


def exif_bytes(
    *,
    time: datetime | None,
    lat: float | None = None,
    lon: float | None = None,
    alt: float | None = None,
    heading: float | None = None,
    make: str = "AmlyCam",
    model: str = "Synth 1",
    serial: str | None = None,
    width: int | None = None,
    height: int | None = None,
    gps_time: bool = True,
    offset: str | None = None,
) -> bytes:
    """An EXIF (APP1 payload) as a camera would write it. ``time`` is written as local
    DateTimeOriginal in ``time``'s own zone (plus OffsetTimeOriginal when ``offset``);
    ``gps_time`` also writes the UTC GPS date/time stamp."""
    import piexif

    zeroth: dict[int, object] = {
        piexif.ImageIFD.Make: make.encode(),
        piexif.ImageIFD.Model: model.encode(),
        piexif.ImageIFD.Orientation: 1,
    }
    exif: dict[int, object] = {}
    gps: dict[int, object] = {}
    if time is not None:
        exif[piexif.ExifIFD.DateTimeOriginal] = time.strftime("%Y:%m:%d %H:%M:%S").encode()
        exif[piexif.ExifIFD.SubSecTimeOriginal] = f"{time.microsecond // 1000:03d}".encode()
        if offset:
            exif[piexif.ExifIFD.OffsetTimeOriginal] = offset.encode()
    if serial:
        exif[piexif.ExifIFD.BodySerialNumber] = serial.encode()
    if width and height:
        exif[piexif.ExifIFD.PixelXDimension] = width
        exif[piexif.ExifIFD.PixelYDimension] = height
    if lat is not None and lon is not None:
        gps[piexif.GPSIFD.GPSVersionID] = (2, 3, 0, 0)
        gps[piexif.GPSIFD.GPSLatitudeRef] = b"N" if lat >= 0 else b"S"
        gps[piexif.GPSIFD.GPSLatitude] = _dms(lat)
        gps[piexif.GPSIFD.GPSLongitudeRef] = b"E" if lon >= 0 else b"W"
        gps[piexif.GPSIFD.GPSLongitude] = _dms(lon)
        if alt is not None:
            gps[piexif.GPSIFD.GPSAltitudeRef] = 0 if alt >= 0 else 1
            gps[piexif.GPSIFD.GPSAltitude] = _rational(alt, 1000)
        if heading is not None:
            gps[piexif.GPSIFD.GPSImgDirectionRef] = b"T"
            gps[piexif.GPSIFD.GPSImgDirection] = _rational(heading % 360, 100)
        if gps_time and time is not None:
            u = time.astimezone(timezone.utc)
            gps[piexif.GPSIFD.GPSDateStamp] = u.strftime("%Y:%m:%d").encode()
            gps[piexif.GPSIFD.GPSTimeStamp] = (
                (u.hour, 1),
                (u.minute, 1),
                (u.second * 1000 + u.microsecond // 1000, 1000),
            )
    return bytes(piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps}))


def splice_exif(jpeg: bytes, exif: bytes) -> bytes:
    """``jpeg`` (which must have no EXIF) with an APP1 EXIF segment right after SOI/APP0."""
    assert jpeg[:2] == b"\xff\xd8"
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":  # keep JFIF first, as cameras and exiftool expect
        pos = 4 + int.from_bytes(jpeg[4:6], "big")
    seg = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    return jpeg[:pos] + seg + jpeg[pos:]


def write_photos(
    folder: str | os.PathLike[str],
    points: Iterable[Point],
    *,
    size: tuple[int, int] = (640, 360),
    geotag: bool = True,
    clock_offset: float = 0.0,
    tz: timezone = timezone.utc,
    prefix: str = "IMG_",
    **camera: object,
) -> list[Path]:
    """Write one JPEG per point into ``folder``; return the paths in capture order.

    ``geotag=False`` writes only the camera time (for GPX geotagging); ``clock_offset``
    shifts the camera clock against the GPS clock (seconds, camera = true + offset).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = base_frames(*size)
    paths = []
    for i, p in enumerate(points):
        cam_time = (p.time + timedelta(seconds=clock_offset)).astimezone(tz)
        exif = exif_bytes(
            time=cam_time,
            lat=p.lat if geotag else None,
            lon=p.lon if geotag else None,
            alt=p.alt if geotag else None,
            heading=p.heading if geotag else None,
            gps_time=geotag,
            width=size[0],
            height=size[1],
            **camera,  # type: ignore[arg-type]
        )
        path = folder / f"{prefix}{i:05d}.jpg"
        path.write_bytes(splice_exif(frames[i % len(frames)], exif))
        paths.append(path)
    return paths


def gpx_text(points: Iterable[Point], *, every: int = 1, name: str = "synthetic drive") -> str:
    """A GPX 1.1 document of ``points`` (every ``every``-th fix), one track, one segment."""
    rows = []
    for i, p in enumerate(points):
        if i % every:
            continue
        t = p.time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ele = f"<ele>{p.alt:.2f}</ele>" if p.alt is not None else ""
        rows.append(f'<trkpt lat="{p.lat:.8f}" lon="{p.lon:.8f}">{ele}<time>{t}</time></trkpt>')
    body = "\n".join(rows)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="amly-synth" xmlns="http://www.topografix.com/GPX/1/1">\n'
        f"<trk><name>{name}</name><trkseg>\n{body}\n</trkseg></trk>\n</gpx>\n"
    )
