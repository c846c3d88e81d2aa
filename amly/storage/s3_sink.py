"""A bucket prefix (``s3://bucket/prefix``) as a download sink.

Each file is one PUT (signed ``Content-MD5``, ETag checked): S3 makes an object visible only
once it is complete, so a reader never sees half a file, as with a folder's atomic rename.
The run's own state (the resume manifest, the index being built) lives in a local cache
folder (``data_dir()/s3/<hash of endpoint and location>``); the manifest is stored beside the
images (``PREFIX/.amly/manifest.sqlite3``) every :data:`MANIFEST_EVERY` stored files or
:data:`MANIFEST_SECONDS` seconds during the run (a consistent SQLite snapshot, taken and sent
off the event loop, one PUT: atomic) and on close; a run on another machine (or after the
cache was cleared) fetches it back on open, so resume works from the bucket alone and a run
killed with ``kill -9`` loses at most that window.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..config import data_dir
from ..journal import Journal
from .s3 import NoSuchKeyError, S3Client
from .s3_config import S3Config, S3Location
from .s3_multipart import DEFAULT_THRESHOLD, upload_file

STATE_DIR = ".amly"
MANIFEST_FILE = "manifest.sqlite3"
#: The manifest reaches the bucket after this many stored files (a snapshot of a manifest
#: of a million images is ~100 MB: not after every file) ...
MANIFEST_EVERY = 1000
#: ... or this many seconds, whichever comes first.
MANIFEST_SECONDS = 60.0

log = logging.getLogger("amly.storage")


class S3Sink:
    """Files stored under ``s3://bucket/prefix/<rel>``."""

    def __init__(
        self,
        location: str | S3Location,
        *,
        config: S3Config | None = None,
        state_root: Path | None = None,
        concurrency: int = 64,
    ) -> None:
        self.loc = location if isinstance(location, S3Location) else S3Location.parse(location)
        self.location = str(self.loc)
        self.config = config or S3Config.from_env()
        ident = f"{self.config.where}|{self.location}"
        root = state_root or data_dir() / "s3"
        self.state_dir = root / hashlib.sha256(ident.encode()).hexdigest()[:24]
        self.concurrency = concurrency
        self._client: S3Client | None = None
        self._stored = 0
        self._pushed_at = time.monotonic()
        self._push: asyncio.Task[None] | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3Sink used before open()")
        return self._client

    def key(self, rel: str) -> str:
        return self.loc.join(rel)

    async def open(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._client = S3Client(self.config, concurrency=self.concurrency)
        await self._client.__aenter__()
        # Fails early, with the S3 error's message, on a missing bucket, bad keys, wrong region.
        listing = self.client.list_objects(self.loc.bucket, self.key(f"{STATE_DIR}/"))
        async for _ in listing:
            break
        await listing.aclose()  # type: ignore[attr-defined]
        manifest = self.state_dir / MANIFEST_FILE
        if not manifest.exists():
            try:
                data = await self.client.get(
                    self.loc.bucket, self.key(f"{STATE_DIR}/{MANIFEST_FILE}")
                )
            except NoSuchKeyError:
                return
            await asyncio.to_thread(_write_new, manifest, data)

    async def exists(self, rel: str) -> bool:
        try:
            await self.client.head(self.loc.bucket, self.key(rel))
        except NoSuchKeyError:
            return False
        return True

    async def put(
        self,
        rel: str,
        data: bytes,
        *,
        before: Callable[[bytes], bytes] | None = None,
        after: Callable[[], None] | None = None,
    ) -> int:
        if before is not None:
            # The transform (EXIF written) and the MD5 in one thread hop.
            data, md5 = await asyncio.to_thread(_transform, before, data)
        else:
            md5 = hashlib.md5(data).digest()
        await self.client.put(
            self.loc.bucket, self.key(rel), data, content_type=_content_type(rel), md5=md5
        )
        if after is not None:
            await asyncio.to_thread(after)
            self._stored_one()
        return len(data)

    def _stored_one(self) -> None:
        """Count a recorded file; start a manifest upload when the window is full (one at a
        time: a slow PUT never piles up snapshots)."""
        self._stored += 1
        if self._push is not None and not self._push.done():
            return
        now = time.monotonic()
        if self._stored >= MANIFEST_EVERY or now - self._pushed_at >= MANIFEST_SECONDS:
            self._stored, self._pushed_at = 0, now
            self._push = asyncio.create_task(self._store_manifest(quiet=True))

    async def _store_manifest(self, *, quiet: bool = False) -> None:
        manifest = self.state_dir / MANIFEST_FILE
        try:
            data = await asyncio.to_thread(_snapshot, manifest)
            if data is not None:
                await self.client.put(
                    self.loc.bucket, self.key(f"{STATE_DIR}/{MANIFEST_FILE}"), data
                )
        except Exception as e:  # noqa: BLE001 - a periodic copy; the one on close reports
            if not quiet:
                raise
            log.warning("could not store the resume manifest in %s yet: %s", self.location, e)

    async def put_stream(self, rel: str, chunks: Iterable[bytes]) -> None:
        """Spool ``chunks`` to a local temp file (off the loop), then one PUT, or a multipart
        upload when it is large."""
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".put-", suffix=".tmp")
        try:
            size = await asyncio.to_thread(_spool, fd, chunks)
            if size <= DEFAULT_THRESHOLD:
                data = await asyncio.to_thread(Path(tmp).read_bytes)
                await self.client.put(
                    self.loc.bucket, self.key(rel), data, content_type=_content_type(rel)
                )
            else:
                with Journal(self.state_dir / "uploads.sqlite3") as j:
                    await upload_file(
                        self.client, self.loc.bucket, self.key(rel), tmp, journal=j,
                        content_type=_content_type(rel),
                    )  # fmt: skip
        finally:
            os.unlink(tmp)

    async def close(self) -> None:
        if self._client is None:
            return
        try:
            if self._push is not None:
                await asyncio.gather(self._push, return_exceptions=True)
            await self._store_manifest()
        finally:
            client, self._client = self._client, None
            await client.__aexit__(None, None, None)


def _transform(before: Callable[[bytes], bytes], data: bytes) -> tuple[bytes, bytes]:
    out = before(data)
    return out, hashlib.md5(out).digest()


def _spool(fd: int, chunks: Iterable[bytes]) -> int:
    n = 0
    with os.fdopen(fd, "wb") as f:
        for c in chunks:
            f.write(c)
            n += len(c)
    return n


def _snapshot(path: Path) -> bytes | None:
    """A consistent copy of the SQLite file at ``path`` while another connection writes it
    (WAL included: copying the file's bytes could miss or tear recent commits)."""
    if not path.exists():
        return None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".snapshot-", suffix=".tmp")
    os.close(fd)
    try:
        src = sqlite3.connect(path)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def _write_new(path: Path, data: bytes) -> None:
    from .._atomic import atomic_write

    atomic_write(path, data)


def _content_type(rel: str) -> str | None:
    """
    >>> _content_type("s/1.jpg"), _content_type("index.geojson"), _content_type("x.bin")
    ('image/jpeg', 'application/geo+json', None)
    """
    ext = rel.rpartition(".")[2].lower()
    return {
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "geojson": "application/geo+json",
        "json": "application/json",
        "gpx": "application/gpx+xml",
        "mp4": "video/mp4",
        "zip": "application/zip",
    }.get(ext)
