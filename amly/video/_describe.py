"""A video as one description entry (the official format), its checks, and a GPX/NMEA track
that replaces or fills the video's own.

The entry is what ``mapillary_tools process`` writes for a video and ``mapillary_tools
upload`` reads: ``filename``, ``md5sum``, ``filetype``, ``filesize``, ``MAPGPSTrack`` rows
``[ms, lon, lat, alt, angle, epoch]`` and ``MAPDeviceMake``/``MAPDeviceModel``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from ..errors import FileError, NullIslandError, SpeedTooFastError
from ..geo import distance
from ..types import Point
from ._points import TrackPoint, steps
from ._read import VideoTrack

#: The official tool's limits (``process_sequence_properties``): 10 m radius, 110 GB.
STATIONARY_RADIUS_M = 10.0
MAX_VIDEO_BYTES = 110 * 1024**3


class StationaryVideoError(FileError):
    """Every point of the video lies within a few metres of the first: nothing to map."""

    kind = "MapillaryStationaryVideoError"


class VideoTooLargeError(FileError):
    kind = "MapillaryFileTooLargeError"


def avg_speed(points: Sequence[TrackPoint]) -> float:
    """Mean speed in m/s over the track (GPS time when both ends have it).

    >>> avg_speed([TrackPoint(0, 0, 0), TrackPoint(10, 0, 0.001)]) > 11
    True
    """
    if len(points) < 2:
        return 0.0
    total = sum(steps(points))
    first, last = points[0], points[-1]
    if first.epoch and last.epoch:
        dt = last.epoch - first.epoch
    else:
        dt = last.time - first.time
    return total / dt if dt else float("nan")


def check_video(
    track: VideoTrack,
    *,
    max_speed_kmh: float = 400.0,
    stationary_radius: float = STATIONARY_RADIUS_M,
    max_bytes: int | None = MAX_VIDEO_BYTES,
    filesize: int | None = None,
) -> FileError | None:
    """The first reason the official checks would refuse the video, or None."""
    pts = track.points
    p0 = pts[0] if pts else None
    if p0 is None or all(distance(p0.lat, p0.lon, p.lat, p.lon) <= stationary_radius for p in pts):
        return StationaryVideoError(
            track.path,
            f"stationary video: every GPS point lies within {stationary_radius:g} m of the first",
            hint="nothing to map from a camera that did not move",
        )
    size = filesize if filesize is not None else _size(track.path)
    if max_bytes is not None and size is not None and size > max_bytes:
        return VideoTooLargeError(
            track.path,
            f"{size / 1e9:.1f} GB is over the {max_bytes / 1e9:.0f} GB limit",
            hint="split the video",
        )
    if any(p.lat == 0 and p.lon == 0 for p in pts):
        return NullIslandError(
            track.path,
            "GPS points at (0, 0): the camera wrote positions before it had a fix",
            hint="give a GPX with --gpx, or trim the start of the video",
        )
    speed = avg_speed(pts) * 3.6
    if len(pts) >= 2 and speed > max_speed_kmh:
        return SpeedTooFastError(
            track.path,
            f"average capture speed {speed:.0f} km/h is over {max_speed_kmh:g} km/h (the GPS jumped)",
            hint="give a GPX with --gpx, or raise --max-speed if that is right",
        )
    return None


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def track_rows(points: Sequence[TrackPoint]) -> list[list[float | int | None]]:
    """``MAPGPSTrack`` rows, rounded as the official tool rounds them.

    >>> track_rows([TrackPoint(1.2345, 52.123456789, 13.1, 34.56789, 1700000000.5)])
    [[1234, 13.1, 52.1234568, 34.568, None, 1700000000.5]]
    """
    return [
        [
            int(p.time * 1000),
            round(p.lon, 7),
            round(p.lat, 7),
            round(p.alt, 3) if p.alt is not None else None,
            round(p.angle, 3) if p.angle is not None else None,
            p.epoch if p.epoch and p.epoch > 0 else None,
        ]
        for p in points
    ]


def video_entry(
    track: VideoTrack,
    *,
    md5sum: str | None = None,
    filesize: int | None = None,
    filetype: str | None = None,
) -> dict:
    """The description entry of a video, as ``mapillary_tools process`` writes it."""
    entry: dict = {
        "filename": os.path.abspath(track.path),
        "md5sum": md5sum,
        "filetype": filetype or track.filetype,
        "filesize": filesize if filesize is not None else _size(track.path),
        "MAPGPSTrack": track_rows(track.points),
    }
    if track.make:
        entry["MAPDeviceMake"] = track.make
    if track.model:
        entry["MAPDeviceModel"] = track.model
    return entry


def points_of_entry(entry: dict) -> list[TrackPoint]:
    """The track of a description entry (the inverse of :func:`track_rows`)."""
    out = []
    for row in entry["MAPGPSTrack"]:
        ms, lon, lat, alt, angle = row[:5]
        epoch = row[5] if len(row) > 5 else None
        out.append(TrackPoint(ms / 1000, lat, lon, alt, epoch, angle=angle))
    return out


def video_start(track: VideoTrack) -> tuple[float | None, str]:
    """The UTC epoch of the video's time 0, and which clock says so (``gps`` from the
    track's own GPS time, ``camera`` from ``mvhd``, ``none``)."""
    for p in track.points:
        if p.epoch:
            return p.epoch - p.time, "gps"
    if track.creation_time is not None:
        return track.creation_time.timestamp(), "camera"
    return None, "none"


def gpx_track(
    track: VideoTrack,
    gpx: Sequence[Point],
    *,
    offset: float = 0.0,
    start: float | None = None,
) -> tuple[VideoTrack, str]:
    """``track`` with its points replaced by the GPX/NMEA points ``gpx`` (times shifted by
    ``offset`` seconds), synchronised on the video's own GPS time when it has one, else on
    its ``mvhd`` time, else starting with the video (as the official tool rebases).
    Returns the new track and the clock used. Points outside the video are dropped."""
    pts = sorted(gpx, key=lambda p: p.time)
    if start is None:
        start_epoch, clock = video_start(track)
    else:
        start_epoch, clock = start, "given"
    if start_epoch is None:
        start_epoch, clock = pts[0].time.timestamp() + offset if pts else 0.0, "gpx"
    duration = track.duration or float("inf")
    out: list[TrackPoint] = []
    for p in pts:
        epoch = p.time.timestamp() + offset
        t = epoch - start_epoch
        if 0.0 <= t <= duration + 1.0:
            out.append(TrackPoint(t, p.lat, p.lon, p.alt, epoch, angle=p.heading))
    return replace(track, points=out, raw_count=len(out)), clock


def from_gpx_only(
    path: str,
    gpx: Sequence[Point],
    *,
    offset: float = 0.0,
    duration: float = 0.0,
    creation: datetime | None = None,
) -> VideoTrack:
    """A track for a video with no usable telemetry of its own (``filetype`` ``video``)."""
    empty = VideoTrack(path, "video", [], "", "", duration, creation)
    new, _clock = gpx_track(empty, gpx, offset=offset)
    return new
