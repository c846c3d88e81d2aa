"""Where files come from and go to: sources and sinks. A local folder is the first
implementation (:mod:`.local`); object storage is another implementation of the same seam.

A :class:`Sink` is where a download writes: the engine never touches a path itself, so the
same download writes into a folder or a bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from .local import LocalFolder, open_sink

__all__ = ["LocalFolder", "Sink", "open_sink"]


class Sink(Protocol):
    """Where downloaded files are stored, by relative name (``"<sequence>/<id>.jpg"``).

    ``state_dir`` is a local folder for what the run keeps for itself (the resume manifest,
    the index being written); a sink that is not a local folder keeps it in a local cache and
    stores copies beside the files as it sees fit.
    """

    #: Shown to people (a folder path, an ``s3://`` URL).
    location: str
    state_dir: Path

    async def open(self) -> None:
        """Create what is needed; remove what a killed run left half-done."""
        ...

    async def exists(self, rel: str) -> bool:
        """Whether a finished file is stored under ``rel``."""
        ...

    async def put(
        self,
        rel: str,
        data: bytes,
        *,
        before: Callable[[bytes], bytes] | None = None,
        after: Callable[[], None] | None = None,
    ) -> int:
        """Store ``data`` (first transformed by ``before``, e.g. EXIF written into it) under
        ``rel`` atomically: a reader never sees half a file. ``after`` runs once it is stored
        (records it as finished). Returns the bytes stored. ``before``/``after`` run off the
        event loop."""
        ...

    async def put_stream(self, rel: str, chunks: Iterable[bytes]) -> None:
        """Store the bytes of ``chunks`` (an index built from a file in ``state_dir``) under
        ``rel`` atomically; ``chunks`` is iterated off the event loop."""
        ...

    async def close(self) -> None: ...
