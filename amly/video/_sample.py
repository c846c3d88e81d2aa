"""Frames of a video as geotagged JPEGs (``amly sample-video``).

Frames are decoded with PyAV (the ``av`` wheel carries its own FFmpeg: no system ffmpeg,
whose options change between versions). A frame is kept every ``interval`` seconds of
presentation time, or every ``distance`` metres along the track; its position, altitude
and direction are interpolated on the track at the frame's presentation time, and its
capture time is the GPS time there when the telemetry has one (else the ``mvhd`` time plus
the frame's time, which many cameras write in local time). Frames of 360° video get GPano
XMP so they are recognised as panoramas.
"""

from __future__ import annotations

import bisect
import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .._atomic import atomic_write
from ..errors import FileError, UsageError
from ..geo import bearing, distance
from ..metadata.write import set_exif_bytes
from ._points import TrackPoint
from ._read import VideoTrack, read_video_sync

_XMP_NS = b"http://ns.adobe.com/xap/1.0/\0"


class NeedsExportError(FileError):
    """A GoPro ``.360`` file: two EAC-projected streams, not one picture."""

    kind = "MapillaryVideoError"


@dataclass
class Located:
    lat: float
    lon: float
    alt: float | None
    heading: float | None
    epoch: float | None


def locate(points: list[TrackPoint], t: float) -> Located | None:
    """The track's position at video time ``t`` (linear between the two nearest points),
    or None outside the track.

    >>> pts = [TrackPoint(0, 0.0, 0.0, 10.0, 100.0), TrackPoint(2, 0.0, 0.002, 20.0, 102.0)]
    >>> p = locate(pts, 1.0)
    >>> round(p.lon, 6), p.alt, round(p.heading), p.epoch
    (0.001, 15.0, 90, 101.0)
    >>> locate(pts, 2.5) is None
    True
    """
    if not points or t < points[0].time or t > points[-1].time:
        return None
    times = [p.time for p in points]
    i = bisect.bisect_right(times, t) - 1
    a = points[i]
    b = points[min(i + 1, len(points) - 1)]
    if b is a and i > 0:
        a, b = points[i - 1], a
    span = b.time - a.time
    k = (t - a.time) / span if span > 0 else 0.0
    k = min(max(k, 0.0), 1.0)
    lat = a.lat + (b.lat - a.lat) * k
    lon = a.lon + (b.lon - a.lon) * k
    alt = a.alt + (b.alt - a.alt) * k if a.alt is not None and b.alt is not None else a.alt
    heading = _heading(points, i)
    epoch = None
    if a.epoch is not None and b.epoch is not None:
        epoch = a.epoch + (b.epoch - a.epoch) * k
    elif a.epoch is not None:
        epoch = a.epoch + (t - a.time)
    return Located(lat, lon, alt, heading, epoch)


def _heading(points: list[TrackPoint], i: int) -> float | None:
    """Direction of travel at point ``i``: towards the first later point at least 1 m away
    (the last points look back), None for a track that never moves."""
    a = points[i]
    for b in points[i + 1 :]:
        if distance(a.lat, a.lon, b.lat, b.lon) >= 1.0:
            return bearing(a.lat, a.lon, b.lat, b.lon)
    for b in reversed(points[:i]):
        if distance(a.lat, a.lon, b.lat, b.lon) >= 1.0:
            return bearing(b.lat, b.lon, a.lat, a.lon)
    return None


def gpano_xmp(width: int, height: int) -> bytes:
    """An XMP APP1 segment marking an equirectangular panorama (Google's GPano)."""
    xml = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" '
        'GPano:ProjectionType="equirectangular" GPano:UsePanoramaViewer="True" '
        f'GPano:FullPanoWidthPixels="{width}" GPano:FullPanoHeightPixels="{height}" '
        f'GPano:CroppedAreaImageWidthPixels="{width}" '
        f'GPano:CroppedAreaImageHeightPixels="{height}" '
        'GPano:CroppedAreaLeftPixels="0" GPano:CroppedAreaTopPixels="0"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()
    payload = _XMP_NS + xml
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def insert_after_app(jpeg: bytes, segment: bytes) -> bytes:
    """``segment`` inserted after the leading APP0/APP1 segments (JFIF, EXIF)."""
    pos = 2
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF and jpeg[pos + 1] in (0xE0, 0xE1):
        (n,) = struct.unpack_from(">H", jpeg, pos + 2)
        pos += 2 + n
    return jpeg[:pos] + segment + jpeg[pos:]


@dataclass
class SampleResult:
    video: str
    frames: list[str] = field(default_factory=list)
    clock: str = "gps"  # which clock gave capture times: "gps" or "camera"
    skipped_outside: int = 0


def _pick_times(
    frames: Iterator[tuple[float, object]],
    points: list[TrackPoint],
    interval: float | None,
    dist: float | None,
) -> Iterator[tuple[float, object, Located]]:
    next_t = 0.0
    last: Located | None = None
    for t, frame in frames:
        where = locate(points, t)
        if where is None:
            continue
        if interval is not None:
            if t + 1e-6 < next_t:
                continue
            while next_t <= t + 1e-6:
                next_t += interval
        elif dist is not None and last is not None:
            if distance(last.lat, last.lon, where.lat, where.lon) < dist:
                continue
        last = where
        yield t, frame, where


def sample_video(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    interval: float | None = None,
    distance_m: float | None = None,
    track: VideoTrack | None = None,
    panorama: bool | None = None,
    quality: int = 90,
) -> SampleResult:
    """Write the sampled frames of one video under ``out_dir/<video file name>/``."""
    name = os.fspath(path)
    if (interval is None) == (distance_m is None):
        raise UsageError("give exactly one of --interval and --distance")
    if (interval is not None and interval <= 0) or (distance_m is not None and distance_m <= 0):
        raise UsageError("--interval and --distance must be positive")
    if name.lower().endswith(".360"):
        raise NeedsExportError(
            name,
            "a GoPro .360 file holds two EAC-projected streams, not an equirectangular picture",
            hint="export it as an equirectangular MP4 with GoPro Player or Quik and sample "
            "that file (the .360 itself can be processed and uploaded as it is)",
        )
    try:
        import av
    except ImportError:
        raise UsageError("frame sampling needs PyAV: pip install 'amly[video]'") from None
    track = track or read_video_sync(name)
    pts = track.points
    result = SampleResult(name, clock="gps" if any(p.epoch for p in pts) else "camera")
    if result.clock == "camera" and track.creation_time is None:
        raise FileError(
            name,
            "the track has no GPS time and the video no creation time",
            hint="give a GPX with times with --gpx",
        )
    pano = track.spherical if panorama is None else panorama
    dest = Path(out_dir) / Path(name).name
    stem = Path(name).stem
    try:
        container = av.open(name)
    except (av.error.FFmpegError, OSError) as e:
        raise FileError(
            name, f"cannot be decoded ({type(e).__name__})", hint="re-export the video"
        ) from None
    with container:
        if not container.streams.video:
            raise FileError(name, "no video stream to sample")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"

        def frames() -> Iterator[tuple[float, object]]:
            try:
                for frame in container.decode(stream):
                    if frame.time is not None:
                        yield float(frame.time), frame
            except av.error.FFmpegError as e:
                raise FileError(
                    name, f"decoding stopped: {type(e).__name__}", hint="the video is damaged"
                ) from None

        dest.mkdir(parents=True, exist_ok=True)
        for t, frame, where in _pick_times(frames(), pts, interval, distance_m):
            img = frame.to_image()  # type: ignore[attr-defined]
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=quality)
            if where.epoch is not None:
                when = datetime.fromtimestamp(where.epoch, timezone.utc)
            else:
                assert track.creation_time is not None
                when = track.creation_time + timedelta(seconds=t)
            jpeg = set_exif_bytes(
                buf.getvalue(),
                capture_time=when,
                lat=where.lat,
                lon=where.lon,
                alt=where.alt,
                heading=where.heading,
                make=track.make or None,
                model=track.model or None,
                name=name,
            )
            if pano:
                jpeg = insert_after_app(jpeg, gpano_xmp(img.width, img.height))
            out = dest / f"{stem}_{len(result.frames):06d}.jpg"
            atomic_write(out, jpeg)
            result.frames.append(str(out))
    return result
