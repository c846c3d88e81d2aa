"""``amly upload`` and ``amly process-and-upload``: send sequences to Mapillary (or an amly
server), many images at once, resuming where an earlier run stopped.

PATH is a folder processed by ``amly process`` or ``mapillary_tools process`` (its
``mapillary_image_description.json`` is read), a description file, a sequence zip, or a folder
of geotagged photos with no description file (processed in memory first; photos are never
changed: each image's description is embedded in the bytes sent). The journal
(``--journal``) remembers uploaded images and finished sequences: a rerun skips them, and an
interrupted run resumes without re-sending what the server already has.

The token comes from --token, else MAPILLARY_ACCESS_TOKEN, else the profile saved by
``amly auth``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ._common import Progress, Summary, run_async
from ._options import (
    add_network_options,
    add_output_options,
    add_process_options,
    add_report_option,
    add_timezone_option,
    client_from_args,
    options_from_args,
    report_from_args,
    token_from_args,
    write_report,
)

if TYPE_CHECKING:
    from ..pipeline import Options
    from ..services import Target, UploadProgress, UploadResult

EPILOG = """\
examples:
  amly upload photos/                          # processed folder, or processed in memory
  amly upload trips/ --subfolders --json       # every subfolder; cluster ids as JSON
  amly upload photos/mapillary_image_description.json --organization-id 1234
  amly upload seq0.zip seq1.zip
  amly upload photos/ --endpoint http://127.0.0.1:8080   # a local amly server
  amly upload photos/ --dry-run                # what would be sent, no network
  amly upload photos/ --report upload.html     # a map with each sequence's cluster id
  amly upload trips/ --subfolders --to panoramax --api-url https://panoramax.example.org --wait

exit codes: 0 everything uploaded (or already uploaded), 1 some files or sequences failed
(listed; rerun to finish them), 2 bad arguments, 3 authentication failed, 4 the server or
network failed beyond retries (rerun to resume), 5 the Panoramax instance is too old for
upload sets, 6 Panoramax marked pictures of some sets broken (the other sets went on),
130 interrupted
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
    from ..services.upload import DEFAULT_CONCURRENCY

    add_network_options(p, concurrency=DEFAULT_CONCURRENCY, what="images (all sequences together)")
    g = p.add_argument_group("upload")
    g.add_argument("--organization-id", metavar="ID", help="upload into this organization")
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
        metavar="TARGET",
        help="where to upload instead of Mapillary: 'panoramax' (with --api-url), or "
        "s3://BUCKET/PREFIX to store in object storage (photos with their description "
        "embedded, the description file, zips: a later 'amly upload' sends them on)",
    )
    t.add_argument(
        "--api-url",
        metavar="URL",
        help="with --to panoramax: the instance's base URL (token: --token, PANORAMAX_TOKEN, "
        "else 'amly auth --service panoramax')",
    )
    t.add_argument(
        "--wait",
        action="store_true",
        help="with --to panoramax: return once the server has prepared every picture",
    )
    add_report_option(p)


def register(subparsers: argparse._SubParsersAction) -> None:

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
    if args.organization_id is not None and not str(args.organization_id).isdigit():
        raise UsageError("--organization-id must be numeric")
    if args.to == "panoramax":
        if not args.api_url:
            raise UsageError(
                "--to panoramax needs --api-url URL", hint="e.g. https://panoramax.openstreetmap.fr"
            )
        if not str(args.api_url).startswith(("http://", "https://")):
            raise UsageError(f"--api-url must be an http(s) URL, not {args.api_url!r}")
        if args.organization_id is not None or args.endpoint:
            raise UsageError("--organization-id and --endpoint are Mapillary options")
    elif args.api_url or args.wait:
        raise UsageError("--api-url and --wait go with --to panoramax")


def run(args: argparse.Namespace) -> int:
    from ..metadata import parse_timezone
    from ..pipeline import Options
    from ..pipeline.video import VideoOptions

    _check(args)
    tz = parse_timezone(args.timezone)  # a bad zone is a UsageError already
    # Folders without a description file are processed in memory with these options
    # (their videos too: each is read, checked and uploaded as CAMM).
    options = Options(tz=tz, recursive=args.subfolders, videos=VideoOptions())
    return _run(args, args.paths, options, reprocess=False)


def run_process_and_upload(args: argparse.Namespace) -> int:
    _check(args)
    for t in args.trees:
        if t.startswith("s3://"):
            from ..storage.s3_config import S3Location

            S3Location.parse(t)  # a bad URL is a usage error before any work
        elif not os.path.isdir(t):
            raise UsageError(f"no such folder: {t}")
    return _run(args, args.trees, options_from_args(args), reprocess=True)


def _run(args: argparse.Namespace, paths: list[str], process: Options, *, reprocess: bool) -> int:
    """One road for both verbs: :meth:`amly.Client.upload`."""
    summary = Summary("process-and-upload" if reprocess else "upload")
    report = report_from_args(args, f"amly {summary.verb}: " + ", ".join(map(str, paths)))
    entered: list[Any] = []
    progress = Progress("upload", None, enabled=not (args.no_progress or args.quiet))
    done = {"images": 0}

    def on_progress(p: UploadProgress) -> None:
        progress.total = p.images_total
        progress.label = f"upload {p.bytes_done / 1e6:,.1f} MB"
        progress.update(p.images_done - done["images"])
        done["images"] = p.images_done

    waited: list[Any] = []
    if args.to and args.to != "panoramax":
        from ..storage.s3_config import S3Location

        S3Location.parse(args.to)  # a bad URL is a usage error before any work

    async def main() -> UploadResult:
        async with client_from_args(args, journal=args.journal) as client:
            target: Target | None = None
            if args.to == "panoramax":
                target = client.panoramax_target(
                    args.api_url, token_from_args(args), profile=args.profile
                )
            elif args.to and not args.dry_run:
                from ..storage.s3_target import S3Target

                target = S3Target(args.to, journal=args.journal, concurrency=args.concurrency)
            try:
                result = await client.upload(
                    paths,
                    target=target,
                    process=process,
                    reprocess=reprocess,
                    organization_id=args.organization_id,
                    subfolders=getattr(args, "subfolders", False),
                    reupload=args.reupload,
                    dry_run=args.dry_run,
                    progress=on_progress,
                    on_sequence=entered.append if report is not None else None,
                )
                if args.to == "panoramax" and args.wait and not args.dry_run:
                    waited.extend(await _wait(target, result, args))
                return result
            finally:
                if target is not None and hasattr(target, "close"):
                    await target.close()

    try:
        result = run_async(main())
    finally:
        progress.close()
    if reprocess:
        summary.count("processed", result.processed)
    _summarise(summary, result, args.dry_run)
    if args.to == "panoramax":
        _panoramax_summary(summary, result, waited, args.wait)
    if report is not None:
        report.add_upload_sequences(entered)
        report.add_processed(errors=[*result.failures, *result.duplicates])
        report.add_upload(
            {"verb": summary.verb, "failures": summary.failures, **summary.info},
            source="this run",
        )
        write_report(args, report, summary)
    nothing = not summary.counts.get("images") and not summary.counts.get("videos")
    if nothing and not summary.failures and not args.quiet:
        hint = (
            "" if getattr(args, "subfolders", True) else " (photos in subfolders? add --subfolders)"
        )
        print(f"amly: nothing to upload{hint}", file=sys.stderr)
    return summary.emit(args)


def _summarise(summary: Summary, result: UploadResult, dry_run: bool) -> None:
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
    photo_seqs = [s for s in result.sequences if not s.video]
    summary.count("sequences", len(photo_seqs))
    summary.count("images", sum(s.images for s in photo_seqs))
    if len(photo_seqs) < len(result.sequences):
        summary.count("videos", sum(s.images for s in result.sequences if s.video))
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


async def _wait(target: Any, result: UploadResult, args: argparse.Namespace) -> list[Any]:
    """``--wait``: follow the server's preparation of every set, with its own progress bar."""
    preparing = Progress("server preparing", None, enabled=not (args.no_progress or args.quiet))
    done = {"prepared": 0}

    def on_wait(w: Any) -> None:
        preparing.total = w.total
        preparing.update(w.prepared - done["prepared"])
        done["prepared"] = w.prepared

    try:
        return list(await target.wait_ready(result.cluster_ids, on_wait))
    finally:
        preparing.close()


def _panoramax_summary(
    summary: Summary, result: UploadResult, waited: list[Any], wait: bool
) -> None:
    """Panoramax words for the summary: upload sets and their collections."""
    summary.info["upload_set_ids"] = summary.info.pop("cluster_ids", [])
    status = {w.set_id: w for w in waited}
    for entry in summary.info.get("sequences", []):
        set_id = entry.pop("cluster_id", None)
        entry["upload_set_id"] = set_id
        w = status.get(set_id)
        if w is not None:
            entry["collections"] = w.collections
            entry["ready"] = w.ready
            entry["broken"] = w.broken
            if w.error:
                kind = "broken upload set" if w.broken else "upload set"
                summary.fail(w.error, path=entry["name"], kind=kind)
    summary.count("rejected", sum(1 for f in result.failures if "rejected" in f.message))
    if wait:
        summary.count("ready_sets", sum(1 for w in waited if w.ready))
