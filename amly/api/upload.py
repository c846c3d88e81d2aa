"""Uploading sequences: the resumable upload protocol, driven concurrently for a whole tree.

Per image: the description is injected into the JPEG bytes in memory (the file on disk is
untouched), the session key is ``mly_tools_<md5 of those bytes>.jpg``; the client asks the
server for its offset and POSTs the rest, getting a file handle. Per sequence: a manifest of
the handles in capture order is uploaded and ``finish_upload`` turns it into a cluster. A zip
of a sequence is one upload finished as ``file_type=zip``.

Every sequence of a run is in flight at once under ONE bound (``concurrency`` uploads at a
time, plus a small read-ahead of prepared images), so memory stays flat however large the
tree. Failures go through the one retry policy (:mod:`amly.api._retry`); a retry always asks
the server where to resume, so bytes the server has are never sent twice. The journal
(:mod:`amly.journal`) records handles and clusters as they happen: a rerun after a crash
skips finished sequences and images and never creates a second cluster (the manifest key is
derived from the sequence's checksum, and the server finishes a manifest only once).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import uuid
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp

from ..description import DESCRIPTION_FILE, describe, dumps, embeddable, parse_capture_time
from ..description import read_file as read_description_file
from ..errors import APIError, AuthError, FileError, MetadataError
from ..journal import Journal
from ..types import Sequence
from ._http import Transport, decode_json, error_from_response
from ._retry import Retry

log = logging.getLogger("amly.upload")

#: Uploads in flight at once (images of all sequences together). Measured on the local server
#: (bench/bench_upload.py): throughput is flat from 32 up at 0 ms latency, and 64 keeps a
#: 50 ms link busy while holding at most ~70 images in memory.
DEFAULT_CONCURRENCY = 64
#: Prepared images waiting for a free upload slot (disk reads overlap the network).
DEFAULT_READAHEAD = 8
#: Bytes of images held in memory at once, whatever their number (multi-MB photos).
DEFAULT_BUFFER_BYTES = 256 * 1024 * 1024
#: Read timeouts assume at least this upload speed (the official tool's 50 KiB/s) ...
MIN_UPLOAD_SPEED = 50 * 1024
#: ... plus this constant for the round trip and server processing.
TIMEOUT_BASE = 20.0
ZIP_CHUNK = 1 << 20

#: Finished handles recorded per journal transaction.
HANDLE_BATCH = 32

IMAGE_TABLE = "upload_images"
SEQUENCE_TABLE = "upload_sequences"


# -- what to upload ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UploadImage:
    """One image and the description to embed in the uploaded bytes (allowed keys only)."""

    path: str
    description: dict[str, Any]
    size: int = 0
    """The file's size when known (bounds the bytes held in memory); 0: unknown."""


@dataclasses.dataclass
class UploadSequence:
    """One future cluster: ordered images, or one zip file (``zip_path``)."""

    name: str
    images: list[UploadImage] = dataclasses.field(default_factory=list)
    organization_id: str | None = None
    zip_path: str | None = None

    @property
    def size(self) -> int:
        """Images in the sequence (a zip counts its entries)."""
        if self.zip_path is not None:
            return len(self.images) or 1
        return len(self.images)


# -- what happened -----------------------------------------------------------------------------


@dataclasses.dataclass
class SequenceResult:
    """The outcome of one sequence. ``skipped``: the journal says it was finished by an earlier
    run (``cluster_id`` is that run's). ``cached``: images not sent because the journal had
    their handle or the server already had every byte."""

    name: str
    cluster_id: str | None = None
    images: int = 0
    bytes: int = 0
    bytes_sent: int = 0
    retries: int = 0
    cached: int = 0
    skipped: bool = False
    error: str | None = None
    paths: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.cluster_id is not None


@dataclasses.dataclass
class UploadResult:
    """The outcome of a run: one entry per sequence, plus the files that failed."""

    sequences: list[SequenceResult] = dataclasses.field(default_factory=list)
    failures: list[FileError] = dataclasses.field(default_factory=list)
    duplicates: list[FileError] = dataclasses.field(default_factory=list)
    """Photos that processing in memory dropped as near-duplicates (not failures)."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and all(s.ok for s in self.sequences)

    @property
    def cluster_ids(self) -> list[str]:
        return [s.cluster_id for s in self.sequences if s.cluster_id]

    @property
    def images(self) -> int:
        return sum(s.images for s in self.sequences)

    @property
    def bytes_sent(self) -> int:
        return sum(s.bytes_sent for s in self.sequences)

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self.sequences)


@dataclasses.dataclass
class UploadProgress:
    """A snapshot handed to the progress callback after every image (totals grow while a
    processing pipeline is still feeding sequences in)."""

    images_done: int = 0
    images_total: int = 0
    bytes_done: int = 0
    sequences_done: int = 0
    sequences_total: int = 0


ProgressCallback = Callable[[UploadProgress], None]


# -- pure helpers ------------------------------------------------------------------------------


def session_key(data: bytes, suffix: str = ".jpg") -> str:
    """The content-addressed session key of exactly these bytes.

    >>> session_key(b"abc")
    'mly_tools_900150983cd24fb0d6963f7d28e17f72.jpg'
    """
    return f"mly_tools_{hashlib.md5(data).hexdigest()}{suffix}"


def sequence_checksum(keys: Iterable[str], organization_id: str | None = None) -> str:
    """Identity of a sequence: md5 over its ordered image session keys and the organization.
    The same images in the same order for the same organization are the same sequence.

    >>> sequence_checksum(["a", "b"]) == sequence_checksum(["a", "b"], None)
    True
    >>> sequence_checksum(["a", "b"]) != sequence_checksum(["b", "a"])
    True
    """
    md5 = hashlib.md5()
    for k in keys:
        md5.update(k.encode())
        md5.update(b"\n")
    md5.update(f"org={organization_id or ''}".encode())
    return md5.hexdigest()


def manifest_bytes(handles: Iterable[str]) -> bytes:
    """The manifest of a sequence: compact JSON, sorted keys, handles in capture order.

    >>> manifest_bytes(["h0", "h1"])
    b'{"image_handles":["h0","h1"],"upload_type":"images","version":"1"}'
    """
    doc = {"image_handles": list(handles), "upload_type": "images", "version": "1"}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def manifest_key(scope: str, checksum: str) -> str:
    """A manifest session key derived from the sequence, so that a retried or resumed finish
    re-uses the same manifest (and the server's finish stays idempotent).

    >>> k = manifest_key("s", "c"); k.startswith("uuid_") and k.endswith(".json") and len(k)
    42
    """
    return f"uuid_{hashlib.md5(f'{scope}|{checksum}'.encode()).hexdigest()}.json"


def read_timeout(nbytes: int) -> float:
    """Seconds allowed for sending ``nbytes``: the floor speed plus a constant.

    >>> read_timeout(0), read_timeout(50 * 1024 * 10)
    (20.0, 30.0)
    """
    return TIMEOUT_BASE + nbytes / MIN_UPLOAD_SPEED


def prepare_image(image: UploadImage) -> tuple[str, bytes]:
    """Read an image and embed its description in memory: ``(session key, bytes)``.
    Runs in a worker thread (file reads and md5 release the GIL)."""
    from ..metadata import inject_description

    try:
        with open(image.path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise FileError(image.path, f"cannot read: {e.strerror or e}") from e
    if not raw:
        raise MetadataError(image.path, "zero-byte file")
    data = inject_description(raw, dumps(embeddable(image.description)))
    return session_key(data), data


# -- inputs ------------------------------------------------------------------------------------


def from_sequence(seq: Sequence, organization_id: str | None = None) -> UploadSequence:
    """An :class:`amly.Sequence` (processed in memory) as an upload."""
    images = [UploadImage(m.path, embeddable(describe(m)), m.filesize) for m in seq.images]
    return UploadSequence(seq.uuid, images, organization_id or seq.organization_id)


def from_description_file(
    path: str | os.PathLike[str], organization_id: str | None = None
) -> tuple[list[UploadSequence], int]:
    """The sequences of a ``mapillary_image_description.json`` written by ``amly process`` or
    ``mapillary_tools process``, and how many entries were failures of that processing
    (they are not uploaded). Images are grouped by ``MAPSequenceUUID`` in capture order."""
    path = Path(path)
    try:
        entries = read_description_file(path)
    except (OSError, ValueError) as e:
        raise FileError(path, f"cannot read the description file: {e}") from e
    groups: dict[str, list[tuple[str, str, dict[str, Any], int]]] = {}
    errors = 0
    for entry in entries:
        if not isinstance(entry, dict) or "error" in entry or "filename" not in entry:
            errors += 1
            continue
        if entry.get("filetype", "image") != "image":
            continue  # videos are not supported by this uploader
        filename = str(entry["filename"])
        if not os.path.isabs(filename):
            filename = str(path.parent / filename)
        desc = embeddable(entry)
        key = str(entry.get("MAPSequenceUUID", ""))
        filesize = entry.get("filesize")
        size = filesize if isinstance(filesize, int) else 0
        groups.setdefault(key, []).append(
            (str(desc.get("MAPCaptureTime", "")), filename, desc, size)
        )
    sequences = []
    for name, items in groups.items():
        items.sort(key=lambda t: (_capture_sort_key(t[0]), t[1]))
        images = [UploadImage(f, d, n) for _t, f, d, n in items]
        sequences.append(UploadSequence(f"{path}#{name}", images, organization_id))
    return sequences, errors


def _capture_sort_key(t: str) -> str:
    try:
        return parse_capture_time(t).isoformat()
    except (ValueError, TypeError):
        return t


def from_zip(path: str | os.PathLike[str], organization_id: str | None = None) -> UploadSequence:
    """A zip of one sequence (entries ``0.jpg``, ``1.jpg``... and a comment with its
    ``sequence_md5sum``, as the official tool writes them). Checked before upload."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            comment = z.comment
    except (OSError, zipfile.BadZipFile) as e:
        raise FileError(path, f"not a readable zip file: {e}") from e
    try:
        meta = json.loads(comment.decode("utf-8")) if comment else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("sequence_md5sum"), str):
        raise FileError(
            path,
            "the zip has no sequence_md5sum comment",
            hint="zip a processed sequence with 'mapillary_tools zip' or upload the folder",
        )
    if not names or not all(n.lower().endswith(".jpg") for n in names):
        raise FileError(path, "a sequence zip holds only .jpg entries")
    images = [UploadImage(f"{path}!{n}", {}) for n in names]
    return UploadSequence(path, images, organization_id, zip_path=path)


def find_inputs(
    paths: Iterable[str | os.PathLike[str]], *, subfolders: bool = False
) -> tuple[list[Path], list[Path], list[Path]]:
    """Sort command-line paths into description files, zip files and folders (or photos) to
    process.

    A folder with a description file is taken as processed; with ``subfolders`` each
    subfolder that has one counts too (zip files inside a folder are found the same way).
    A folder without any is returned for processing in memory.
    """
    descs: list[Path] = []
    zips: list[Path] = []
    raw: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            suffix = p.suffix.lower()
            if suffix in (".jpg", ".jpeg"):
                raw.append(p)  # a single photo: processed in memory like a folder
            else:
                (zips if suffix == ".zip" else descs).append(p)
        elif p.is_dir():
            if (p / DESCRIPTION_FILE).is_file():
                descs.append(p / DESCRIPTION_FILE)
                continue
            walker = sorted(p.rglob("*")) if subfolders else sorted(p.iterdir())
            found_zips = [z for z in walker if z.suffix.lower() == ".zip" and z.is_file()]
            found_descs = (
                [d for d in walker if d.name == DESCRIPTION_FILE and d.is_file()]
                if subfolders
                else []
            )
            zips += found_zips
            descs += found_descs
            if not found_zips and not found_descs:
                raw.append(p)
        else:
            raise FileError(p, "no such file or folder")
    return descs, zips, raw


# -- the engine --------------------------------------------------------------------------------


class _Budget:
    """Bytes of images in memory. One waiter (the producer); an image larger than the whole
    budget still goes, alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def acquire(self, n: int) -> None:
        while self.used and self.used + n > self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._freed.set()


class _SeqState:
    def __init__(self, seq: UploadSequence) -> None:
        self.seq = seq
        self.keys: list[str | None] = [None] * len(seq.images)
        self.result = SequenceResult(seq.name, paths=[i.path for i in seq.images])
        self.failed = 0


class Uploader:
    """Uploads sequences through a :class:`Transport`. One instance per run.

    ``scope`` names the account and upload service in journal keys (handles of one service
    mean nothing to another). ``journal=None`` uploads without resume records.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        scope: str,
        journal: Journal | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        readahead: int = DEFAULT_READAHEAD,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        reupload: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.transport = transport
        self.buffer_bytes = buffer_bytes
        self.scope = scope
        self.journal = journal
        self.images_table = journal.table(IMAGE_TABLE) if journal else None
        self.sequences_table = journal.table(SEQUENCE_TABLE) if journal else None
        self.concurrency = max(1, concurrency)
        self.readahead = max(0, readahead)
        self.reupload = reupload
        self.progress_cb = progress
        self.progress = UploadProgress()
        self.result = UploadResult()
        self._fatal: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handles: list[tuple[str, str]] = []
        self._producer: asyncio.Task[None] | None = None
        # Created in run(): semaphores bind to the running loop on Python 3.10.
        self._net: asyncio.Semaphore
        self._slots: asyncio.Semaphore
        self._budget: _Budget
        self._pool: concurrent.futures.ThreadPoolExecutor
        self._journal_pool: concurrent.futures.ThreadPoolExecutor

    # -- orchestration ------------------------------------------------------------------------

    async def run(
        self, sequences: Iterable[UploadSequence] | AsyncIterable[UploadSequence]
    ) -> UploadResult:
        """Upload every sequence (an async iterable may still be producing: uploads start at
        once). Raises :class:`AuthError`/:class:`APIError` when the run cannot go on; per-file
        problems end up in ``result.failures`` and the sequence's ``error``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._net = asyncio.Semaphore(self.concurrency)
        self._slots = asyncio.Semaphore(self.concurrency + self.readahead)
        self._budget = _Budget(self.buffer_bytes)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(4, (os.cpu_count() or 2) + 1), thread_name_prefix="amly-upload"
        )
        self._journal_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="amly-journal"
        )
        self._producer = asyncio.create_task(self._produce(sequences))
        try:
            try:
                await self._producer
            except asyncio.CancelledError:
                if self._fatal is None:
                    raise
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            for t in list(self._tasks):
                t.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._flush_handles()
            self._journal_pool.shutdown(wait=True)  # every recorded handle is on disk
            self.result.seconds = loop.time() - start
        if self._fatal is not None:
            raise self._fatal
        return self.result

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # a bug or an interruption, not a per-file problem: stop the run and re-raise it
            self._abort(task.exception())  # type: ignore[arg-type]

    def _abort(self, err: BaseException) -> None:
        """Stop the whole run (bad token, server gone): no retry storm from other tasks."""
        if self._fatal is not None:
            return
        self._fatal = err
        current = asyncio.current_task()
        for t in [*self._tasks, self._producer]:
            if t is not None and t is not current and not t.done():
                t.cancel()

    async def _produce(
        self, sequences: Iterable[UploadSequence] | AsyncIterable[UploadSequence]
    ) -> None:
        async for seq in _aiter(sequences):
            if self._fatal is not None:
                return
            state = _SeqState(seq)
            self.result.sequences.append(state.result)
            self.progress.sequences_total += 1
            self.progress.images_total += seq.size
            if seq.zip_path is not None:
                await self._slots.acquire()
                self._spawn(self._zip(state))
                continue
            futures = []
            for i, image in enumerate(seq.images):
                # Bounds the bytes held in memory: a slot is released once its image is sent.
                await self._budget.acquire(image.size)
                await self._slots.acquire()
                if self._fatal is not None:
                    self._slots.release()
                    self._budget.release(image.size)
                    return
                futures.append(self._spawn(self._image(state, i, image)))
            self._spawn(self._finish(state, futures))

    def _notify(self, images: int = 0, nbytes: int = 0, sequences: int = 0) -> None:
        p = self.progress
        p.images_done += images
        p.bytes_done += nbytes
        p.sequences_done += sequences
        if self.progress_cb is not None:
            self.progress_cb(dataclasses.replace(p))

    # -- one image ----------------------------------------------------------------------------

    async def _image(self, state: _SeqState, index: int, image: UploadImage) -> str | None:
        try:
            loop = asyncio.get_running_loop()
            try:
                key, data, handle, fresh = await loop.run_in_executor(
                    self._pool, self._prepare, image
                )
            except FileError as e:
                self._file_failed(state, e)
                return None
            except Exception as e:  # a broken JPEG the injector cannot parse
                self._file_failed(state, MetadataError(image.path, f"cannot embed: {e}"))
                return None
            state.keys[index] = key
            if handle is not None:
                state.result.cached += 1
            else:
                try:
                    async with self._net:
                        handle, sent = await self._upload_bytes(key, data, state, fresh=fresh)
                except APIError as e:
                    if not self._per_file(e):
                        self._abort(e)
                        return None
                    self._file_failed(state, FileError(image.path, f"rejected: {e.message}"))
                    return None
                self._journal_put_handle(key, handle)
                if not sent:
                    state.result.cached += 1  # the server had it all (offset == size)
            state.result.images += 1
            state.result.bytes += len(data)
            self._notify(images=1, nbytes=len(data))
            return handle
        finally:
            self._slots.release()
            self._budget.release(image.size)

    @staticmethod
    def _per_file(err: APIError) -> bool:
        """A 4xx the server will not accept for this file (not auth, not exhaustion)."""
        return not isinstance(err, AuthError) and err.status is not None and 400 <= err.status < 500

    def _file_failed(self, state: _SeqState, err: FileError) -> None:
        state.failed += 1
        self.result.failures.append(err)
        log.warning("%s", err)

    def _jkey(self, key: str) -> str:
        return f"{self.scope}:{key}"

    def _prepare(self, image: UploadImage) -> tuple[str, bytes, str | None, bool]:
        """In a worker thread: the bytes and session key, and what the journal knows: the
        handle of a finished upload, or that this upload was never started. Then the server
        holds nothing of it from us and the first POST need not ask for the offset (a round
        trip saved per image); the start is recorded first, so after a crash the rerun asks."""
        key, data = prepare_image(image)
        if self.images_table is None or self.reupload:
            return key, data, None, False
        jkey = self._jkey(key)
        value = self.images_table.get(jkey)
        if isinstance(value, str) and value:
            return key, data, value, False
        if value is None:
            self.images_table.put(jkey, "")  # started, not finished
            return key, data, None, True
        return key, data, None, False

    def _journal_handle(self, key: str) -> str | None:
        if self.images_table is None or self.reupload:
            return None
        value = self.images_table.get(self._jkey(key))
        return value if isinstance(value, str) and value else None

    def _journal_put_handle(self, key: str, handle: str) -> None:
        if self.images_table is None:
            return
        self._handles.append((self._jkey(key), handle))
        if len(self._handles) >= HANDLE_BATCH:
            self._flush_handles()

    def _flush_handles(self) -> None:
        """Record finished handles in one transaction on the journal's own thread (off the
        event loop, in order). A crash before a flush loses no work: the rerun finds those
        uploads 'started', asks the server (offset == size) and gets the handle back
        without sending a byte."""
        batch, self._handles = self._handles, []
        if batch and self.images_table is not None:
            self._journal_pool.submit(self.images_table.put_many, batch)

    # -- the protocol -------------------------------------------------------------------------

    async def _fetch_offset(self, session: aiohttp.ClientSession, url: str) -> int:
        self.transport.stats["requests"] += 1
        async with session.get(
            url,
            headers=self.transport.auth_headers(),
            timeout=aiohttp.ClientTimeout(total=self.transport.timeout),
        ) as resp:
            if resp.status >= 400:
                raise await error_from_response(resp)
            payload = decode_json(await resp.read(), resp.status)
        offset = payload.get("offset") if isinstance(payload, dict) else None
        if not isinstance(offset, int) or offset < 0:
            raise Retry(f"bad offset answer: {payload!r:.100}")
        return offset

    async def _upload_bytes(
        self, key: str, data: bytes, state: _SeqState, *, fresh: bool = False
    ) -> tuple[str, int]:
        """One resumable upload of bytes in memory."""
        view = memoryview(data)
        return await self._resumable(key, len(data), lambda offset: view[offset:], state, fresh)

    async def _resumable(
        self,
        key: str,
        size: int,
        body_at: Callable[[int], Any],
        state: _SeqState,
        fresh: bool = False,
    ) -> tuple[str, int]:
        """The resumable protocol: ask the server's offset, send the rest from there. Every
        retry asks again, so bytes the server has are never sent twice; a retry after which
        the offset grew restores the attempt budget (the upload is advancing). ``fresh``: the
        journal says we never started this upload, so the first POST starts at 0 without
        asking (a server that has bytes anyway answers 412, and the retry asks).

        Returns the file handle and the bytes sent (0: the server already had them all)."""
        url = f"{self.transport.endpoints.upload}/{key}"
        session = self.transport.session_for(url)
        seen = {"offset": -1, "moved": False, "sent": 0}

        async def attempt(n: int) -> str:
            offset = 0 if fresh and n == 0 else await self._fetch_offset(session, url)
            if offset > size:
                raise APIError(f"server holds more of {key} than its {size} bytes", status=409)
            if offset > seen["offset"] >= 0:
                seen["moved"] = True
            seen["offset"] = max(seen["offset"], offset)
            left = size - offset
            headers = {
                **self.transport.auth_headers(),
                "Offset": str(offset),
                "X-Entity-Name": key,
                "Content-Type": "application/octet-stream",
            }
            self.transport.stats["bytes_sent"] += left
            state.result.bytes_sent += left
            seen["sent"] += left
            return await self._post(session, url, body_at(offset), headers, left)

        def progressed() -> bool:
            moved, seen["moved"] = seen["moved"], False
            return bool(moved)

        handle = await self.transport.retrying(
            attempt,
            surface="upload",
            what=f"upload of {key}",
            on_retry=self._counter(state),
            progressed=progressed,
        )
        return handle, int(seen["sent"])

    async def _post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: Any,
        headers: dict[str, str],
        size: int,
    ) -> str:
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=read_timeout(size)),
        ) as resp:
            if resp.status >= 400:
                raise await error_from_response(resp)
            payload = decode_json(await resp.read(), resp.status)
        handle = payload.get("h") if isinstance(payload, dict) else None
        if not isinstance(handle, str) or not handle:
            raise Retry(f"upload answer without a handle: {payload!r:.100}")
        return handle

    @staticmethod
    def _counter(state: _SeqState) -> Callable[[int, BaseException, float], None]:
        def on_retry(n: int, err: BaseException, wait: float) -> None:
            state.result.retries += 1

        return on_retry

    async def _finish_upload(self, handle: str, file_type: str, org: str | None) -> str:
        body: dict[str, Any] = {"file_handle": handle, "file_type": file_type}
        if org:
            body["organization_id"] = org
        answer = await self.transport.graph_post("finish_upload", body)
        cluster = answer.get("cluster_id") if isinstance(answer, dict) else None
        if cluster is None:
            raise APIError(f"finish_upload answered without a cluster_id: {answer!r:.200}")
        return str(cluster)

    # -- one sequence -------------------------------------------------------------------------

    async def _finish(self, state: _SeqState, futures: list[asyncio.Task[str | None]]) -> None:
        handles = await asyncio.gather(*futures)
        res = state.result
        try:
            if state.failed:
                res.error = f"{state.failed} of {len(futures)} images failed; rerun to finish"
                return
            if not futures:
                res.error = "empty sequence"
                return
            keys = [k for k in state.keys if k is not None]
            org = state.seq.organization_id
            checksum = sequence_checksum(keys, org)
            await self._finish_sequence(state, checksum, "mly_bundle_manifest", org, handles)
        except APIError as e:
            if not self._per_file(e):
                self._abort(e)
                return
            res.error = f"finish failed: {e.message}"
        finally:
            self._notify(sequences=1)

    async def _finish_sequence(
        self,
        state: _SeqState,
        checksum: str,
        file_type: str,
        org: str | None,
        handles: list[str | None] | None,
    ) -> None:
        """Manifest (for images) and ``finish_upload``, recorded before and after, so a
        rerun resumes at the right step with the same manifest."""
        res = state.result
        jkey = self._jkey(checksum)
        record: dict[str, Any] = {}
        if self.sequences_table is not None:
            record = dict(self.sequences_table.get(jkey) or {})
        if record.get("cluster_id"):
            if not self.reupload:
                res.cluster_id = record["cluster_id"]
                res.skipped = True
                return
            record = {}  # a new cluster: a fresh manifest
        if file_type == "zip":
            record["handle"] = handles[0] if handles else None
        else:
            mkey = record.get("manifest_key") or (
                f"uuid_{uuid.uuid4().hex}.json"
                if self.reupload
                else manifest_key(self.scope, checksum)
            )
            record["manifest_key"] = mkey
            self._record(jkey, record)
            async with self._net:
                record["handle"], _sent = await self._upload_bytes(
                    mkey, manifest_bytes(h for h in handles or [] if h), state
                )
        self._record(jkey, record)
        res.cluster_id = await self._finish_upload(record["handle"], file_type, org)
        record["cluster_id"] = res.cluster_id
        self._record(jkey, record)

    def _record(self, jkey: str, record: dict[str, Any]) -> None:
        if self.sequences_table is not None:
            self.sequences_table.put(jkey, record)

    # -- a zip --------------------------------------------------------------------------------

    async def _zip(self, state: _SeqState) -> None:
        path = state.seq.zip_path
        assert path is not None
        res = state.result
        try:
            loop = asyncio.get_running_loop()
            try:
                key, size = await loop.run_in_executor(self._pool, _file_key, path, ".zip")
            except OSError as e:
                self._file_failed(state, FileError(path, f"cannot read: {e.strerror or e}"))
                res.error = "unreadable zip"
                return
            org = state.seq.organization_id
            checksum = sequence_checksum([key], org)
            handle = self._journal_handle(key)
            if handle is None and not self._finished(checksum):
                async with self._net:
                    handle, _sent = await self._upload_file(key, path, size, state)
                self._journal_put_handle(key, handle)
            elif handle is not None:
                res.cached += 1
            res.images += state.seq.size
            res.bytes += size
            await self._finish_sequence(state, checksum, "zip", org, [handle])
            self._notify(images=state.seq.size, nbytes=size, sequences=1)
        except APIError as e:
            if not self._per_file(e):
                self._abort(e)
                return
            res.error = f"upload failed: {e.message}"
            self._file_failed(state, FileError(path, f"rejected: {e.message}"))
        finally:
            self._slots.release()

    def _finished(self, checksum: str) -> bool:
        if self.sequences_table is None or self.reupload:
            return False
        record = self.sequences_table.get(self._jkey(checksum)) or {}
        return bool(record.get("cluster_id"))

    async def _upload_file(
        self, key: str, path: str, size: int, state: _SeqState
    ) -> tuple[str, int]:
        """A resumable upload streamed from a (large) file on disk."""
        return await self._resumable(key, size, lambda offset: _file_chunks(path, offset), state)


def _file_key(path: str, suffix: str) -> tuple[str, int]:
    md5 = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(ZIP_CHUNK):
            md5.update(chunk)
            size += len(chunk)
    return f"mly_tools_{md5.hexdigest()}{suffix}", size


async def _file_chunks(path: str, offset: int) -> AsyncIterator[bytes]:
    """The file's bytes from ``offset``, read in a thread chunk by chunk (bounded memory)."""
    f = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(f.seek, offset)
        while chunk := await asyncio.to_thread(f.read, ZIP_CHUNK):
            yield chunk
    finally:
        f.close()


async def _aiter(
    items: Iterable[UploadSequence] | AsyncIterable[UploadSequence],
) -> AsyncIterator[UploadSequence]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
