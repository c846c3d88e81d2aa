"""Video: telemetry of GoPro (GPMF), CAMM and BlackVue MP4s, CAMM rebuilds, frame sampling.

Public entry points:

* :func:`read_video` (a coroutine) / :func:`read_video_sync`: the GPS track, make, model and
  kind of one video, read with a streamed MP4 parser (only ``moov`` and the telemetry samples
  are read, never the video data);
* :class:`NoiseFilter`: the GPS noise filter mapillary_tools applies to GoPro tracks;
* :func:`camm_layout`: a streamed rebuild of a video as the CAMM MP4 Mapillary expects.
"""

from __future__ import annotations

import os

from ._filter import DEFAULT_FILTER, NoiseFilter
from ._mp4 import Mp4Error
from ._points import TrackPoint
from ._read import (
    FILETYPES,
    VideoGPSEmptyError,
    VideoGPSNoiseError,
    VideoGPSNotFoundError,
    VideoTrack,
    read_video_sync,
)
from ._write import CammLayout, camm_layout, write_camm

VIDEO_SUFFIXES = (".mp4", ".mov", ".360", ".lrv")


async def read_video(
    path: str | os.PathLike[str],
    filetypes: frozenset[str] | set[str] | None = None,
    noise: NoiseFilter | None = DEFAULT_FILTER,
) -> VideoTrack:
    """The GPS track, make, model and file type (``gopro``, ``camm``, ``blackvue``) of a video.

    The file is read in a worker thread. ``filetypes`` limits which telemetry kinds are
    looked for; ``noise`` (the default filter, or None for none) cleans GoPro tracks.
    Raises a :class:`~amly.errors.FileError` subclass naming the file, what is wrong and
    what to do: :class:`Mp4Error` (not a readable MP4), :class:`VideoGPSNotFoundError`,
    :class:`VideoGPSEmptyError`, :class:`VideoGPSNoiseError`.
    """
    import asyncio  # here: the sync API and the CLI do not pay for importing asyncio

    return await asyncio.to_thread(read_video_sync, path, filetypes, noise)


__all__ = [
    "FILETYPES",
    "VIDEO_SUFFIXES",
    "CammLayout",
    "Mp4Error",
    "NoiseFilter",
    "TrackPoint",
    "VideoGPSEmptyError",
    "VideoGPSNoiseError",
    "VideoGPSNotFoundError",
    "VideoTrack",
    "camm_layout",
    "read_video",
    "read_video_sync",
    "write_camm",
]
