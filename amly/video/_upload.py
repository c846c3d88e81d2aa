"""A video as an upload: its CAMM rebuild, content key and bytes from any offset.

The key is ``mly_tools_<md5 of the rebuilt bytes>.mp4``, as the official uploader names it:
the same video with the same track is the same upload, so a rerun resumes at the server's
offset and finishes the same handle. Hashing reads the video once; sending reads it again,
one buffer at a time (memory stays flat whatever its size).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ._points import TrackPoint
from ._write import CammLayout, camm_layout

CHUNK = 1 << 20


@dataclass
class VideoSource:
    """A video to upload with the track to write into its CAMM track."""

    path: str
    points: list[TrackPoint] = field(default_factory=list)
    make: str = ""
    model: str = ""
    filetype: str = "video"


def video_key(video: VideoSource) -> tuple[str, int, CammLayout]:
    """In a worker thread: the rebuild's session key, size and layout."""
    layout = camm_layout(video.path, video.points, video.make, video.model)
    md5 = hashlib.md5()
    n = 0
    for b in layout.iter_bytes(0, CHUNK):
        md5.update(b)
        n += len(b)
    assert n == layout.size
    return f"mly_tools_{md5.hexdigest()}.mp4", layout.size, layout


async def layout_chunks(layout: CammLayout, offset: int) -> AsyncIterator[bytes]:
    """The rebuild's bytes from ``offset``, each buffer read in a worker thread."""
    it = layout.iter_bytes(offset, CHUNK)
    sentinel = b""
    try:
        while True:
            b = await asyncio.to_thread(next, it, sentinel)
            if not b:
                return
            yield b
    finally:
        it.close()
