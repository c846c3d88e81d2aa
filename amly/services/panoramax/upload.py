"""Uploading sequences to Panoramax: one upload set per sequence, photos many at once.

Each sequence amly decided on (its own split and duplicate filtering) becomes one upload set
created with ``no_split``/``no_deduplication``, so the server keeps exactly that sequence. Every
photo of every sequence is in flight under ONE bound (``concurrency`` POSTs at a time, a small
read-ahead, a byte budget), as Mapillary uploads are. The file on disk is sent as it is; where
amly's processing changed the position, time or heading (GPX geotagging, interpolated
directions...), the difference goes as ``override_*`` fields, which the server writes into its
copy.

Resume goes through the journal only: the set id of each sequence (recorded right after
creation) and each file's outcome. A rerun skips completed sets; for an unfinished one it asks
the server which files it already holds (by content md5) and sends only the others. A 409 (the
server has these bytes) is success. Rejections carry the server's reason and do not stop the
other photos; auth failures and a server gone beyond retries stop the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import logging
import os
from collections.abc import AsyncIterable, Callable, Iterable
from datetime import timezone
from typing import Any

from ...api.upload import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_READAHEAD,
    ProgressCallback,
    SequenceResult,
    UploadImage,
    UploadProgress,
    UploadResult,
    UploadSequence,
    _aiter,
    _Budget,
    read_timeout,
    sequence_checksum,
)
from ...description import parse_capture_time
from ...errors import APIError, AuthError, FileError
from ...journal import Journal
from .api import FileAnswer, PanoramaxAPI

log = logging.getLogger("amly.panoramax")

#: Photos in flight at once. A geovisio instance serves a handful of requests at a time (its
#: gunicorn workers x threads); more in flight only queues there (bench/bench_panoramax.py).
DEFAULT_CONCURRENCY = 16
SET_TABLE = "panoramax_sets"
FILE_TABLE = "panoramax_files"
#: Seconds between two looks at a set's preparation with ``wait``.
WAIT_POLL = 0.5
#: ``wait`` gives up on a set whose preparation has not moved for this long (a stuck server
#: queue must not hang the run; the set stays complete and a later ``--wait`` rerun follows it).
WAIT_STALL = 600.0


@dataclasses.dataclass
class PanoramaxSequenceResult(SequenceResult):
    """A sequence's outcome on Panoramax: ``cluster_id`` is the upload set's id."""

    collections: list[str] = dataclasses.field(default_factory=list)
    rejected: int = 0
    ready: bool = False
    broken: int = 0


@dataclasses.dataclass
class WaitProgress:
    """Server-side preparation, all sets of the run together."""

    prepared: int = 0
    total: int = 0
    broken: int = 0


def image_key(image: UploadImage) -> str:
    """What identifies a photo before reading it: its path, size and the capture time amly
    gives it (a re-processed folder with other decisions is another sequence)."""
    return f"{os.path.abspath(image.path)}|{image.size}|{image.description.get('MAPCaptureTime')}"


def overrides(image: UploadImage, read: Callable[[str], Any] | None = None) -> dict[str, str]:
    """The ``override_*`` fields for what amly's description says differently from the file's
    own EXIF (nothing for a photo amly did not change: the server then rewrites nothing)."""
    from ...metadata import read_image

    d = image.description
    try:
        meta = (read or read_image)(image.path)
    except Exception:  # unreadable EXIF: say everything we know
        meta = None
    out: dict[str, str] = {}
    lat, lon = d.get("MAPLatitude"), d.get("MAPLongitude")
    if isinstance(lat, (int, float)) and isinstance(lon, (int, float)):
        if (
            meta is None
            or meta.lat is None
            or meta.lon is None
            or abs(meta.lat - lat) > 1e-7
            or abs(meta.lon - lon) > 1e-7
        ):
            out["override_latitude"] = repr(float(lat))
            out["override_longitude"] = repr(float(lon))
    ct = d.get("MAPCaptureTime")
    if isinstance(ct, str):
        t = parse_capture_time(ct)
        if (
            meta is None
            or meta.capture_time is None
            or abs((meta.capture_time - t).total_seconds()) > 0.001
        ):
            out["override_capture_time"] = (
                t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            )
    h = d.get("MAPCompassHeading")
    heading = h.get("TrueHeading") if isinstance(h, dict) else None
    if isinstance(heading, (int, float)):
        if meta is None or meta.heading is None or abs(meta.heading - heading) > 0.01:
            out["override_Exif.GPSInfo.GPSImgDirection"] = f"{int(heading % 360 * 1000)}/1000"
            out["override_Exif.GPSInfo.GPSImgDirectionRef"] = "T"
    return out


class _SetState:
    def __init__(self, seq: UploadSequence) -> None:
        self.seq = seq
        self.result = PanoramaxSequenceResult(seq.name, paths=[i.path for i in seq.images])
        self.set_id: str | None = None
        self.server_md5: set[str] = set()
        self.failed = 0


class PanoramaxUploader:
    """Uploads sequences to one Panoramax instance. One instance per run.

    ``scope`` names the instance and account in journal keys. ``wait``: after completing a set,
    follow the server's preparation until every picture is ready (``wait_progress`` hears of it).
    """

    def __init__(
        self,
        api: PanoramaxAPI,
        *,
        scope: str,
        journal: Journal | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        readahead: int = DEFAULT_READAHEAD,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        reupload: bool = False,
        progress: ProgressCallback | None = None,
        wait: bool = False,
        wait_progress: Callable[[WaitProgress], None] | None = None,
    ) -> None:
        self.api = api
        self.scope = scope
        self.sets = journal.table(SET_TABLE) if journal else None
        self.files = journal.table(FILE_TABLE) if journal else None
        self.concurrency = max(1, concurrency)
        self.readahead = max(0, readahead)
        self.buffer_bytes = buffer_bytes
        self.reupload = reupload
        self.progress_cb = progress
        self.progress = UploadProgress()
        self.wait = wait
        self.wait_cb = wait_progress
        self.waiting: dict[str, tuple[int, int, int]] = {}
        self.result = UploadResult()
        self._fatal: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._net: asyncio.Semaphore
        self._slots: asyncio.Semaphore
        self._budget: _Budget
        self._pool: concurrent.futures.ThreadPoolExecutor

    # -- orchestration --------------------------------------------------------------------------

    async def run(
        self, sequences: Iterable[UploadSequence] | AsyncIterable[UploadSequence]
    ) -> UploadResult:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._net = asyncio.Semaphore(self.concurrency)
        self._slots = asyncio.Semaphore(self.concurrency + self.readahead)
        self._budget = _Budget(self.buffer_bytes)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(4, (os.cpu_count() or 2) + 1), thread_name_prefix="amly-pmx"
        )
        producer = asyncio.ensure_future(self._produce(sequences))
        self._tasks.add(producer)
        producer.add_done_callback(self._task_done)
        try:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            for t in list(self._tasks):
                t.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)
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
            self._abort(task.exception())  # type: ignore[arg-type]

    def _abort(self, err: BaseException) -> None:
        """Stop the whole run (bad token, server gone): no retry storm from other tasks."""
        if self._fatal is not None:
            return
        self._fatal = err
        current = asyncio.current_task()
        for t in list(self._tasks):
            if t is not current and not t.done():
                t.cancel()

    async def _produce(
        self, sequences: Iterable[UploadSequence] | AsyncIterable[UploadSequence]
    ) -> None:
        async for seq in _aiter(sequences):
            if self._fatal is not None:
                return
            if seq.zip_path is not None:
                self.result.failures.append(
                    FileError(
                        seq.zip_path,
                        "Panoramax takes photos, not sequence zips",
                        hint="upload the folder the zip was made from",
                    )
                )
                continue
            state = _SetState(seq)
            self.result.sequences.append(state.result)
            self.progress.sequences_total += 1
            self.progress.images_total += len(seq.images)
            self._spawn(self._sequence(state))

    def _notify(self, images: int = 0, nbytes: int = 0, sequences: int = 0) -> None:
        p = self.progress
        p.images_done += images
        p.bytes_done += nbytes
        p.sequences_done += sequences
        if self.progress_cb is not None:
            self.progress_cb(dataclasses.replace(p))

    def _jkey(self, *parts: str) -> str:
        return ":".join((self.scope, *parts))

    # -- one sequence ---------------------------------------------------------------------------

    async def _sequence(self, state: _SetState) -> None:
        res = state.result
        seq = state.seq
        try:
            if not seq.images:
                res.error = "empty sequence"
                return
            checksum = sequence_checksum(image_key(i) for i in seq.images)
            jkey = self._jkey("set", checksum)
            record: dict[str, Any] = {}
            if self.sets is not None and not self.reupload:
                record = dict(self.sets.get(jkey) or {})
            if record.get("completed"):
                res.cluster_id = state.set_id = record["id"]
                res.skipped = True
                res.images = len(seq.images)
                res.cached = len(seq.images)
                self._notify(images=len(seq.images))
                if self.wait:
                    await self._wait_ready(state)
                return
            if record.get("id"):
                state.set_id = record["id"]
                # an earlier run stopped part-way: ask what the server holds (by content md5)
                files = await self.api.upload_set_files(record["id"])
                state.server_md5 = {str(f.get("content_md5")) for f in files}
            else:
                answer = await self.api.create_upload_set(self._set_body(seq, checksum))
                state.set_id = str(answer["id"])
                record = {"id": state.set_id, "completed": False}
                self._record(jkey, record)
            res.cluster_id = state.set_id
            futures = []
            for image in seq.images:
                await self._budget.acquire(image.size)
                await self._slots.acquire()
                if self._fatal is not None:
                    self._slots.release()
                    self._budget.release(image.size)
                    return
                futures.append(self._spawn(self._image(state, image)))
            await asyncio.gather(*futures)
            if state.failed:
                res.error = f"{state.failed} of {len(seq.images)} photos failed; rerun to finish"
                return
            assert state.set_id is not None
            await self.api.complete(state.set_id)
            record["completed"] = True
            self._record(jkey, record)
            if self.wait:
                await self._wait_ready(state)
        except APIError as e:
            if isinstance(e, AuthError) or e.status is None or not 400 <= e.status < 500:
                self._abort(e)
                return
            res.error = f"upload set failed: {e.message}"
        finally:
            self._notify(sequences=1)

    def _set_body(self, seq: UploadSequence, checksum: str) -> dict[str, Any]:
        first = seq.images[0].path
        title = os.path.basename(os.path.dirname(os.path.abspath(first))) or seq.name
        return {
            "title": title,
            "estimated_nb_files": len(seq.images),
            "sort_method": "time-asc",
            # amly already split and deduplicated: the server must keep this sequence as is
            "no_split": True,
            "no_deduplication": True,
            "metadata": {"amly_sequence": seq.name, "amly_checksum": checksum},
        }

    def _record(self, jkey: str, record: dict[str, Any]) -> None:
        if self.sets is not None:
            self.sets.put(jkey, record)

    # -- one photo ------------------------------------------------------------------------------

    async def _image(self, state: _SetState, image: UploadImage) -> None:
        res = state.result
        try:
            loop = asyncio.get_running_loop()
            try:
                data, md5, fields = await loop.run_in_executor(self._pool, _prepare, image)
            except OSError as e:
                self._failed(state, FileError(image.path, f"cannot read: {e.strerror or e}"))
                return
            assert state.set_id is not None
            fkey = self._jkey("file", state.set_id, md5)
            done = self.files.get(fkey) if self.files is not None else None
            if md5 in state.server_md5 or (isinstance(done, dict) and done.get("picture_id")):
                res.cached += 1
            else:
                async with self._net:
                    answer: FileAnswer = await self.api.add_file(
                        state.set_id,
                        os.path.basename(image.path),
                        data,
                        fields,
                        timeout=read_timeout(len(data)),
                        on_retry=self._retry_counter(res),
                    )
                res.bytes_sent += len(data)
                if answer.rejected is not None:
                    res.rejected += 1
                    self._failed(
                        state,
                        FileError(image.path, f"rejected by Panoramax: {answer.rejected}"),
                        counts_for_set=False,
                    )
                    return
                if answer.status == 409:
                    res.cached += 1
                if self.files is not None:
                    self.files.put(fkey, {"picture_id": answer.picture_id or ""})
            res.images += 1
            res.bytes += len(data)
            self._notify(images=1, nbytes=len(data))
        except APIError as e:
            if isinstance(e, AuthError) or e.status is None or not 400 <= e.status < 500:
                self._abort(e)
                return
            self._failed(state, FileError(image.path, f"rejected by Panoramax: {e.message}"))
        finally:
            self._slots.release()
            self._budget.release(image.size)

    def _failed(self, state: _SetState, err: FileError, counts_for_set: bool = True) -> None:
        """One photo did not make it. A rejection the server tracked still counts toward the
        set (it will not take that file anyway): the set completes with the others."""
        if counts_for_set:
            state.failed += 1
        self.result.failures.append(err)
        log.warning("%s", err)

    @staticmethod
    def _retry_counter(res: SequenceResult) -> Callable[[int, BaseException, float], None]:
        def on_retry(n: int, err: BaseException, wait: float) -> None:
            res.retries += 1

        return on_retry

    # -- waiting for the server -----------------------------------------------------------------

    async def _wait_ready(self, state: _SetState) -> None:
        """Follow the set until the server has dispatched it and prepared every picture."""
        assert state.set_id is not None
        res = state.result
        loop = asyncio.get_running_loop()
        last: tuple[Any, ...] = ()
        moved = loop.time()
        while True:
            us = await self.api.upload_set(state.set_id)
            status = us.get("items_status") or {}
            prepared = int(status.get("prepared") or 0)
            broken = int(status.get("broken") or 0)
            total = int(us.get("nb_items") or 0)
            self.waiting[state.set_id] = (prepared, total, broken)
            if self.wait_cb is not None:
                w = WaitProgress()
                for p, t, b in self.waiting.values():
                    w.prepared += p
                    w.total += t
                    w.broken += b
                self.wait_cb(w)
            res.collections = [
                str(c["id"]) for c in us.get("associated_collections") or [] if "id" in c
            ]
            pending = int(status.get("not_processed") or 0) + int(status.get("preparing") or 0)
            if broken and not pending:
                res.broken = broken
                res.error = f"the server could not prepare {broken} picture(s) of this set"
                return
            if us.get("ready"):
                res.ready = True
                return
            now = (prepared, broken, pending, us.get("dispatched"))
            if now != last:
                last, moved = now, loop.time()
            elif loop.time() - moved > WAIT_STALL:
                res.error = (
                    f"the server's preparation of this set has not moved in {WAIT_STALL:.0f}s "
                    f"({prepared} of {total} ready); rerun with --wait to follow it"
                )
                return
            await asyncio.sleep(WAIT_POLL)


def _prepare(image: UploadImage) -> tuple[bytes, str, dict[str, str]]:
    """In a worker thread: the file's bytes, their md5 (the server's identity of a file) and the
    overrides for what amly changed."""
    with open(image.path, "rb") as f:
        data = f.read()
    return data, hashlib.md5(data).hexdigest(), overrides(image)
