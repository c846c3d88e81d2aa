"""A bucket prefix as an upload source: ``amly upload s3://bucket/prefix`` sends on what
``amly upload ... --to s3://bucket/prefix`` (or any tool writing the official description
file beside the photos) staged there.

The prefix is listed lazily, page by page (a million-object prefix never becomes a list);
each ``mapillary_image_description.json`` found becomes that folder's sequences, exactly as
a local description file does. Photo bytes are fetched when the upload engine prepares them,
in its worker threads, nothing staged on local disk: each worker thread keeps its own event
loop and S3 connection pool (keep-alive), so a read is one GET under the one retry policy.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import logging
import posixpath
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..description import DESCRIPTION_FILE
from ..errors import FileError, MetadataError
from ..metadata.read import read_image_from
from ..types import ImageMeta, Sequence, UploadSequence
from .s3 import EmptyPrefixError, NoSuchKeyError, S3Client
from .s3_config import S3Config, S3Location

if TYPE_CHECKING:
    from ..pipeline.process import GroupResult, Options, Report

log = logging.getLogger("amly.storage")

#: Threads reading photo headers (each a ranged GET or two: latency-bound, not CPU-bound).
READ_THREADS = 16


def is_s3(path: object) -> bool:
    """
    >>> is_s3("s3://b/p"), is_s3("/data/s3:/x")
    (True, False)
    """
    return isinstance(path, str) and path.startswith("s3://")


async def s3_sequences(
    url: str, organization_id: str | None = None, *, config: S3Config | None = None
) -> AsyncIterator[UploadSequence]:
    """The sequences staged under ``url``; a prefix without any description file is an
    error (exit 2) naming what to do."""
    from ..pipeline.inputs import sequences_from_entries

    loc = S3Location.parse(url)
    found = False
    async with S3Client(config or S3Config.from_env()) as s3:
        async for obj in s3.list_objects(loc.bucket, loc.prefix):
            if posixpath.basename(obj.key) != DESCRIPTION_FILE:
                continue
            found = True
            where = f"s3://{loc.bucket}/{obj.key}"
            raw = await s3.get(loc.bucket, obj.key)
            try:
                entries = json.loads(raw)
                if not isinstance(entries, list):
                    raise ValueError("not a JSON list")
            except ValueError as e:
                raise FileError(where, f"cannot read the description file: {e}") from None
            folder = f"s3://{loc.bucket}/{posixpath.dirname(obj.key)}"
            seqs, _errors = sequences_from_entries(entries, folder, where, organization_id)
            for seq in seqs:
                yield seq
    if not found:
        raise EmptyPrefixError(
            f"{loc}: no {DESCRIPTION_FILE} under this prefix",
            hint="stage photos with 'amly upload TREE --to s3://...' (or process them and "
            "copy the description file beside them) first",
        )


async def s3_processed(
    url: str, options: Options, report: Report, *, config: S3Config | None = None
) -> AsyncIterator[Sequence]:
    """Photos in a bucket processed in memory as a local folder is (``process-and-upload``,
    or ``upload`` of a prefix without description files). Nothing is written anywhere."""
    async for group in s3_groups(url, options, config=config):
        report.add(group)
        for seq in group.sequences:
            yield seq


async def s3_groups(
    url: str, options: Options, *, config: S3Config | None = None
) -> AsyncIterator[GroupResult]:
    """:func:`amly.pipeline.aiter_groups` for a bucket prefix: folder by folder
    (``/``-delimited listing, subfolders when ``options.recursive``), EXIF from ranged GETs
    in worker threads, then the same sequence logic (``process_folder``)."""
    from ..pipeline.process import process_folder
    from ..pipeline.scan import Folder, is_image_name

    loc = S3Location.parse(url)
    loop = asyncio.get_running_loop()
    found = False
    pool = concurrent.futures.ThreadPoolExecutor(READ_THREADS, thread_name_prefix="amly-s3read")
    try:
        async with S3Client(config or S3Config.from_env()) as s3:
            pending = [
                loc.prefix if not loc.prefix or loc.prefix.endswith("/") else f"{loc.prefix}/"
            ]
            while pending:
                prefix = pending.pop(0)
                objs, subs = await s3.list_dir(loc.bucket, prefix)
                photos = [o for o in objs if is_image_name(posixpath.basename(o.key))]
                if photos:
                    found = True
                    urls = [f"s3://{loc.bucket}/{o.key}" for o in photos]
                    results = await asyncio.gather(
                        *(
                            loop.run_in_executor(pool, _read_or_error, u, o.size, options)
                            for u, o in zip(urls, photos, strict=True)
                        )
                    )
                    folder = Folder(str(loc), f"s3://{loc.bucket}/{prefix}", urls)
                    group = await loop.run_in_executor(
                        None, process_folder, folder, results, options
                    )
                    yield group
                if options.recursive:
                    pending[:0] = subs
    finally:
        # Not awaited (this may run while the generator is finalized): a thread waits for
        # the pool's reads to end, then closes its connections.
        threading.Thread(target=_release, args=(pool,), name="amly-s3release").start()
    if not found:
        raise EmptyPrefixError(
            f"{loc}: no JPEG photos under this prefix",
            hint="check the prefix (keys are case-sensitive); add --subfolders for photos "
            "in sub-prefixes",
        )


def _read_or_error(url: str, size: int, options: Options) -> ImageMeta | FileError:
    try:
        return read_meta(url, size, options)
    except FileError as e:
        return e


# -- blocking reads from worker threads ---------------------------------------------------------


class _ThreadReader:
    """One event loop and one :class:`S3Client` per worker thread (keep-alive connections)."""

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.loop = asyncio.new_event_loop()
        self.client = S3Client(S3Config.from_env(), concurrency=4)
        self.loop.run_until_complete(self.client.__aenter__())

    def read(
        self, bucket: str, key: str, start: int | None = None, end: int | None = None
    ) -> bytes:
        return self.loop.run_until_complete(self.client.get(bucket, key, start=start, end=end))

    def head(self, bucket: str, key: str) -> dict[str, str]:
        return self.loop.run_until_complete(self.client.head(bucket, key))

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.client.__aexit__(None, None, None))
        finally:
            self.loop.close()


_local = threading.local()
_readers: list[_ThreadReader] = []
_lock = threading.Lock()


def _reader() -> _ThreadReader:
    reader: _ThreadReader | None = getattr(_local, "reader", None)
    if reader is None:
        close_idle_readers()  # those of an earlier run's pool, whose threads have ended
        reader = _ThreadReader()
        _local.reader = reader
        with _lock:
            _readers.append(reader)
    return reader


def close_idle_readers() -> int:
    """Close the S3 clients of worker threads that have ended (a finished source's or run's
    pool): their keep-alive connections would otherwise stay open until the process exits,
    a leak for a long-lived program. Returns how many were closed."""
    with _lock:
        idle = [r for r in _readers if not r.thread.is_alive()]
        _readers[:] = [r for r in _readers if r.thread.is_alive()]
    for r in idle:
        try:
            r.close()
        except Exception as e:  # noqa: BLE001 - closing idle connections is best effort
            log.debug("closing an idle S3 reader: %s", e)
    return len(idle)


def _release(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    """Once the pool's threads have ended, close their clients."""
    pool.shutdown(wait=True, cancel_futures=True)
    close_idle_readers()


def read_meta(url: str, size: int, options: Options) -> ImageMeta:
    """The metadata of the photo at ``url`` (``size`` bytes) from ranged GETs of its head
    (and its last bytes: the end-of-image check), from a worker thread."""
    loc = S3Location.parse(url)
    reader = _reader()

    def pread(n: int, offset: int) -> bytes:
        if n <= 0 or offset >= size:
            return b""
        return reader.read(loc.bucket, loc.prefix, offset, min(size, offset + n) - 1)

    try:
        meta = read_image_from(url, size, pread, tz=options.tz)
    except NoSuchKeyError:
        raise FileError(url, "the object is gone", hint="list the prefix again") from None
    return options.work(meta) if options.work is not None else meta


def read_object(url: str) -> bytes:
    """The bytes of ``s3://bucket/key``, from a worker thread (never from the event loop).
    A missing object is a per-file error, like a missing local file."""
    loc = S3Location.parse(url)
    reader = _reader()
    try:
        data = reader.read(loc.bucket, loc.prefix)
    except NoSuchKeyError:
        raise FileError(url, "the object is gone", hint="stage it again, then rerun") from None
    if not data:
        raise MetadataError(url, "zero-byte object")
    return data


class ObjectReader:
    """A read-only, seekable file over ranged GETs of one object, for worker threads: the MP4
    reader and the CAMM rebuild read a video in a bucket through it, no local copy. Each read
    uses the calling thread's client (a rebuild's reads hop between threads). Small reads
    (box headers) are served from one cached block; large ones are one GET each.

    No ``fileno``: readers that would ``fstat`` a local file ask :meth:`seek` for the size.
    """

    #: Bytes fetched for a small read (an MP4 box header is 8 to 16 bytes).
    BLOCK = 64 * 1024

    def __init__(self, url: str) -> None:
        self.url = url
        loc = S3Location.parse(url)
        self.bucket, self.key = loc.bucket, loc.prefix
        try:
            headers = _reader().head(self.bucket, self.key)
        except NoSuchKeyError:
            raise FileError(url, "the object is gone", hint="stage it again, then rerun") from None
        length = {k.lower(): v for k, v in headers.items()}.get("content-length", "0")
        self.size = int(length)
        self.pos = 0
        self._buf = b""
        self._buf_at = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.pos, self.size)[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def _get(self, start: int, end: int) -> bytes:
        try:
            return _reader().read(self.bucket, self.key, start, end)
        except NoSuchKeyError:
            raise FileError(self.url, "the object is gone", hint="stage it again") from None

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.pos
        n = left if n < 0 else min(n, left)
        if n <= 0:
            return b""
        at = self.pos - self._buf_at
        if 0 <= at and at + n <= len(self._buf):
            data = self._buf[at : at + n]
        elif n >= self.BLOCK:
            data = self._get(self.pos, self.pos + n - 1)
        else:
            self._buf_at = self.pos
            self._buf = self._get(self.pos, min(self.size, self.pos + self.BLOCK) - 1)
            data = self._buf[:n]
        self.pos += len(data)
        return data

    def close(self) -> None:
        self._buf = b""

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_readers() -> None:
    with _lock:
        readers, _readers[:] = list(_readers), []
    for r in readers:
        try:
            r.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
