"""The processing pipeline: scan folders, read images in a process pool, turn each folder into
finished sequences, and hand them over (synchronously or through an asyncio queue) as soon as
that folder is done.

Data flows one way: scan -> read (:mod:`amly.metadata`) -> geotag (:mod:`amly.geo`) -> split,
dedup, headings (:mod:`amly.sequence`) -> consumer. Nothing here modifies a photo.

Why folder by folder: ``process-and-upload`` starts uploading the first folder's sequences
while later folders are still being read, and memory stays bounded by one folder plus the
pool's in-flight chunks, however many folders there are.

Per-file problems never raise out of here: they come back as :class:`~amly.errors.FileError`
values in the results and are counted in the :class:`Report`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import os
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime, timedelta, tzinfo
from typing import Any, TypeVar

from .errors import FileError, GeotagError, OutsideTrackError

# Imported here, not in the worker: forked workers inherit it instead of each importing it.
from .metadata import read_image
from .types import ImageMeta, Point, Sequence

T = TypeVar("T")
R = TypeVar("R")

IMAGE_SUFFIXES = (".jpg", ".jpeg")
TEMP_PREFIX = ".amly-"
SEQUENCE_NAMESPACE = uuid.UUID("6f0c3a52-7a3b-4c8e-9a39-6d2f1b1f0a11")

# --- scanning ---------------------------------------------------------------------------------


def is_image_name(name: str) -> bool:
    """A JPEG by name: ``.jpg``/``.jpeg`` in any case; hidden files and our temps are not.

    >>> [is_image_name(n) for n in ["a.JPG", "b.jpeg", ".c.jpg", ".amly-x.jpg", "d.png"]]
    [True, True, False, False, False]
    """
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


@dataclasses.dataclass
class Folder:
    """One directory's images (not its subfolders'), in name order, and the root it came from."""

    root: str
    path: str
    files: list[str]


def scan(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> list[Folder]:
    """Every folder with JPEGs under ``paths`` (directories or single files), deterministic
    order: roots in the given order, then folders depth-first by name, files by name.

    Hidden files and folders (``.name``) are skipped, which also skips amly's ``.amly-*``
    temporary files. A path that does not exist raises ``FileNotFoundError``.
    """
    folders: list[Folder] = []
    seen: set[str] = set()
    for p in paths:
        path = os.path.abspath(os.fspath(p))
        if os.path.isfile(path):
            folders.append(Folder(path, os.path.dirname(path), [path]))
            continue
        if not os.path.isdir(path):
            raise FileNotFoundError(path)
        for folder in _walk(path, recursive):
            if folder.path not in seen:
                seen.add(folder.path)
                folder.root = path
                folders.append(folder)
    return folders


def _walk(top: str, recursive: bool) -> Iterator[Folder]:
    # Depth-first with a stack, not recursion: a tree nested deeper than Python's recursion
    # limit (a broken or hostile card) must not crash the scan.
    stack = [top]
    while stack:
        path = stack.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            continue
        files = [e.path for e in entries if is_image_name(e.name) and _is_file(e)]
        if files:
            yield Folder(path, path, files)
        if recursive:
            subs = [e.path for e in entries if not e.name.startswith(".") and _is_real_dir(e)]
            stack.extend(reversed(subs))  # popped in name order


def _is_file(entry: os.DirEntry[str]) -> bool:
    """A regular file (or a link to one). A link that cannot be resolved because it loops
    (``x.jpg -> x.jpg``) counts as a file: reading it then fails with a per-file error
    that names the loop, instead of the scan failing for the whole folder."""
    try:
        return entry.is_file()
    except OSError:
        return True


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    # Linked folders are not followed: a link to a parent would loop forever.
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def scan_files(paths: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> list[str]:
    """All image paths of :func:`scan`, flattened."""
    return [f for folder in scan(paths, recursive=recursive) for f in folder.files]


# --- the process pool -------------------------------------------------------------------------


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _mp_context() -> Any:
    # fork is by far the cheapest start on Linux (no re-import); elsewhere use the default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _die_with_parent() -> None:
    """Worker start-up: on Linux, ask the kernel to kill this worker when its parent dies,
    so a ``kill -9`` of amly never leaves workers running (and holding its pipes open)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        pass


def _as_file_error(item: Any, e: BaseException) -> FileError:
    if isinstance(e, FileError):
        return e
    if isinstance(item, tuple) and item:
        item = item[0]
    path = item if isinstance(item, str) else getattr(item, "path", repr(item))
    return FileError(path, f"{type(e).__name__}: {e}")


def _run_chunk(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """Worker side: ``fn`` over a chunk; a failure becomes a FileError result, never a crash."""
    out: list[Any] = []
    for item in items:
        try:
            out.append(fn(item))
        except Exception as e:  # one bad file must not lose the chunk
            out.append(_as_file_error(item, e))
    return out


def chunk_size(n: int, workers: int, *, lo: int = 4, hi: int = 256) -> int:
    """Items per task: big enough to amortise pickling, small enough to balance the workers.

    >>> chunk_size(5000, 2), chunk_size(10, 2), chunk_size(100, 4)
    (256, 4, 6)
    """
    return max(lo, min(hi, n // (workers * 4) or 1))


class Pool:
    """A process pool that maps a function over items in order with bounded memory.

    At most ``workers * 2`` chunks are in flight, so memory does not grow with the number of
    items. With ``workers <= 1`` (or few items) it runs in this process: no start-up cost.
    A worker that dies (killed, out of memory) costs a retry, never the run: see
    :meth:`_recover`.
    Use as a context manager; reuse it across folders to pay the start-up once.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        self._executor: cf.ProcessPoolExecutor | None = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    @property
    def executor(self) -> cf.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = cf.ProcessPoolExecutor(
                self.workers, mp_context=_mp_context(), initializer=_die_with_parent
            )
        return self._executor

    def _chunks(self, items: list[T], chunk: int | None) -> Iterator[list[T]]:
        size = chunk or chunk_size(len(items), self.workers)
        for i in range(0, len(items), size):
            yield items[i : i + size]

    def _inline(self, n: int) -> bool:
        return self.workers <= 1 or n < 8

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, chunk: int | None = None
    ) -> Iterator[R | FileError]:
        """``fn(item)`` for each item, in order; exceptions come back as FileError values.

        ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
        """
        items = list(items)
        if self._inline(len(items)):
            yield from _run_chunk(fn, items)
            return
        pending: deque[tuple[cf.Future[list[Any]], list[T]]] = deque()
        limit = self.workers * 2
        for part in self._chunks(items, chunk):
            pending.append((self._submit(fn, part), part))
            while len(pending) >= limit:
                yield from self._result(fn, *pending.popleft())
        while pending:
            yield from self._result(fn, *pending.popleft())

    def _submit(self, fn: Callable[[T], R], part: list[T]) -> cf.Future[list[Any]]:
        try:
            return self.executor.submit(_run_chunk, fn, part)
        except cf.process.BrokenProcessPool:
            self._discard()
            return self.executor.submit(_run_chunk, fn, part)

    def _result(
        self, fn: Callable[[T], R], future: cf.Future[list[Any]], part: list[T]
    ) -> list[Any]:
        try:
            return future.result()
        except cf.process.BrokenProcessPool:
            return self._recover(fn, part)

    def _discard(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _recover(self, fn: Callable[[T], R], part: list[T]) -> list[Any]:
        """A worker died (killed, out of memory...): retry the chunk in a fresh pool; if that
        dies too, read its files one per throwaway process so only the culprit fails."""
        self._discard()
        try:
            return self.executor.submit(_run_chunk, fn, part).result()
        except cf.process.BrokenProcessPool:
            self._discard()
        out: list[Any] = []
        for item in part:
            with cf.ProcessPoolExecutor(1, mp_context=_mp_context()) as one:
                try:
                    out.extend(one.submit(_run_chunk, fn, [item]).result())
                except cf.process.BrokenProcessPool:
                    e = RuntimeError("the worker process died on this file")
                    out.append(_as_file_error(item, e))
        return out

    async def amap(
        self, fn: Callable[[T], R], items: Iterable[T], *, chunk: int | None = None
    ) -> AsyncIterator[list[R | FileError]]:
        """Asyncio flavour of :meth:`map`, yielding one finished chunk (a list) at a time, so
        the event loop keeps running (uploads proceed) while the workers read."""
        items = list(items)
        if self._inline(len(items)):
            loop = asyncio.get_running_loop()
            for part in self._chunks(items, chunk or 16):
                yield await loop.run_in_executor(None, _run_chunk, fn, part)
            return
        loop = asyncio.get_running_loop()
        pending: deque[tuple[asyncio.Future[list[Any]], list[T]]] = deque()
        limit = self.workers * 2

        async def result(future: asyncio.Future[list[Any]], part: list[T]) -> list[Any]:
            try:
                return await future
            except cf.process.BrokenProcessPool:
                return await loop.run_in_executor(None, self._recover, fn, part)

        for part in self._chunks(items, chunk):
            try:
                fut = loop.run_in_executor(self.executor, _run_chunk, fn, part)
            except cf.process.BrokenProcessPool:
                self._discard()
                fut = loop.run_in_executor(self.executor, _run_chunk, fn, part)
            pending.append((fut, part))
            while len(pending) >= limit:
                yield await result(*pending.popleft())
        while pending:
            yield await result(*pending.popleft())


# --- reading ----------------------------------------------------------------------------------


def _read_one(
    path: str, tz: tzinfo | None = None, work: Callable[[ImageMeta], ImageMeta] | None = None
) -> ImageMeta:
    image = read_image(path, tz=tz)
    return work(image) if work is not None else image


def read_images(
    paths: Iterable[str],
    *,
    tz: tzinfo | None = None,
    pool: Pool | None = None,
    work: Callable[[ImageMeta], ImageMeta] | None = None,
) -> Iterator[ImageMeta | FileError]:
    """:func:`amly.metadata.read_image` (then ``work``, if given) over ``paths`` in a
    process pool, in order."""
    import functools

    own = pool is None
    p = pool or Pool()
    try:
        yield from p.map(functools.partial(_read_one, tz=tz, work=work), paths)
    finally:
        if own:
            p.close()


def read_all(
    folders: list[Folder],
    *,
    tz: tzinfo | None = None,
    pool: Pool | None = None,
    on_read: Callable[[int], None] | None = None,
) -> tuple[list[ImageMeta], list[FileError]]:
    """Read every image of ``folders``: (readable images in scan order, per-file errors)."""
    images: list[ImageMeta] = []
    errors: list[FileError] = []
    for r in read_images(_flat(folders), tz=tz, pool=pool):
        (errors if isinstance(r, FileError) else images).append(r)  # type: ignore[arg-type]
        if on_read is not None:
            on_read(1)
    return images, errors


def move_file(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` atomically without ever replacing an existing ``dst``.

    ``os.link`` fails if ``dst`` exists (no check-then-rename race); across filesystems, where
    links are impossible, it falls back to a rename after an existence check.
    """
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise FileError(
            src, f"not moved: {dst} already exists", hint="move or rename that file first"
        ) from None
    except OSError:
        if os.path.lexists(dst):
            raise FileError(src, f"not moved: {dst} already exists") from None
        os.rename(src, dst)
        return
    os.unlink(src)


# --- processing a folder ----------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    """Everything ``amly process`` (and ``process-and-upload``) can be told. Defaults are the
    official tool's."""

    cutoff_distance: float = 100.0
    cutoff_time: float | None = 60.0
    duplicate_distance: float = 0.1
    duplicate_angle: float = 5.0
    max_images: int | None = 1000
    max_speed_kmh: float | None = 400.0
    """Speed between consecutive images above which one is a GPS jump; ``None``: no check."""
    offset_angle: float = 0.0
    interpolate_directions: bool = False
    tz: tzinfo | None = None
    track: list[list[Point]] | None = None
    """GPX/NMEA track segments: geotag every image from them instead of its EXIF GPS."""
    track_offset: float = 0.0
    """Seconds added to the camera time to look it up in ``track`` (camera vs GPS clock); the
    capture time is corrected by it too (as mapillary_tools' ``--interpolation_offset_time``)."""
    time_offset: float = 0.0
    """Seconds added to every capture time (mapillary_tools' ``--offset_time``)."""
    use_gpx_start_time: bool = False
    max_gap: float | None = None
    recursive: bool = True
    workers: int | None = None
    make: str | None = None
    model: str | None = None
    organization_id: str | None = None
    work: Callable[[ImageMeta], ImageMeta] | None = None
    """Extra per-image step run in the worker right after reading (must be picklable: a
    module-level function or a ``functools.partial`` of one); raising FileError rejects it."""


@dataclasses.dataclass
class GroupResult:
    """What one folder turned into."""

    folder: Folder
    sequences: list[Sequence]
    errors: list[FileError]
    images: dict[str, ImageMeta] = dataclasses.field(default_factory=dict)
    """Every image that could be read, by path (also the failed ones: for their positions)."""

    @property
    def duplicates(self) -> list[FileError]:
        from .errors import DuplicateError

        return [e for e in self.errors if isinstance(e, DuplicateError)]


@dataclasses.dataclass
class Report:
    """Running totals over a whole run (the summary the CLI prints)."""

    images: int = 0
    ready: int = 0
    sequences: int = 0
    folders: int = 0
    errors: list[FileError] = dataclasses.field(default_factory=list)

    def add(self, group: GroupResult) -> None:
        self.folders += 1
        self.images += len(group.folder.files)
        self.sequences += len(group.sequences)
        self.ready += sum(len(s.images) for s in group.sequences)
        self.errors.extend(group.errors)

    def by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.errors:
            out[e.kind] = out.get(e.kind, 0) + 1
        return dict(sorted(out.items()))


def sequence_uuid(images: list[ImageMeta]) -> str:
    """A stable id for a sequence: the same photos give the same id on every run (so reruns
    and resumed uploads agree), different sequences never collide.

    >>> from datetime import datetime, timezone
    >>> m = ImageMeta("/a/b.jpg", datetime(2024, 1, 1, tzinfo=timezone.utc))
    >>> sequence_uuid([m]) == sequence_uuid([m]), len(sequence_uuid([m]))
    (True, 32)
    """
    first = images[0]
    key = f"{os.path.abspath(first.path)}|{first.capture_time}|{len(images)}"
    # A file name that is not UTF-8 holds lone surrogates, which uuid5 cannot encode.
    key = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return uuid.uuid5(SEQUENCE_NAMESPACE, key).hex


def geotag_from_track(
    images: list[ImageMeta],
    segments: list[list[Point]],
    *,
    offset_time: float = 0.0,
    use_gpx_start_time: bool = False,
    max_gap: float | None = None,
) -> tuple[list[ImageMeta], list[FileError]]:
    """Give each image the track position at its (camera time + offset); images outside the
    track or in a gap become :class:`OutsideTrackError`. Pure; returns new records.

    The lookup starts from the camera clock (``camera_time``; ``capture_time`` only for a
    photo without one), never from a GPS stamp an earlier geotagging wrote: so geotagging
    again with the same offset gives the same result instead of adding the offset twice.
    ``use_gpx_start_time`` first shifts all images so the earliest camera time is at the
    track's start (as mapillary_tools' ``--interpolation_use_gpx_start_time``), then
    ``offset_time`` applies. The capture time becomes the corrected (GPS clock) time, as
    mapillary_tools does; ``camera_time`` stays as read.

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> track = [[Point(t0, 0.0, 0.0), Point(t0 + timedelta(seconds=10), 0.0, 0.001)]]
    >>> m = ImageMeta("a.jpg", capture_time=t0 + timedelta(hours=1), camera_time=t0)
    >>> [(i.lon, i.capture_time.second) for i in geotag_from_track([m], track, offset_time=5)[0]]
    [(0.0005, 5)]
    """
    from . import geo

    ok: list[ImageMeta] = []
    bad: list[FileError] = []
    timed = [(m, m.camera_time or m.capture_time) for m in images]
    for m, t in timed:
        if t is None:
            bad.append(GeotagError(m.path, "no capture time to look up in the track"))
    segs = [s for s in segments if s]
    shift = timedelta(seconds=offset_time)
    if use_gpx_start_time and segs:
        times = [t for _, t in timed if t is not None]
        if times:
            shift += min(s[0].time for s in segs) - min(times)
    for m, cam in timed:
        if cam is None:
            continue
        t = cam + shift
        try:
            p = geo.locate(segs, t, max_gap=max_gap)
        except (geo.OutsideTrack, geo.InGap) as e:
            bad.append(
                OutsideTrackError(
                    m.path,
                    f"taken at {t.isoformat()}, outside the GPS track: {e}",
                    hint="check --offset-time (camera clock vs GPS clock) and --max-gap",
                    vars={"capture_time": t.isoformat()},
                )
            )
            continue
        ok.append(
            dataclasses.replace(
                m, capture_time=t, lat=p.lat, lon=p.lon, alt=p.alt, heading=p.heading
            )
        )
    return ok, bad


def process_folder(
    folder: Folder, results: Iterable[ImageMeta | FileError], options: Options
) -> GroupResult:
    """Turn one folder's read results into sequences: geotag (track), group by camera, split,
    drop duplicates, headings. Pure apart from nothing: no I/O."""
    from . import sequence as seqmod

    errors: list[FileError] = []
    images: list[ImageMeta] = []
    for r in results:
        if isinstance(r, FileError):
            errors.append(r)
        else:
            if options.make or options.model:
                r = dataclasses.replace(
                    r, make=options.make or r.make, model=options.model or r.model
                )
            images.append(r)
    by_path = {m.path: m for m in images}
    if options.track is not None:
        images, bad = geotag_from_track(
            images,
            options.track,
            offset_time=options.track_offset,
            use_gpx_start_time=options.use_gpx_start_time,
            max_gap=options.max_gap,
        )
        errors.extend(bad)
        by_path.update((m.path, m) for m in images)
    result = seqmod.process(
        images,
        seqmod.ProcessOptions(
            cutoff_distance=options.cutoff_distance,
            cutoff_time=options.cutoff_time,
            max_images=options.max_images,
            duplicate_distance=options.duplicate_distance,
            duplicate_angle=options.duplicate_angle,
            offset_angle=options.offset_angle,
            interpolate_directions=options.interpolate_directions,
            max_speed_kmh=options.max_speed_kmh,
            time_offset=options.time_offset,
        ),
    )
    errors.extend(result.errors)
    seqs = [
        Sequence(sequence_uuid(s.images), s.images, organization_id=options.organization_id)
        for s in result.sequences
        if s.images
    ]
    for s in seqs:
        by_path.update((m.path, m) for m in s.images)
    return GroupResult(folder, seqs, errors, by_path)


# --- whole runs -------------------------------------------------------------------------------


def _reader(options: Options) -> Callable[[str], ImageMeta]:
    import functools

    return functools.partial(_read_one, tz=options.tz, work=options.work)


def iter_groups(
    paths: Iterable[str | os.PathLike[str]],
    options: Options | None = None,
    *,
    pool: Pool | None = None,
    on_read: Callable[[int], None] | None = None,
    folders: list[Folder] | None = None,
) -> Iterator[GroupResult]:
    """Process ``paths`` folder by folder, yielding each folder's result when it is done.

    Reading streams across folder boundaries (the pool never idles between folders);
    ``on_read(n)`` is called as chunks of images finish reading (progress bars); ``folders``
    is a :func:`scan` of ``paths`` already made.
    """
    options = options or Options()
    if folders is None:  # callers that counted the files first pass their scan
        folders = scan(paths, recursive=options.recursive)
    own = pool is None
    p = pool or Pool(options.workers)
    try:
        yield from _groups_sync(folders, options, p, on_read)
    finally:
        if own:
            p.close()


def _flat(folders: list[Folder]) -> list[str]:
    return [f for folder in folders for f in folder.files]


def _groups_sync(
    folders: list[Folder], options: Options, pool: Pool, on_read: Callable[[int], None] | None
) -> Iterator[GroupResult]:
    results = pool.map(_reader(options), _flat(folders))
    for folder in folders:
        got: list[ImageMeta | FileError] = []
        for _ in folder.files:
            got.append(next(results))
            if on_read is not None and len(got) % 16 == 0:
                on_read(16)
        if on_read is not None and len(got) % 16:
            on_read(len(got) % 16)
        yield process_folder(folder, got, options)


async def aiter_groups(
    paths: Iterable[str | os.PathLike[str]],
    options: Options | None = None,
    *,
    pool: Pool | None = None,
    on_read: Callable[[int], None] | None = None,
) -> AsyncIterator[GroupResult]:
    """Asyncio flavour of :func:`iter_groups`: the event loop keeps running while workers read,
    and each folder's result is yielded as soon as its last image is read."""
    options = options or Options()
    loop = asyncio.get_running_loop()
    folders = await loop.run_in_executor(None, lambda: scan(paths, recursive=options.recursive))
    own = pool is None
    p = pool or Pool(options.workers)
    try:
        queue: deque[ImageMeta | FileError] = deque()
        it = iter(folders)
        folder = next(it, None)
        files = _flat(folders)
        async for part in p.amap(_reader(options), files):
            queue.extend(part)
            if on_read is not None:
                on_read(len(part))
            while folder is not None and len(queue) >= len(folder.files):
                got = [queue.popleft() for _ in folder.files]
                # In a thread: a big folder's sequence logic must not stall the uploads.
                yield await loop.run_in_executor(None, process_folder, folder, got, options)
                folder = next(it, None)
        while folder is not None:  # folders whose files were all read already (or none)
            got = [queue.popleft() for _ in folder.files]
            yield await loop.run_in_executor(None, process_folder, folder, got, options)
            folder = next(it, None)
    finally:
        if own:
            await loop.run_in_executor(None, p.close)


async def produce(
    paths: Iterable[str | os.PathLike[str]],
    options: Options | None,
    queue: asyncio.Queue[Sequence | None],
    *,
    report: Report | None = None,
    on_group: Callable[[GroupResult], None] | None = None,
) -> Report:
    """Put every finished :class:`Sequence` into ``queue`` as soon as its folder is done, then
    ``None`` as the end marker (also on error, so the consumer never hangs).

    A bounded queue gives back-pressure: processing waits while the uploader is behind.
    Errors (unreadable files, duplicates...) are collected in the returned :class:`Report`.
    """
    report = report if report is not None else Report()
    try:
        async for group in aiter_groups(paths, options):
            report.add(group)
            if on_group is not None:
                on_group(group)
            for s in group.sequences:
                await queue.put(s)
    except asyncio.CancelledError:
        # The consumer gave up: leave the marker if there is room, never wait for one.
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)
        raise
    except BaseException:
        await queue.put(None)
        raise
    await queue.put(None)
    return report


async def iter_sequences(
    paths: Iterable[str | os.PathLike[str]],
    options: Options | None = None,
    *,
    report: Report | None = None,
) -> AsyncIterator[Sequence]:
    """Finished sequences, folder by folder, as an async iterator (errors go to ``report``)."""
    async for group in aiter_groups(paths, options):
        if report is not None:
            report.add(group)
        for s in group.sequences:
            yield s


# --- outputs ----------------------------------------------------------------------------------


def description_entries(group: GroupResult) -> list[dict[str, Any]]:
    """The folder's entries of ``mapillary_image_description.json``, in file name order."""
    from .description import error_entry, file_entry

    entries: list[tuple[str, dict[str, Any]]] = []
    for s in group.sequences:
        for m in s.images:
            entries.append((m.path, file_entry(m, s.uuid)))
    for e in group.errors:
        entry = error_entry(e)
        entries.append((e.path, _jsonable(entry)))
    entries.sort(key=lambda pe: pe[0])
    return [e for _, e in entries]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ImageMeta):
        return os.path.abspath(value.path)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def geojson_features(group: GroupResult) -> list[dict[str, Any]]:
    """Sequences as LineStrings and flagged images (that have a position) as Points."""
    from .description import format_capture_time

    feats: list[dict[str, Any]] = []
    for s in group.sequences:
        coords = [[m.lon, m.lat] for m in s.images if m.lat is not None and m.lon is not None]
        geometry: dict[str, Any] = (
            {"type": "LineString", "coordinates": coords}
            if len(coords) > 1
            else {"type": "Point", "coordinates": coords[0]}
        )
        first, last = s.images[0], s.images[-1]
        feats.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "kind": "sequence",
                    "sequence": s.uuid,
                    "folder": group.folder.path,
                    "images": len(s.images),
                    "start": format_capture_time(first.capture_time)
                    if first.capture_time
                    else None,
                    "end": format_capture_time(last.capture_time) if last.capture_time else None,
                },
            }
        )
    for e in group.errors:
        m = group.images.get(e.path)
        if m is None or m.lat is None or m.lon is None:
            continue
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [m.lon, m.lat]},
                "properties": {
                    "kind": "flagged",
                    "file": os.path.abspath(e.path),
                    "type": e.kind,
                    "message": e.message,
                },
            }
        )
    return feats


__all__ = [
    "Folder",
    "GroupResult",
    "Options",
    "Pool",
    "Report",
    "aiter_groups",
    "description_entries",
    "geojson_features",
    "geotag_from_track",
    "is_image_name",
    "iter_groups",
    "iter_sequences",
    "process_folder",
    "produce",
    "read_images",
    "scan",
    "scan_files",
    "sequence_uuid",
]
