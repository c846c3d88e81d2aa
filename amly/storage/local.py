"""A local folder as a download sink: atomic writes (temp file + fsync + rename), temp files
of a killed run removed on open, the run's own state in ``OUT/.amly/``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .._atomic import atomic_write

if TYPE_CHECKING:
    from . import Sink

STATE_DIR = ".amly"


class LocalFolder:
    """A folder on a local (or shared) filesystem.

    >>> import asyncio, tempfile
    >>> async def main(d):
    ...     sink = LocalFolder(d)
    ...     await sink.open()
    ...     n = await sink.put("s/1.jpg", b"abc", before=lambda b: b + b"!")
    ...     return n, await sink.exists("s/1.jpg"), await sink.exists("s/2.jpg")
    >>> asyncio.run(main(tempfile.mkdtemp()))
    (4, True, False)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self.location = str(self.root)
        self.state_dir = self.root / STATE_DIR

    def _open(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A killed run can leave atomic_write's temp files behind: never a visible half file,
        # but litter (nothing records them).
        for tmp in self.root.glob("*/.amly-*.tmp"):
            tmp.unlink(missing_ok=True)

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    async def exists(self, rel: str) -> bool:
        # A stat is cheaper than a thread hop: done on the loop.
        return (self.root / rel).is_file()

    def _put(
        self,
        rel: str,
        data: bytes,
        before: Callable[[bytes], bytes] | None,
        after: Callable[[], None] | None,
    ) -> int:
        if before is not None:
            data = before(data)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        if after is not None:
            after()
        return len(data)

    async def put(
        self,
        rel: str,
        data: bytes,
        *,
        before: Callable[[bytes], bytes] | None = None,
        after: Callable[[], None] | None = None,
    ) -> int:
        # One thread hop for transform, write and record: the event loop keeps transferring.
        return await asyncio.to_thread(self._put, rel, data, before, after)

    async def put_stream(self, rel: str, chunks: Iterable[bytes]) -> None:
        await asyncio.to_thread(atomic_write, self.root / rel, chunks)

    async def close(self) -> None:
        return None


def open_sink(location: str | os.PathLike[str]) -> Sink:
    """The sink for a command-line ``--out``: ``s3://bucket/prefix`` is object storage
    (:class:`~amly.storage.s3_sink.S3Sink`), anything else a local folder."""
    if isinstance(location, str) and location.startswith("s3://"):
        from .s3_sink import S3Sink

        return S3Sink(location)
    return LocalFolder(location)
