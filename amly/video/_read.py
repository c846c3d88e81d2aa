"""Telemetry of one video file: which kind it is, its track, its make and model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import BinaryIO

from ..errors import FileError
from . import _blackvue, _camm, _gpmf
from ._filter import DEFAULT_FILTER, NoiseFilter
from ._mp4 import Movie, Mp4Error, Track, open_movie, parse_boxes
from ._points import TrackPoint

FILETYPES = ("gopro", "camm", "blackvue")
_GPX_HINT = "give the track as a GPX or NMEA file with --gpx"
_1904 = datetime(1904, 1, 1, tzinfo=timezone.utc)


class VideoGPSNotFoundError(FileError):
    """The video carries no telemetry amly knows (GoPro GPMF, CAMM, BlackVue NMEA)."""

    kind = "MapillaryVideoGPSNotFoundError"


class VideoGPSEmptyError(FileError):
    """The video has telemetry but not one GPS point in it."""

    kind = "MapillaryGPXEmptyError"


class VideoGPSNoiseError(FileError):
    """Every GPS point of the video was dropped as noise (no fix, poor precision)."""

    kind = "MapillaryGPSNoiseError"


@dataclass
class VideoTrack:
    """What a video says about where it was taken.

    ``points`` are sorted by ``time`` (seconds on the video's clock); ``raw_count`` counts
    the GPS points before the noise filter. ``creation_time`` is the ``mvhd`` time as
    written (GoPro MAX writes local time there, labelled UTC: prefer the points' ``epoch``).
    """

    path: str
    filetype: str
    points: list[TrackPoint]
    make: str
    model: str
    duration: float
    creation_time: datetime | None
    raw_count: int = 0
    devices: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0
    video_tracks: int = 0
    spherical: bool = False


def _video_info(m: Movie) -> tuple[int, int, int]:
    vids = [t for t in m.tracks if t.handler == b"vide"]
    if not vids:
        return 0, 0, 0
    return int(vids[0].width), int(vids[0].height), len(vids)


def _creation(m: Movie) -> datetime | None:
    if m.creation_time <= 0:
        return None
    try:
        return _1904 + timedelta(seconds=m.creation_time)
    except OverflowError:
        return None


def _samples(f: BinaryIO, m: Movie, t: Track, fmt: bytes) -> list[tuple[float, float, bytes]]:
    t.check_offsets(m.file_size)
    ts = t.timescale
    return [(s.dts / ts, s.duration / ts, data) for s, data in t.read_samples(f, fmt)]


def _gopro(f: BinaryIO, m: Movie, t: Track) -> tuple[list[TrackPoint], str, list[str]]:
    payloads = _samples(f, m, t, b"gpmd")
    pts, names, devices = _gpmf.points_of(payloads)
    if not devices:
        raise VideoGPSNotFoundError(
            m.path, "the 'gpmd' track holds no GoPro devices (not GPMF)", hint=_GPX_HINT
        )
    model = ""
    for typ, data in m.udta:
        if typ == b"GPMF":
            model = _gpmf.minf_model(data)
    return pts, model or _gpmf.camera_model(names), names


def _camm_points(f: BinaryIO, m: Movie, t: Track) -> list[TrackPoint]:
    t.check_offsets(m.file_size)
    gps6: list[TrackPoint] = []
    gps5: list[TrackPoint] = []
    ts = t.timescale
    for s, data in t.read_samples(f, b"camm"):
        if s.size < 17:
            continue
        try:
            typ, v = _camm.parse_sample(data)
        except _camm.CammError:
            continue
        p = _camm.point_of(typ, v, s.dts / ts)
        if p is not None:
            (gps6 if typ == 6 else gps5).append(p)
    pts = gps6 or gps5
    if t.elst and m.timescale:
        segs = [(-1.0 if mt == -1 else mt / ts, dur / m.timescale) for dur, mt in t.elst]
        pts = _camm.elst_filter(pts, segs)
    return pts


def _blackvue_boxes(f: BinaryIO, m: Movie) -> tuple[bytes | None, bytes | None]:
    """The ``gps `` and ``cprt`` payloads of whichever top-level ``free`` box holds them."""
    gps = cprt = None
    for box in m.top:
        if box.type not in (b"free", b"gps ") or box.size > 256 * 1024 * 1024:
            continue
        if box.type == b"gps ":
            f.seek(box.start)
            gps = gps or f.read(box.size - box.header)
            continue
        f.seek(box.start)
        data = f.read(box.size - box.header)
        try:
            children = parse_boxes(data, box.start, m.path, "free")
        except Mp4Error:
            continue
        for c in children:
            payload = data[c.start - box.start : c.end - box.start]
            if c.type == b"gps " and gps is None and payload.strip(b"\0"):
                gps = payload
            elif c.type == b"cprt" and cprt is None:
                cprt = payload
    return gps, cprt


def read_video_sync(
    path: str | os.PathLike[str],
    filetypes: frozenset[str] | set[str] | None = None,
    noise: NoiseFilter | None = DEFAULT_FILTER,
) -> VideoTrack:
    """Read the telemetry of one video (see :func:`amly.video.read_video`)."""
    name = os.fspath(path)
    want = set(filetypes) if filetypes else set(FILETYPES)
    try:
        with open(name, "rb") as f:
            return _read(f, name, want, noise)
    except FileNotFoundError:
        raise FileError(name, "no such file", hint="check the path") from None
    except IsADirectoryError:
        raise FileError(name, "is a directory, not a video") from None
    except PermissionError:
        raise FileError(name, "permission denied", hint="check the file's permissions") from None
    except MemoryError:
        raise Mp4Error(
            name, "the sample tables are too large to be real", hint="the file is damaged"
        ) from None


def _read(f: BinaryIO, name: str, want: set[str], noise: NoiseFilter | None) -> VideoTrack:
    m = open_movie(f, name)
    w, h, nv = _video_info(m)
    duration = m.duration / m.timescale if m.timescale else 0.0
    spherical = _is_spherical(f, m)

    def done(
        kind: str, pts: list[TrackPoint], make: str, model: str, devs: list[str] | None = None
    ) -> VideoTrack:
        pts.sort(key=lambda p: p.time)
        raw = len(pts)
        if not pts:
            raise VideoGPSEmptyError(
                name,
                f"{_LABEL[kind]} telemetry found but it holds no GPS points (GPS off or no fix)",
                hint=_GPX_HINT,
            )
        if noise is not None and kind == "gopro":
            pts = noise(pts)
            if not pts:
                raise VideoGPSNoiseError(
                    name,
                    f"all {raw} GPS points are noise (no fix or poor precision)",
                    hint=_GPX_HINT + ", or relax --max-dop / --gps-fixes",
                )
        return VideoTrack(
            name,
            kind,
            pts,
            make,
            model,
            duration,
            _creation(m),
            raw,
            devs or [],
            w,
            h,
            nv,
            spherical,
        )

    if "gopro" in want:
        for t in m.tracks:
            if b"gpmd" in t.formats:
                pts, model, devs = _gopro(f, m, t)
                return done("gopro", pts, "GoPro", model, devs)
    if "camm" in want:
        for t in m.tracks:
            if b"camm" in t.formats:
                make, model = _camm.make_model(m.udta)
                return done("camm", _camm_points(f, m, t), make, model)
    if "blackvue" in want:
        gps, cprt = _blackvue_boxes(f, m)
        if gps is not None:
            model = _blackvue.model_of_cprt(cprt) if cprt else ""
            return done("blackvue", _blackvue.parse_gps_box(gps), "BlackVue", model)
    kinds = ", ".join(sorted(want))
    raise VideoGPSNotFoundError(
        name, f"no GPS telemetry in the video (looked for: {kinds})", hint=_GPX_HINT
    )


_LABEL = {"gopro": "GoPro GPMF", "camm": "CAMM", "blackvue": "BlackVue NMEA"}


def _is_spherical(f: BinaryIO, m: Movie) -> bool:
    """Whether the first video track declares 360° projection (``sv3d`` or a v1 spherical
    ``uuid`` box in its sample entry or trak)."""
    for t in m.tracks:
        if t.handler != b"vide":
            continue
        raw = bytes(m.box_bytes(t.box))
        return b"sv3d" in raw or b"equirectangular" in raw or b"GSpherical" in raw
    return False
