"""The upload engine: many sequences in flight at once under one bound, resumable, exactly
once, whatever the service. The protocol of a service is a :class:`Target`
(:class:`amly.services.mapillary.MapillaryTarget` first); the engine owns everything else:
bounded concurrency and memory, the journal, per-file failures, progress, stopping the run.

Every sequence of a run is in flight at once under ONE bound (``concurrency`` transfers at a
time, plus a small read-ahead of prepared images), and the bytes of images held in memory are
bounded too (:class:`~amly.net.flow.ByteBudget`), so memory stays flat however large the tree.
The journal (:mod:`amly.journal`) records, per target scope (service + account), each
image's receipt (a Mapillary file handle...) and each sequence's progress: a rerun after a
crash skips finished sequences and images and never creates a second cluster or set.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import logging
import os
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, Protocol

from ..errors import APIError, AuthError, FileError, MetadataError
from ..journal import Journal
from ..net.flow import ByteBudget
from ..pipeline.inputs import aiter
from ..types import UploadImage, UploadSequence

log = logging.getLogger("amly.upload")

#: Uploads in flight at once (images of all sequences together). Measured on the local server
#: (bench/bench_upload.py): throughput is flat from 32 up at 0 ms latency, and 64 keeps a
#: 50 ms link busy while holding at most ~70 images in memory.
DEFAULT_CONCURRENCY = 64
#: Prepared images waiting for a free upload slot (disk reads overlap the network).
DEFAULT_READAHEAD = 8
#: Bytes of images held in memory at once, whatever their number (multi-MB photos).
DEFAULT_BUFFER_BYTES = 256 * 1024 * 1024
#: Finished receipts recorded per journal transaction.
RECEIPT_BATCH = 32

IMAGE_TABLE = "upload_images"
SEQUENCE_TABLE = "upload_sequences"


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
    video: bool = False
    """The sequence is one video (``images`` counts it as 1)."""

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
    processed: int = 0
    """Photos read by processing in memory (0 when every input was processed already)."""
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


# -- the seam ----------------------------------------------------------------------------------


class FileRejected(APIError):
    """A target's answer for a file the service refused for good and keeps track of (Panoramax
    records rejected files in its upload set): the file is a failure with the service's
    reason, but its sequence still finishes with the others."""


def sequence_checksum(keys: Iterable[str], organization_id: str | None = None) -> str:
    """Identity of a sequence: md5 over its ordered image keys and the organization. The same
    images in the same order for the same organization are the same sequence.

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


class SequenceState:
    """One sequence while it uploads: what a :class:`Target` may read (``seq``), count into
    (``result``: ``bytes_sent``, ``retries``) and keep across runs (``record``, saved in the
    journal by :meth:`save`)."""

    def __init__(self, seq: UploadSequence, save: Callable[[str, dict[str, Any]], None]) -> None:
        self.seq = seq
        self.keys: list[str | None] = [None] * len(seq.images)
        paths = [seq.video.path] if seq.video is not None else [i.path for i in seq.images]
        self.result = SequenceResult(seq.name, paths=paths, video=seq.video is not None)
        self.failed = 0
        self.record: dict[str, Any] = {}
        self.record_key = ""
        self._save = save
        #: ``--reupload``: finish anew even if an earlier run finished these same images.
        self.reupload = False
        self.ready: asyncio.Future[None] | None = None

    def save(self) -> None:
        """Persist :attr:`record` now (before and after each step of a finish)."""
        if self.record_key:
            self._save(self.record_key, self.record)

    def count_retry(self, n: int, err: BaseException, wait: float) -> None:
        """An ``on_retry`` callback for the transport: retries show in the summary."""
        self.result.retries += 1


class Target(Protocol):
    """A service (or store) that sequences are uploaded to. The engine calls, in order:
    :meth:`open` once; per sequence :meth:`begin`; per image :meth:`prepare` (in a worker
    thread) and :meth:`send` (or :meth:`prepare_file` and :meth:`send_file` for a zip or a video);
    :meth:`finish`
    once every image of the sequence has a receipt.

    A target raises :class:`~amly.AuthError` to stop the run, :class:`~amly.APIError` with a
    4xx ``status`` to fail one file, :class:`~amly.FileError` for a file it cannot use.
    Receipts (and what :meth:`begin`/:meth:`finish` keep in ``state.record``) are journaled by
    the engine, so a rerun never sends a finished image and never finishes a sequence twice.
    """

    #: Shown in summaries ("mapillary", "panoramax", "s3").
    name: str

    async def open(self) -> str:
        """Check the service and the credentials; return the journal scope (service and
        account: receipts of one mean nothing to another)."""
        ...

    def prepare(self, image: UploadImage) -> tuple[str, bytes]:
        """In a worker thread: the bytes to send for ``image`` and their content key."""
        ...

    async def begin(self, state: SequenceState) -> None:
        """Before the first image of a sequence is sent (create an upload set...); may keep
        what a rerun needs in ``state.record`` and call ``state.save()``."""
        ...

    async def send(
        self, state: SequenceState, key: str, data: bytes, *, fresh: bool
    ) -> tuple[str, int]:
        """Send one prepared image; return its receipt and the bytes sent (0: the server had
        it already). ``fresh``: the journal says this key was never started, so nothing of it
        can be on the server from us."""
        ...

    def prepare_file(self, seq: UploadSequence) -> tuple[str, int, Any]:
        """In a worker thread, for a sequence that is one file (a zip, a video): its content
        key, the size it will have when sent, and what :meth:`send_file` streams from (a
        path, or a video's rebuild plan). :class:`~amly.FileError` for a file this target
        does not take (Panoramax takes no zips; only Mapillary takes videos)."""
        ...

    async def send_file(
        self, state: SequenceState, key: str, prepared: Any, size: int
    ) -> tuple[str, int]:
        """Send a file :meth:`prepare_file` prepared, streamed (never whole in memory);
        as :meth:`send`."""
        ...

    async def finish(
        self, state: SequenceState, checksum: str, receipts: list[str], file_type: str
    ) -> str:
        """Turn a sequence's receipts into what the service keeps (a cluster, a completed
        upload set); return its id. Called again after a crash, it must not make a second one:
        keep progress in ``state.record`` (``state.save()``)."""
        ...


# -- the engine --------------------------------------------------------------------------------


class Uploader:
    """Uploads sequences to a :class:`Target`. One instance per run. ``journal=None``
    uploads without resume records; ``reupload`` ignores what the journal says is done."""

    def __init__(
        self,
        target: Target,
        *,
        journal: Journal | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        readahead: int = DEFAULT_READAHEAD,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        reupload: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.target = target
        self.buffer_bytes = buffer_bytes
        self.scope = ""
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
        self._receipts: list[tuple[str, str]] = []
        self._producer: asyncio.Task[None] | None = None
        # Created in run(): semaphores bind to the running loop on Python 3.10.
        self._net: asyncio.Semaphore
        self._slots: asyncio.Semaphore
        self._budget: ByteBudget
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
        self.scope = await self.target.open()
        self._net = asyncio.Semaphore(self.concurrency)
        self._slots = asyncio.Semaphore(self.concurrency + self.readahead)
        self._budget = ByteBudget(self.buffer_bytes)
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
            self._flush_receipts()
            self._journal_pool.shutdown(wait=True)  # every recorded receipt is on disk
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

    def _new_state(self, seq: UploadSequence) -> SequenceState:
        state = SequenceState(seq, self._save_record)
        state.reupload = self.reupload
        state.record_key = self._jkey(f"begin:{seq.name}")
        if self.sequences_table is not None and not self.reupload:
            state.record = dict(self.sequences_table.get(state.record_key) or {})
        return state

    async def _begin(self, state: SequenceState) -> None:
        try:
            await self.target.begin(state)
        except APIError as e:
            if not self._per_file(e):
                self._abort(e)
            raise

    async def _produce(
        self, sequences: Iterable[UploadSequence] | AsyncIterable[UploadSequence]
    ) -> None:
        async for seq in aiter(sequences):
            if self._fatal is not None:
                return
            state = self._new_state(seq)
            self.result.sequences.append(state.result)
            self.progress.sequences_total += 1
            self.progress.images_total += seq.size
            if seq.video is not None or seq.zip_path is not None:
                await self._slots.acquire()
                self._spawn(self._single(state))
                continue
            state.ready = asyncio.ensure_future(self._begin(state))
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

    async def _image(self, state: SequenceState, index: int, image: UploadImage) -> str | None:
        try:
            loop = asyncio.get_running_loop()
            try:
                key, data, receipt, fresh = await loop.run_in_executor(
                    self._pool, self._prepare, image
                )
            except FileError as e:
                self._file_failed(state, e)
                return None
            except Exception as e:  # a broken JPEG the injector cannot parse
                self._file_failed(state, MetadataError(image.path, f"cannot embed: {e}"))
                return None
            state.keys[index] = key
            if receipt is not None:
                state.result.cached += 1
            else:
                try:
                    assert state.ready is not None
                    await asyncio.shield(state.ready)
                    async with self._net:
                        receipt, sent = await self.target.send(state, key, data, fresh=fresh)
                except FileRejected as e:
                    self.result.failures.append(FileError(image.path, f"rejected: {e.message}"))
                    log.warning("%s: rejected: %s", image.path, e.message)
                    return None
                except APIError as e:
                    if not self._per_file(e):
                        self._abort(e)
                        return None
                    self._file_failed(state, FileError(image.path, f"rejected: {e.message}"))
                    return None
                self._journal_put_receipt(key, receipt)
                if not sent:
                    state.result.cached += 1  # the server had it all already
            state.result.images += 1
            state.result.bytes += len(data)
            self._notify(images=1, nbytes=len(data))
            return receipt
        finally:
            self._slots.release()
            self._budget.release(image.size)

    @staticmethod
    def _per_file(err: APIError) -> bool:
        """A 4xx the server will not accept for this file (not auth, not exhaustion)."""
        return not isinstance(err, AuthError) and err.status is not None and 400 <= err.status < 500

    def _file_failed(self, state: SequenceState, err: FileError) -> None:
        state.failed += 1
        self.result.failures.append(err)
        log.warning("%s", err)

    def _jkey(self, key: str) -> str:
        return f"{self.scope}:{key}"

    def _prepare(self, image: UploadImage) -> tuple[str, bytes, str | None, bool]:
        """In a worker thread: the bytes and key, and what the journal knows: the receipt of
        a finished upload, or that this upload was never started. Then the server holds
        nothing of it from us and the target may skip asking (a round trip saved per image);
        the start is recorded first, so after a crash the rerun asks."""
        key, data = self.target.prepare(image)
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

    def _journal_receipt(self, key: str) -> str | None:
        if self.images_table is None or self.reupload:
            return None
        value = self.images_table.get(self._jkey(key))
        return value if isinstance(value, str) and value else None

    def _journal_put_receipt(self, key: str, receipt: str) -> None:
        if self.images_table is None:
            return
        self._receipts.append((self._jkey(key), receipt))
        if len(self._receipts) >= RECEIPT_BATCH:
            self._flush_receipts()

    def _flush_receipts(self) -> None:
        """Record finished receipts in one transaction on the journal's own thread (off the
        event loop, in order). A crash before a flush loses no work: the rerun finds those
        uploads 'started' and asks the target, which asks the server (Mapillary: offset ==
        size gives the handle back without sending a byte)."""
        batch, self._receipts = self._receipts, []
        if batch and self.images_table is not None:
            self._journal_pool.submit(self.images_table.put_many, batch)

    def _save_record(self, key: str, record: dict[str, Any]) -> None:
        if self.sequences_table is not None:
            self.sequences_table.put(key, record)

    # -- one sequence -------------------------------------------------------------------------

    async def _finish(self, state: SequenceState, futures: list[asyncio.Task[str | None]]) -> None:
        receipts = await asyncio.gather(*futures)
        res = state.result
        try:
            if state.ready is not None and state.ready.done() and state.ready.exception():
                err = state.ready.exception()
                res.error = f"could not start: {getattr(err, 'message', err)}"
                return
            if state.failed:
                res.error = f"{state.failed} of {len(futures)} images failed; rerun to finish"
                return
            if not futures:
                res.error = "empty sequence"
                return
            keys = [k for k in state.keys if k is not None]
            checksum = sequence_checksum(keys, state.seq.organization_id)
            done = [r for r in receipts if r]
            await self._finish_sequence(state, checksum, done, "images")
        except APIError as e:
            if not self._per_file(e):
                self._abort(e)
                return
            res.error = f"finish failed: {e.message}"
        finally:
            self._notify(sequences=1)

    async def _finish_sequence(
        self, state: SequenceState, checksum: str, receipts: list[str], file_type: str
    ) -> None:
        """The target's finish, recorded against the sequence's checksum before and after, so
        a rerun resumes at the right step and never finishes twice."""
        res = state.result
        begun = state.record
        state.record_key = self._jkey(checksum)
        record: dict[str, Any] = {}
        if self.sequences_table is not None:
            record = dict(self.sequences_table.get(state.record_key) or {})
        if record.get("cluster_id"):
            if not self.reupload:
                res.cluster_id = record["cluster_id"]
                res.skipped = True
                return
            record = {}  # a new cluster: start the finish over
        state.record = {**begun, **record}
        res.cluster_id = await self.target.finish(state, checksum, receipts, file_type)
        state.record["cluster_id"] = res.cluster_id
        state.save()

    def _finished(self, checksum: str) -> bool:
        if self.sequences_table is None or self.reupload:
            return False
        record = self.sequences_table.get(self._jkey(checksum)) or {}
        return bool(record.get("cluster_id"))

    # -- a sequence that is one file (a zip, a video) --------------------------------------------

    async def _single(self, state: SequenceState) -> None:
        """One file sent as it is prepared (a zip as it is; a video rebuilt as CAMM, streamed)
        and finished alone; journaled like images (receipt by key, finish by checksum)."""
        seq = state.seq
        path = seq.video.path if seq.video is not None else seq.zip_path
        assert path is not None
        file_type = "mly_camm_video" if seq.video is not None else "zip"
        res = state.result
        try:
            loop = asyncio.get_running_loop()
            try:
                key, size, prepared = await loop.run_in_executor(
                    self._pool, self.target.prepare_file, seq
                )
            except FileError as e:
                self._file_failed(state, e)
                res.error = e.message
                return
            except OSError as e:
                self._file_failed(state, FileError(path, f"cannot read: {e.strerror or e}"))
                res.error = "unreadable file"
                return
            except ValueError as e:  # a video whose track has no point inside it
                self._file_failed(state, FileError(path, f"cannot rebuild: {e}"))
                res.error = "nothing to send"
                return
            state.keys = [key]
            checksum = sequence_checksum([key], seq.organization_id)
            receipt = self._journal_receipt(key)
            if receipt is None and not self._finished(checksum):
                await self.target.begin(state)
                async with self._net:
                    receipt, sent = await self.target.send_file(state, key, prepared, size)
                self._journal_put_receipt(key, receipt)
                if not sent:
                    res.cached += 1
            elif receipt is not None:
                res.cached += 1
            res.images += seq.size
            res.bytes += size
            await self._finish_sequence(state, checksum, [receipt] if receipt else [], file_type)
            self._notify(images=seq.size, nbytes=size, sequences=1)
        except APIError as e:
            if not self._per_file(e):
                self._abort(e)
                return
            res.error = f"upload failed: {e.message}"
            self._file_failed(state, FileError(path, f"rejected: {e.message}"))
        finally:
            self._slots.release()
