"""What the verbs that change photos in place share (``geotag``, ``interpolate-direction``,
``tag``, ``dedup``, ``split``, ``fix-dates``): read DIR in the pool behind a progress bar,
set aside photos without time or position, and write or move photo by photo, counting
each success and recording each failure without stopping.

Heavy modules (the pipeline, EXIF writing) are imported inside the functions, so that
importing a verb to build the parser stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from datetime import tzinfo
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from ..errors import FileError, GeotagError, UsageError
from ..types import ImageMeta
from ._common import Progress, Summary

if TYPE_CHECKING:
    from ..pipeline import Folder, Pool

T = TypeVar("T")


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars unless ``--no-progress`` or ``--quiet``."""
    return not (args.no_progress or args.quiet)


def scan_dir(args: argparse.Namespace, path: str, *, recursive: bool = True) -> list[Folder]:
    """The folders of ``path`` (DIR, possibly made absolute); a missing DIR is a usage error."""
    from ..pipeline import scan

    try:
        return scan([path], recursive=recursive)
    except FileNotFoundError:
        raise UsageError(f"no such folder: {args.dir}") from None


class Photos(NamedTuple):
    """What :func:`read_dir` found: a fresh summary, the readable images (scan order), the
    files that cannot be used (unreadable first, then those :func:`usable` set aside), and
    how many files there were."""

    summary: Summary
    images: list[ImageMeta]
    errors: list[FileError]
    total: int


def read_dir(
    args: argparse.Namespace,
    verb: str,
    *,
    tz: tzinfo | None,
    pool: Pool,
    path: str | None = None,
    recursive: bool = True,
) -> Photos:
    """Scan ``path`` (default: ``args.dir``) and read every photo in ``pool`` behind a
    "reading" progress bar. Unreadable files are returned, not yet failed: some verbs move
    them aside before counting them."""
    from ..pipeline import read_all

    folders = scan_dir(args, path if path is not None else args.dir, recursive=recursive)
    summary = Summary(verb)
    total = sum(len(f.files) for f in folders)
    progress = Progress("reading", total, enabled=progress_enabled(args))
    images, errors = read_all(folders, tz=tz, pool=pool, on_read=progress.update)
    progress.close()
    return Photos(summary, images, errors, total)


def usable(
    images: Iterable[ImageMeta],
    errors: list[FileError],
    *,
    hint: str | None = None,
    check: Callable[[ImageMeta], FileError | None] | None = None,
) -> list[ImageMeta]:
    """The images with a capture time and a position (and that pass ``check``); each of the
    others appends its error to ``errors``, in image order, and is left alone.

    >>> errors = []
    >>> [m.path for m in usable([ImageMeta("a.jpg"), ImageMeta("b.jpg", lat=1.0, lon=2.0)],
    ...                         errors, hint="geotag it first")]
    []
    >>> [(e.path, e.kind, e.hint) for e in errors]  # doctest: +NORMALIZE_WHITESPACE
    [('a.jpg', 'MapillaryGeoTaggingError', 'geotag it first'),
     ('b.jpg', 'MapillaryGeoTaggingError', 'geotag it first')]
    """
    out = []
    for m in images:
        if m.capture_time is None or not m.has_position():
            errors.append(GeotagError(m.path, "no capture time or GPS position", hint=hint))
        elif check is not None and (err := check(m)) is not None:
            errors.append(err)
        else:
            out.append(m)
    return out


def write_each(
    args: argparse.Namespace,
    summary: Summary,
    pool: Pool,
    write: Callable[[T], object],
    items: list[T],
    *,
    label: str,
    count: str,
) -> None:
    """``write(item)`` for every item in ``pool`` behind a progress bar: each success counts
    as ``count``, each failure (a FileError from the pool) is recorded and the rest go on.
    ``write`` must be picklable (a module-level function)."""
    progress = Progress(label, len(items), enabled=progress_enabled(args))
    for r in pool.map(write, items):
        if isinstance(r, FileError):
            summary.fail(r)
        else:
            summary.count(count)
        progress.update()
    progress.close()


def move(summary: Summary, src: str, dst: str, *, count: str, where: str | None = None) -> None:
    """Move ``src`` to ``dst`` (never replacing a file), counting it as ``count``; a failure is
    recorded, naming ``where`` (default ``dst``), and does not stop the run."""
    from .._atomic import move_file

    try:
        move_file(src, dst)
        summary.count(count)
    except FileError as e:
        summary.fail(e)
    except OSError as e:
        summary.fail(FileError(src, f"cannot move to {where or dst}: {e}"))
