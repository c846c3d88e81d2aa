"""Processing: read images in the process pool, turn each folder into finished sequences, and
hand them over (an iterator, or an async iterator for uploads) as soon as that folder is done.

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
import dataclasses
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import timedelta, tzinfo
from typing import Any

from ..errors import DuplicateError, FileError, GeotagError, OutsideTrackError

# Imported here, not in the worker: forked workers inherit it instead of each importing it.
from ..metadata import read_image
from ..sequence import ProcessOptions
from ..types import ImageMeta, Point, Sequence
from .pool import Pool
from .scan import Folder, scan

SEQUENCE_NAMESPACE = uuid.UUID("6f0c3a52-7a3b-4c8e-9a39-6d2f1b1f0a11")


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


# --- processing a folder ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Options(ProcessOptions):
    """Everything ``amly process`` (and ``process-and-upload``) can be told: the sequence
    logic's knobs (:class:`amly.sequence.ProcessOptions`, the official tool's defaults) plus
    reading, geotagging and pool settings. One object from the CLI down to the workers.
    """

    tz: tzinfo | None = None
    track: list[list[Point]] | None = None
    """GPX/NMEA track segments: geotag every image from them instead of its EXIF GPS."""
    track_offset: float = 0.0
    """Seconds added to the camera time to look it up in ``track`` (camera vs GPS clock); the
    capture time is corrected by it too (as mapillary_tools' ``--interpolation_offset_time``)."""
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
    images: bool = True
    """Process photos (``--filetypes`` without ``image``: videos only)."""
    videos: Any = None
    """A :class:`amly.pipeline.video.VideoOptions`: also process the videos under the paths
    (None: photos only)."""


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

    def merge(self, other: Report) -> None:
        self.images += other.images
        self.ready += other.ready
        self.sequences += other.sequences
        self.folders += other.folders
        self.errors.extend(other.errors)

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
    from .. import geo

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
                    hint="check the clock offset (camera vs GPS) and the gap limit",
                    options=("offset_time", "max_gap"),
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
    from .. import sequence as seqmod

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
    result = seqmod.process(images, options)
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
