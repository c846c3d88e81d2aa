"""``amly process``: everything before an upload, in memory, without touching a photo.

Reads every JPEG under DIR (subfolders included) in a process pool, optionally geotags from
a GPX/NMEA track, groups by folder and camera, cuts sequences (distance/time), drops
near-duplicates, fills directions, flags GPS jumps and (0,0) fixes. Writes
``mapillary_image_description.json`` in the official format (readable by
``mapillary_tools upload``): by default one per DIR, listing the photos under it; with
``--desc-path`` one file for all (``-`` = stdout). ``--geojson`` also writes the sequences
as LineStrings and the flagged photos as Points (property ``type`` = error type).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import DuplicateError, UsageError
from ._common import (
    Progress,
    Summary,
)
from ._options import (
    add_output_options,
    add_process_options,
    add_report_option,
    add_s3_options,
    add_timezone_option,
    options_from_args,
    report_from_args,
    write_report,
)

if TYPE_CHECKING:
    from ..pipeline import GroupResult

EPILOG = """\
examples:
  amly process photos/
  amly process day1/ day2/ --desc-path all.json --geojson map.geojson
  amly process photos/ --gpx track.gpx --offset-time -3.5 --interpolate-directions
  amly process photos/ --cutoff-distance 50 --cutoff-time 30 --duplicate-distance 1
  amly process gopro/ --filetypes video        # GoPro, CAMM, BlackVue: one entry per video
  amly process dashcam/ --gpx drive.gpx --video-gpx replace
  amly process photos/ --report map.html       # see the sequences, duplicates, GPS errors

Duplicates are not failures (they are simply not uploaded).
exit codes: 0 every photo is ready or a duplicate, 1 some photos failed (listed; their
entries in the description file say why), 2 bad arguments
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "process",
        help="geotag, split, dedup in memory and write mapillary_image_description.json",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dirs", metavar="DIR", nargs="+", help="folders (or single JPEGs) to process")
    add_process_options(p)
    add_timezone_option(p)
    g = p.add_argument_group("outputs")
    g.add_argument(
        "--desc-path",
        metavar="PATH",
        help="one description file for everything ('-' = stdout) "
        "[DIR/mapillary_image_description.json for each DIR]",
    )
    g.add_argument("--geojson", metavar="PATH", help="also write sequences and flagged photos")
    add_report_option(p)
    add_s3_options(p)
    p.add_argument(
        "--dask",
        metavar="SCHEDULER",
        help="read the photos on a Dask cluster: local:N or tcp://HOST:8786 (needs amly[dask]; "
        "the folders at the same paths on every worker); sequences are built here",
    )
    add_output_options(p)
    p.set_defaults(func=run)


def _official_json(entries: list[dict[str, Any]]) -> bytes:
    # Byte for byte how mapillary_tools serializes it (compact, sorted keys); compact JSON
    # also takes the C encoder, ~10x faster than an indented dump on big runs.
    return json.dumps(entries, sort_keys=True, separators=(",", ":")).encode("utf-8")


def write_description(path: str | os.PathLike[str], entries: list[dict[str, Any]]) -> None:
    """Write a description file atomically, formatted as the official tool writes it."""
    from .._atomic import atomic_write

    atomic_write(path, _official_json(entries))


def _videos(
    args: argparse.Namespace,
    options: Any,
    roots: list[str],
    entries: dict[str, list[dict[str, Any]]],
    summary: Summary,
    by_type: dict[str, int],
) -> None:
    """Each video under the DIRs as one entry (or one error entry); which clock gave its
    times goes to the summary."""
    from ..pipeline.video import find_videos, iter_videos

    videos = find_videos(args.dirs, recursive=options.recursive)
    if not videos:
        return
    progress = Progress("videos", len(videos), enabled=not (args.no_progress or args.quiet))
    clocks: dict[str, int] = {}
    sources: dict[str, int] = {}
    for res in iter_videos(
        videos,
        options.videos,
        track=options.track,
        offset=options.track_offset,
        workers=options.workers,
        keep_points=False,
    ):
        progress.update()
        root = res.root if res.root in entries else roots[0]
        entries.setdefault(root, []).append(res.description_entry())
        summary.count("videos")
        if res.error is not None:
            by_type[res.error.kind] = by_type.get(res.error.kind, 0) + 1
            summary.fail(res.error)
            continue
        summary.count("videos_ready")
        clocks[res.clock] = clocks.get(res.clock, 0) + 1
        sources[res.source] = sources.get(res.source, 0) + 1
    progress.close()
    summary.info["video_clocks"] = clocks
    summary.info["video_tracks_from"] = sources
    if clocks.get("camera") and not args.quiet and not args.json:
        print(
            f"process: {clocks['camera']} video(s) have no GPS time: their times come from the "
            "camera clock (mvhd), often local time; check them or give --gpx",
            file=sys.stderr,
        )


def _groups(args: argparse.Namespace, options: Any, progress: Any, folders: Any) -> Iterator[Any]:
    """The folders' results, read in local processes or, with ``--dask``, on the cluster."""
    from ..pipeline import iter_groups

    if not args.dask:
        yield from iter_groups(args.dirs, options, on_read=progress.update, folders=folders)
        return
    from ..distributed.cluster import connect
    from ..distributed.pool import DaskPool

    dask, cluster = connect(args.dask)
    try:
        pool = DaskPool(dask)
        yield from iter_groups(
            args.dirs, options, on_read=progress.update, folders=folders, pool=pool
        )
    finally:
        dask.close()
        if cluster is not None:
            cluster.close()


def _count_group(summary: Summary, by_type: dict[str, int], group: GroupResult) -> None:
    """One processed folder into the summary: photos, sequences, duplicates, failures."""
    summary.count("images", len(group.folder.files))
    summary.count("sequences", len(group.sequences))
    summary.count("ready", sum(len(s.images) for s in group.sequences))
    for e in group.errors:
        by_type[e.kind] = by_type.get(e.kind, 0) + 1
        if isinstance(e, DuplicateError):
            summary.count("duplicates")
        else:
            summary.fail(e)


def run(args: argparse.Namespace) -> int:
    from .. import description
    from .._atomic import atomic_write
    from ..pipeline import description_entries, geojson_features, scan

    if args.desc_path == "-" and args.json:
        raise UsageError("--desc-path - and --json both want stdout; pick one")
    options = options_from_args(args)
    if any(d.startswith("s3://") for d in args.dirs):
        return _run_s3(args, options)
    for d in args.dirs:
        if not os.path.exists(d):
            raise UsageError(f"no such file or folder: {d}")
    summary = Summary("process")
    folders = scan(args.dirs, recursive=options.recursive) if options.images else []
    total = sum(len(f.files) for f in folders)
    progress = Progress("processing", total, enabled=not (args.no_progress or args.quiet))
    roots = [os.path.abspath(d) for d in args.dirs]
    entries: dict[str, list[dict[str, Any]]] = {r: [] for r in roots}
    features: list[dict[str, Any]] = []
    by_type: dict[str, int] = {}
    report = report_from_args(args, "amly process: " + ", ".join(args.dirs))
    groups = _groups(args, options, progress, folders) if options.images else iter(())
    for group in groups:
        root = group.folder.root if group.folder.root in entries else roots[0]
        entries.setdefault(root, []).extend(description_entries(group))
        if report is not None:
            report.add_processed(group.sequences, group.errors, source=root)
        if args.geojson:
            features.extend(geojson_features(group))
        _count_group(summary, by_type, group)
    progress.close()
    if options.videos is not None:
        _videos(args, options, roots, entries, summary, by_type)

    written = []
    if args.desc_path == "-":
        every = [e for r in roots for e in entries.get(r, [])]
        sys.stdout.write(_official_json(every).decode() + "\n")
    elif args.desc_path:
        write_description(args.desc_path, [e for r in roots for e in entries.get(r, [])])
        written.append(os.path.abspath(args.desc_path))
    else:
        for root, items in entries.items():
            folder = root if os.path.isdir(root) else os.path.dirname(root)
            path = os.path.join(folder, description.DESCRIPTION_FILE)
            write_description(path, items)
            written.append(path)
    if args.geojson:
        doc = {"type": "FeatureCollection", "features": features}
        atomic_write(args.geojson, json.dumps(doc).encode())
        written.append(os.path.abspath(args.geojson))
    summary.info["errors_by_type"] = dict(sorted(by_type.items()))
    summary.info["written"] = written
    write_report(args, report, summary)
    code = summary.emit(args)
    if not args.quiet and not args.json and by_type:
        print(
            "by type: " + ", ".join(f"{k} {t}" for t, k in sorted(by_type.items())), file=sys.stderr
        )
    return code


def _run_s3(args: argparse.Namespace, options: Any) -> int:
    """``amly process s3://bucket/prefix...``: the photos read with ranged GETs (nothing
    staged on local disk), each prefix's description file stored beside its photos in the
    bucket (file names relative to that prefix), so that ``amly upload s3://bucket/prefix``
    sends them on."""
    from .. import description
    from ..pipeline import description_entries
    from ..storage.s3 import S3Client
    from ..storage.s3_config import S3Config, S3Location
    from ..storage.s3_source import s3_groups
    from ._common import run_async

    if args.geojson or args.desc_path not in (None, "-"):
        raise UsageError(
            "with an s3:// source, --geojson and --desc-path FILE are for local folders "
            "(--desc-path - prints the file)"
        )
    if not all(d.startswith("s3://") for d in args.dirs):
        raise UsageError("give either s3:// prefixes or local folders, not both in one run")
    from ._options import apply_s3_options

    apply_s3_options(args)
    summary = Summary("process")
    printed: list[dict[str, Any]] = []
    by_type: dict[str, int] = {}
    written = []

    # file_entry() writes os.path.abspath(path): for a URL that is this marker + "bucket/key"
    marker = os.path.join(os.path.abspath("s3:"), "")

    async def one(url: str, entries: list[dict[str, Any]]) -> None:
        loc = S3Location.parse(url)
        base = f"s3://{loc.bucket}/{loc.prefix}".rstrip("/") + "/"
        # printed for several prefixes: whole URLs (relative names would be ambiguous)
        relative = args.desc_path != "-" or len(args.dirs) == 1
        async for group in s3_groups(url, options):
            for e in description_entries(group):
                name = str(e.get("filename", ""))
                full = "s3://" + name[len(marker) :] if name.startswith(marker) else name
                e["filename"] = full[len(base) :] if relative and full.startswith(base) else full
                entries.append(e)
            _count_group(summary, by_type, group)
        if args.desc_path == "-":
            return
        async with S3Client(S3Config.from_env()) as s3:
            key = loc.join(description.DESCRIPTION_FILE)
            await s3.put(loc.bucket, key, _official_json(entries), content_type="application/json")
        written.append(base + description.DESCRIPTION_FILE)

    for url in args.dirs:  # each prefix stored once done: a later failing one keeps them
        entries: list[dict[str, Any]] = []
        run_async(one(url, entries))
        printed.extend(entries)
    if args.desc_path == "-":
        sys.stdout.write(_official_json(printed).decode() + "\n")
    summary.info["errors_by_type"] = dict(sorted(by_type.items()))
    summary.info["written"] = written
    return summary.emit(args)
