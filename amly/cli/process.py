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
from typing import Any

from ..errors import DuplicateError, UsageError
from ._common import (
    Progress,
    Summary,
)
from ._options import (
    add_output_options,
    add_process_options,
    add_report_option,
    add_timezone_option,
    options_from_args,
    report_from_args,
    write_report,
)

EPILOG = """\
examples:
  amly process photos/
  amly process day1/ day2/ --desc-path all.json --geojson map.geojson
  amly process photos/ --gpx track.gpx --offset-time -3.5 --interpolate-directions
  amly process photos/ --cutoff-distance 50 --cutoff-time 30 --duplicate-distance 1
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


def run(args: argparse.Namespace) -> int:
    from .. import description
    from .._atomic import atomic_write
    from ..pipeline import description_entries, geojson_features, iter_groups, scan

    if args.desc_path == "-" and args.json:
        raise UsageError("--desc-path - and --json both want stdout; pick one")
    options = options_from_args(args)
    for d in args.dirs:
        if not os.path.exists(d):
            raise UsageError(f"no such file or folder: {d}")
    summary = Summary("process")
    folders = scan(args.dirs, recursive=options.recursive)
    total = sum(len(f.files) for f in folders)
    progress = Progress("processing", total, enabled=not (args.no_progress or args.quiet))
    roots = [os.path.abspath(d) for d in args.dirs]
    entries: dict[str, list[dict[str, Any]]] = {r: [] for r in roots}
    features: list[dict[str, Any]] = []
    by_type: dict[str, int] = {}
    report = report_from_args(args, "amly process: " + ", ".join(args.dirs))
    for group in iter_groups(args.dirs, options, on_read=progress.update, folders=folders):
        root = group.folder.root if group.folder.root in entries else roots[0]
        entries.setdefault(root, []).extend(description_entries(group))
        if report is not None:
            report.add_processed(group.sequences, group.errors, source=root)
        if args.geojson:
            features.extend(geojson_features(group))
        summary.count("images", len(group.folder.files))
        summary.count("sequences", len(group.sequences))
        summary.count("ready", sum(len(s.images) for s in group.sequences))
        for e in group.errors:
            by_type[e.kind] = by_type.get(e.kind, 0) + 1
            if isinstance(e, DuplicateError):
                summary.count("duplicates")
            else:
                summary.fail(e)
    progress.close()

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
