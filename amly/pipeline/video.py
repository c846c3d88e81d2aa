"""Videos in the pipeline: find them, read their telemetry (in a process pool when there are
many), let a GPX/NMEA track fill or replace it, check them as the official tool does, and
turn each into one description entry or one upload.

A video's capture clock is said, not guessed: ``gps`` when the track carries GPS time (GoPro
GPSU/GPS9, CAMM type 6, BlackVue RMC), else ``camera`` (the ``mvhd`` time, which some
cameras, the GoPro MAX among them, write in local time labelled UTC).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import FileError
from ..types import Point, UploadSequence
from ..video._filter import DEFAULT_FILTER, NoiseFilter

VIDEO_SUFFIXES = (".mp4", ".mov", ".360")
VIDEO_KINDS = ("gopro", "camm", "blackvue")


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """How videos are processed. ``kinds``: telemetry looked for; ``noise``: the GoPro noise
    filter; ``gpx_mode``: with a track, ``fill`` gives it to videos without usable
    telemetry, ``replace`` to every video; ``max_speed_kmh``/``stationary_radius``: the
    official checks (None: no speed check)."""

    kinds: frozenset[str] = frozenset(VIDEO_KINDS)
    noise: NoiseFilter = DEFAULT_FILTER
    gpx_mode: str = "fill"
    max_speed_kmh: float | None = 400.0
    stationary_radius: float = 10.0


def parse_filetypes(text: str) -> tuple[bool, frozenset[str]]:
    """``--filetypes`` as (images wanted, video kinds wanted); ``video`` means every kind.

    >>> images, kinds = parse_filetypes("image,video")
    >>> images, sorted(kinds)
    (True, ['blackvue', 'camm', 'gopro'])
    >>> parse_filetypes("gopro")
    (False, frozenset({'gopro'}))
    """
    items = {t.strip().lower() for t in text.split(",") if t.strip()}
    bad = items - {"image", "video", *VIDEO_KINDS}
    if bad:
        raise ValueError(f"unknown file types: {', '.join(sorted(bad))}")
    kinds = set(VIDEO_KINDS) if "video" in items else items & set(VIDEO_KINDS)
    return "image" in items, frozenset(kinds)


def is_video_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(VIDEO_SUFFIXES)


def find_videos(
    paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True
) -> list[tuple[str, str]]:
    """``(root, video path)`` for every video under ``paths``: roots as given, folders
    depth-first by name, files by name; hidden ones skipped, linked folders not followed.
    A stack, not recursion, as :func:`amly.pipeline.scan` (hostile trees are deep)."""
    from .scan import walk

    out: list[tuple[str, str]] = []
    for p in paths:
        root = os.path.abspath(os.fspath(p))
        if os.path.isfile(root):
            if is_video_name(os.path.basename(root)):
                out.append((root, root))
            continue
        for _folder, files in walk(root, recursive, is_video_name):
            out.extend((root, f) for f in files)
    return out


@dataclasses.dataclass
class VideoResult:
    """One processed video: its entry (or its error) and which clock its times come from."""

    root: str
    path: str
    entry: dict[str, Any] | None = None
    error: FileError | None = None
    clock: str = "gps"
    source: str = "video"  # where the track came from: "video" or "gpx"
    make: str = ""
    model: str = ""
    points: list[Any] = dataclasses.field(default_factory=list)

    def description_entry(self) -> dict[str, Any]:
        if self.entry is not None:
            return self.entry
        assert self.error is not None
        return {
            "filename": os.path.abspath(self.error.path),
            "filetype": "video",
            "error": self.error.to_description_error(),
        }


def process_video(
    root: str,
    path: str,
    vopts: VideoOptions,
    track: list[Point] | None = None,
    offset: float = 0.0,
    keep_points: bool = True,
) -> VideoResult:
    """Read, fill from ``track`` as ``vopts.gpx_mode`` says, check, describe one video."""
    from ..video import read_video_sync
    from ..video._describe import check_video, gpx_track, video_entry, video_start
    from ..video._mp4 import Mp4Error
    from ..video._read import VideoGPSEmptyError, VideoGPSNoiseError, VideoGPSNotFoundError

    res = VideoResult(root, path)
    try:
        try:
            video = read_video_sync(path, vopts.kinds, vopts.noise)
        except (VideoGPSNotFoundError, VideoGPSEmptyError, VideoGPSNoiseError):
            if not track:
                raise
            bare = _bare(path)
            if bare is None:
                raise
            # aligned on the mvhd time ("camera"), or, without one, from the track's start
            video, clock = gpx_track(bare, track, offset=-offset)
            res.source = "gpx"
            if not video.points:
                raise FileError(
                    path,
                    "the GPX track has no point within the video's time",
                    hint="check --offset-time (the video's clock is its mvhd time)",
                ) from None
        else:
            _start, clock = video_start(video)
            if track and vopts.gpx_mode == "replace":
                video, clock = gpx_track(video, track, offset=-offset)
                res.source = "gpx"
        res.clock = clock
        err = check_video(
            video,
            max_speed_kmh=vopts.max_speed_kmh if vopts.max_speed_kmh else float("inf"),
            stationary_radius=vopts.stationary_radius,
        )
        if err is not None:
            raise err
        res.entry = video_entry(video)
        res.make, res.model = video.make, video.model
        if keep_points:  # an upload needs them; a description file has them in its entry
            res.points = video.points
    except Mp4Error as e:
        res.error = e
    except FileError as e:
        res.error = e
    return res


def _bare(path: str) -> Any:
    """The video's duration and mvhd time without telemetry (None if it is not an MP4)."""
    from ..video._mp4 import Mp4Error, open_movie
    from ..video._read import VideoTrack, _creation

    try:
        with open(path, "rb") as f:
            m = open_movie(f, path)
    except (Mp4Error, OSError):
        return None
    return VideoTrack(
        path, "video", [], "", "", m.duration / m.timescale if m.timescale else 0.0, _creation(m)
    )


def _one(args: tuple[str, str, VideoOptions, list[Point] | None, float, bool]) -> VideoResult:
    return process_video(*args)


def iter_videos(
    videos: list[tuple[str, str]],
    vopts: VideoOptions,
    *,
    track: list[list[Point]] | None = None,
    offset: float = 0.0,
    workers: int | None = None,
    keep_points: bool = True,
) -> Iterator[VideoResult]:
    """Process ``videos`` (from :func:`find_videos`), in order; a process pool when there
    are enough of them to pay for it. ``keep_points=False``: results carry only their
    description entries (nothing large crosses back from the pool)."""
    flat = [p for seg in track for p in seg] if track else None
    jobs = [(root, path, vopts, flat, offset, keep_points) for root, path in videos]
    n = workers or os.cpu_count() or 1
    if len(jobs) < 8 or n < 2:
        for j in jobs:
            yield _one(j)
        return
    ctx = multiprocessing.get_context("fork") if hasattr(os, "fork") else None
    with concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as ex:
        yield from ex.map(_one, jobs, chunksize=max(1, len(jobs) // (n * 4)))


def video_upload(res: VideoResult, organization_id: str | None = None) -> UploadSequence:
    """A processed video as one upload (a CAMM rebuild with its track)."""
    from ..video._upload import VideoSource

    assert res.entry is not None
    video = VideoSource(res.path, res.points, res.make, res.model, str(res.entry["filetype"]))
    return UploadSequence(f"video:{res.path}", [], organization_id, video=video)
