"""Input discovery for uploads: what the paths given to ``amly upload`` (or
:meth:`amly.Client.upload`) are, and the sequences they hold.

A folder with a ``mapillary_image_description.json`` (written by ``amly process`` or
``mapillary_tools process``) is taken as processed; a zip of a sequence is one upload; a folder
of photos without one is processed in memory (photos are never changed). Everything comes out
as :class:`~amly.types.UploadSequence` objects, lazily, so uploads start while processing
goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ..description import DESCRIPTION_FILE, describe, embeddable, parse_capture_time
from ..description import read_file as read_description_file
from ..errors import FileError
from ..types import Sequence, UploadImage, UploadSequence
from .process import Options, Report, iter_sequences

T = TypeVar("T")


async def aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """A sync or async iterable as an async iterator."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


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
    return sequences_from_entries(entries, str(path.parent), str(path), organization_id)


def sequences_from_entries(
    entries: list[Any], folder: str, label: str, organization_id: str | None = None
) -> tuple[list[UploadSequence], int]:
    """The sequences of the entries of a description file that lives in ``folder`` (a local
    folder or an ``s3://`` prefix), named ``label#<sequence uuid>``; and the failures."""
    groups: dict[str, list[tuple[str, str, dict[str, Any], int]]] = {}
    videos: list[UploadSequence] = []
    errors = 0
    for entry in entries:
        if not isinstance(entry, dict) or "error" in entry or "filename" not in entry:
            errors += 1
            continue
        filename = str(entry["filename"])
        if folder.startswith("s3://"):
            filename = f"{folder.rstrip('/')}/{filename.lstrip('/')}"
        elif not os.path.isabs(filename):
            filename = os.path.join(folder, filename)
        if entry.get("filetype", "image") != "image":
            video = _video_of_entry(entry, filename, organization_id)
            if video is None:  # no track
                errors += 1
            else:
                videos.append(video)
            continue
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
        sequences.append(UploadSequence(f"{label}#{name}", images, organization_id))
    return sequences + videos, errors


def _video_of_entry(
    entry: dict[str, Any], filename: str, organization_id: str | None
) -> UploadSequence | None:
    """A video entry (``MAPGPSTrack`` rows) as one upload; None when it has no track."""
    from ..video._describe import points_of_entry
    from ..video._upload import VideoSource

    try:
        points = points_of_entry(entry)
    except (KeyError, TypeError, ValueError):
        return None
    if not points:
        return None
    video = VideoSource(
        filename,
        points,
        str(entry.get("MAPDeviceMake") or ""),
        str(entry.get("MAPDeviceModel") or ""),
        str(entry.get("filetype")),
    )
    return UploadSequence(f"video:{filename}", [], organization_id, video=video)


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
            if suffix in (".jpg", ".jpeg", ".mp4", ".mov", ".360"):
                raw.append(p)  # a single photo or video: processed in memory like a folder
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


async def upload_sources(
    items: Iterable[Any] | AsyncIterable[Any],
    *,
    organization_id: str | None = None,
    subfolders: bool = False,
    process: Options | None = None,
    reprocess: bool = False,
    failures: list[FileError],
    report: Report,
) -> AsyncIterator[UploadSequence]:
    """Every input as :class:`UploadSequence` objects, lazily (processing streams).

    Upload sequences pass as they are, :class:`~amly.Sequence` objects are described; paths
    are sorted by :func:`find_inputs`: description files and zips first, then the folders
    without either, processed in memory (photos untouched) in one pool with ``process``
    (default: :class:`Options` with ``recursive=subfolders``). With ``reprocess`` every path
    is processed, description files or not (that is ``process-and-upload``). Per-input
    problems go to ``failures``, processing totals and per-photo errors (duplicates among
    them) to ``report``."""
    to_process: list[str | os.PathLike[str]] = []
    async for item in aiter(items):
        if isinstance(item, UploadSequence):
            yield item
        elif isinstance(item, Sequence):
            yield from_sequence(item, organization_id)
        elif isinstance(item, str) and item.startswith("s3://"):
            from ..storage.s3 import EmptyPrefixError
            from ..storage.s3_source import s3_processed, s3_sequences

            staged = False
            if not reprocess:
                try:
                    async for s3seq in s3_sequences(item, organization_id):
                        staged = True
                        yield s3seq
                except EmptyPrefixError:
                    pass  # no description file: photos to process, as a local folder's
            if not staged:
                opts = process or Options(recursive=subfolders)
                async for seq in s3_processed(item, opts, report):
                    yield from_sequence(seq, organization_id)
        elif isinstance(item, (str, os.PathLike)):
            if reprocess:
                if await asyncio.to_thread(os.path.exists, item):
                    to_process.append(item)
                else:
                    failures.append(FileError(item, "no such file or folder"))
                continue
            try:
                descs, zips, raw = await asyncio.to_thread(
                    find_inputs, [item], subfolders=subfolders
                )
            except FileError as e:
                failures.append(e)
                continue
            for d in descs:
                try:
                    seqs, _errors = await asyncio.to_thread(
                        from_description_file, d, organization_id
                    )
                except FileError as e:
                    failures.append(e)
                    continue
                for s in seqs:
                    yield s
            for z in zips:
                try:
                    zipped = await asyncio.to_thread(from_zip, z, organization_id)
                except FileError as e:
                    failures.append(e)
                else:
                    yield zipped
            to_process.extend(raw)
        else:
            raise TypeError(f"cannot upload {type(item).__name__}")
    if to_process:
        opts = process or Options(recursive=subfolders)
        if opts.images:
            async for seq in iter_sequences(to_process, opts, report=report):
                yield from_sequence(seq, organization_id)
        if opts.videos is not None:
            async for video in _video_uploads(to_process, opts, organization_id, failures):
                yield video


async def _video_uploads(
    paths: list[str | os.PathLike[str]],
    opts: Options,
    organization_id: str | None,
    failures: list[FileError],
) -> AsyncIterator[UploadSequence]:
    """The videos under ``paths``, processed (telemetry, track, checks) in a worker thread,
    each as one upload; unusable ones go to ``failures``."""
    from .video import find_videos, iter_videos, video_upload

    found = await asyncio.to_thread(find_videos, paths, recursive=opts.recursive)
    if not found:
        return
    results = await asyncio.to_thread(
        lambda: list(
            iter_videos(
                found,
                opts.videos,
                track=opts.track,
                offset=opts.track_offset,
                workers=opts.workers,
            )
        )
    )
    for res in results:
        if res.error is not None:
            failures.append(res.error)
        else:
            yield video_upload(res, organization_id)
