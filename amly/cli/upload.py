"""``amly upload`` and ``amly process-and-upload``: send sequences to Mapillary (or an amly
server), many images at once, resuming where an earlier run stopped.

PATH is a folder processed by ``amly process`` or ``mapillary_tools process`` (its
``mapillary_image_description.json`` is read), a description file, a sequence zip, or a folder
of geotagged photos with no description file (processed in memory first; photos are never
changed: each image's description is embedded in the bytes sent). The journal
(``--journal``) remembers uploaded images and finished sequences: a rerun skips them, and an
interrupted run resumes without re-sending what the server already has.

The token comes from MAPILLARY_ACCESS_TOKEN, else the profile saved by ``amly auth``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from ..errors import UsageError
from ._common import Progress, Summary, add_output_options, add_timezone_option, run_async

EPILOG = """\
examples:
  amly upload photos/                          # processed folder, or processed in memory
  amly upload trips/ --subfolders --json       # every subfolder; cluster ids as JSON
  amly upload photos/mapillary_image_description.json --organization-id 1234
  amly upload seq0.zip seq1.zip
  amly upload photos/ --endpoint http://127.0.0.1:8080   # a local amly server
  amly upload photos/ --dry-run                # what would be sent, no network
  amly upload trips/ --subfolders --to panoramax --api-url https://panoramax.example.org --wait

exit codes: 0 everything uploaded (or already uploaded), 1 some files or sequences failed
(listed; rerun to finish them), 2 bad arguments, 3 authentication failed, 4 the server or
network failed beyond retries (rerun to resume), 130 interrupted
"""

EPILOG_PU = """\
examples:
  amly process-and-upload trips/
  amly process-and-upload trips/ --gpx track.gpx --offset-time -2 --json
  amly process-and-upload trips/ --endpoint http://127.0.0.1:8080 --concurrency 32

Processing runs in a process pool and each folder's sequences start uploading as soon as the
folder is done, so the upload overlaps processing. Photos are never changed.
exit codes: as 'amly upload'
"""


def _upload_options(p: argparse.ArgumentParser) -> None:
    from ..api.upload import DEFAULT_CONCURRENCY

    g = p.add_argument_group("upload")
    g.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"images in flight at once, all sequences together [{DEFAULT_CONCURRENCY}]",
    )
    g.add_argument("--organization-id", metavar="ID", help="upload into this organization")
    g.add_argument(
        "--endpoint", metavar="URL", help="an amly server base URL [MAPILLARY_* variables]"
    )
    g.add_argument("--profile", metavar="NAME", help="the 'amly auth' profile to use")
    g.add_argument("--journal", metavar="PATH", help="resume journal [DATA_DIR/journal.sqlite3]")
    g.add_argument(
        "--reupload",
        action="store_true",
        help="upload sequences again even if the journal says they are done (new clusters)",
    )
    g.add_argument(
        "--dry-run", action="store_true", help="list what would be uploaded, send nothing"
    )
    t = p.add_argument_group("target")
    t.add_argument(
        "--to",
        choices=("mapillary", "panoramax"),
        default="mapillary",
        help="the service to upload to [mapillary]",
    )
    t.add_argument(
        "--api-url",
        metavar="URL",
        help="with --to panoramax: the instance's base URL (token: PANORAMAX_TOKEN, else "
        "'amly auth --service panoramax')",
    )
    t.add_argument(
        "--wait",
        action="store_true",
        help="with --to panoramax: return once the server has prepared every picture",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    from .process import add_process_options

    p = subparsers.add_parser(
        "upload",
        help="upload processed folders, description files or zips (resumable)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", metavar="PATH", nargs="+", help="folders, description files, zips")
    p.add_argument(
        "--subfolders",
        action="store_true",
        help="also upload subfolders (one cluster per sequence)",
    )
    _upload_options(p)
    add_timezone_option(p)
    add_output_options(p)
    p.set_defaults(func=run)

    q = subparsers.add_parser(
        "process-and-upload",
        help="process a tree in memory and upload it while processing goes on",
        description="Process TREE (as 'amly process' does, in memory) and upload each "
        "sequence as soon as its folder is processed.",
        epilog=EPILOG_PU,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("trees", metavar="TREE", nargs="+", help="folders of photos")
    add_process_options(q)
    _upload_options(q)
    add_timezone_option(q)
    add_output_options(q)
    q.set_defaults(func=run_process_and_upload)


def _check(args: argparse.Namespace) -> None:
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.to == "panoramax":
        from ._panoramax import check_upload_args

        check_upload_args(args)
    elif args.api_url or args.wait:
        raise UsageError("--api-url and --wait go with --to panoramax")
    if args.organization_id is not None and not str(args.organization_id).isdigit():
        raise UsageError("--organization-id must be numeric")


def run(args: argparse.Namespace) -> int:
    from ..metadata import parse_timezone
    from ..pipeline import Options

    _check(args)
    try:
        tz = parse_timezone(args.timezone)
    except (ValueError, KeyError) as e:
        raise UsageError(f"unknown time zone {args.timezone!r}: {e}") from None
    return _run(args, args.paths, Options(tz=tz))


def run_process_and_upload(args: argparse.Namespace) -> int:
    from .process import options_from_args

    _check(args)
    for t in args.trees:
        if not os.path.isdir(t):
            raise UsageError(f"no such folder: {t}")
    options = options_from_args(args)
    return _run(args, None, options, trees=args.trees)


def _run(
    args: argparse.Namespace,
    paths: list[str] | None,
    options: Any,
    *,
    trees: list[str] | None = None,
) -> int:
    from ..api.client import Client

    if args.to == "panoramax":
        from ._panoramax import run_upload

        return run_upload(args, paths, options, trees=trees, processed=_processed)
    summary = Summary("upload" if trees is None else "process-and-upload")
    progress = Progress("upload", None, enabled=not (args.no_progress or args.quiet))
    done = {"images": 0}

    def on_progress(p: Any) -> None:
        progress.total = p.images_total
        progress.label = f"upload {p.bytes_done / 1e6:,.1f} MB"
        progress.update(p.images_done - done["images"])
        done["images"] = p.images_done

    async def main() -> Any:
        async with Client(
            args.endpoint,
            profile=args.profile,
            concurrency=args.concurrency,
            journal=args.journal,
        ) as client:
            if trees is None:
                assert paths is not None
                items: Any = paths
            else:
                items = _processed(trees, options, summary)
            return await client.upload(
                items,
                organization_id=args.organization_id,
                subfolders=getattr(args, "subfolders", False),
                reupload=args.reupload,
                dry_run=args.dry_run,
                progress=on_progress,
                process_options=options,
            )

    try:
        result = run_async(main())
    finally:
        progress.close()
    _summarise(summary, result, args.dry_run)
    if not summary.counts.get("images") and not summary.failures and not args.quiet:
        hint = (
            "" if getattr(args, "subfolders", True) else " (photos in subfolders? add --subfolders)"
        )
        print(f"amly: nothing to upload{hint}", file=sys.stderr)
    return summary.emit(args)


async def _processed(trees: list[str], options: Any, summary: Summary) -> AsyncIterator[Any]:
    """Sequences from the process pool, drained from its queue as folders finish."""
    from .. import pipeline
    from ..errors import DuplicateError

    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    report = pipeline.Report()
    producer = asyncio.create_task(pipeline.produce(trees, options, queue, report=report))
    try:
        while (seq := await queue.get()) is not None:
            yield seq
        await producer
    finally:
        if not producer.done():
            producer.cancel()
    summary.count("processed", report.images)
    for e in report.errors:
        if isinstance(e, DuplicateError):
            summary.count("duplicates")
        else:
            summary.fail(e)


def _summarise(summary: Summary, result: Any, dry_run: bool) -> None:
    sequences = []
    for s in result.sequences:
        sequences.append(
            {
                "name": s.name,
                "cluster_id": s.cluster_id,
                "images": s.images,
                "bytes": s.bytes,
                "bytes_sent": s.bytes_sent,
                "retries": s.retries,
                "cached": s.cached,
                "skipped": s.skipped,
                "error": s.error,
            }
        )
        if s.error and not dry_run:
            summary.fail(s.error, path=s.name, kind="sequence")
    for e in result.failures:
        summary.fail(e)
    if result.duplicates:
        summary.count("duplicates", len(result.duplicates))
    summary.count("sequences", len(result.sequences))
    summary.count("images", result.images)
    if not dry_run:
        summary.count("already_uploaded", sum(s.cached for s in result.sequences))
        summary.count("skipped_sequences", sum(1 for s in result.sequences if s.skipped))
        summary.count("bytes_sent", result.bytes_sent)
        summary.count("retries", result.retries)
    else:
        summary.count("bytes", sum(s.bytes for s in result.sequences))
        summary.info["dry_run"] = True
    summary.info["cluster_ids"] = result.cluster_ids
    summary.info["sequences"] = sequences
    if result.seconds and result.images:
        summary.info["images_per_second"] = round(result.images / result.seconds, 1)
