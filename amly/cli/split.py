"""``amly split``: move the photos of a folder into one subfolder per sequence.

Photos (the folder's own, not its subfolders') are grouped by camera, ordered by capture
time and cut where consecutive photos are more than CUTOFF_DISTANCE metres or CUTOFF_TIME
seconds apart. Each sequence moves to DIR/sequence_0000, DIR/sequence_0001, ... (numbering
continues after existing sequence folders; files are never replaced). Without CUTOFF_TIME it
is estimated from the photos' time gaps and printed.
"""

from __future__ import annotations

import argparse
import os
import re

from ..errors import UsageError
from ._inplace import move, read_dir, usable
from ._options import add_output_options, add_timezone_option

EPILOG = """\
examples:
  amly split photos/ 100 60
  amly split photos/ 50            # cutoff time estimated and printed

exit codes: 0 all photos moved, 1 some photos could not be used or moved (listed, left in
place), 2 bad arguments
"""

SEQUENCE_DIR = re.compile(r"^sequence_(\d+)$")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "split",
        help="move photos into one subfolder per sequence (distance/time cutoffs)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder of geotagged JPEGs")
    p.add_argument(
        "cutoff_distance", metavar="CUTOFF_DISTANCE", type=float, help="metres between sequences"
    )
    p.add_argument(
        "cutoff_time",
        metavar="CUTOFF_TIME",
        type=float,
        nargs="?",
        help="seconds between sequences [estimated from the photos]",
    )
    add_timezone_option(p)
    add_output_options(p)
    p.set_defaults(func=run)


def next_index(directory: str) -> int:
    """First free sequence folder number in ``directory``."""
    taken = [
        int(m.group(1))
        for name in os.listdir(directory)
        if (m := SEQUENCE_DIR.match(name)) and os.path.isdir(os.path.join(directory, name))
    ]
    return max(taken) + 1 if taken else 0


def run(args: argparse.Namespace) -> int:
    from .. import sequence
    from ..metadata import parse_timezone
    from ..pipeline import Pool

    root = os.path.abspath(args.dir)
    if args.cutoff_distance <= 0 or (args.cutoff_time is not None and args.cutoff_time <= 0):
        raise UsageError("cutoffs must be positive")
    tz = parse_timezone(args.timezone)
    with Pool() as pool:
        summary, images, bad, _ = read_dir(
            args, "split", tz=tz, pool=pool, path=root, recursive=False
        )
    located = usable(images, bad, hint="left in place")
    for err in bad:
        summary.fail(err)
    cutoff_time = args.cutoff_time
    if cutoff_time is None:
        cutoff_time = sequence.estimate_cutoff_time(located)
        summary.info["estimated_cutoff_time"] = cutoff_time
        if not args.quiet and not args.json:
            print(f"estimated cutoff time: {cutoff_time:g} s")
    seqs = [
        s
        for group in sequence.group_images(located)
        for s in sequence.split_sequences(
            group, cutoff_distance=args.cutoff_distance, cutoff_time=cutoff_time, max_images=None
        )
        if s
    ]
    seqs.sort(key=lambda s: sequence.sort_key(s[0]))
    first = next_index(root)
    folders_out = []
    for k, s in enumerate(seqs):
        target = os.path.join(root, f"sequence_{first + k:04d}")
        folders_out.append({"folder": target, "images": len(s)})
        for m in s:
            dst = os.path.join(target, os.path.basename(m.path))
            move(summary, m.path, dst, count="moved", where=target)
    summary.count("sequences", len(seqs))
    summary.info["cutoff_time"] = cutoff_time
    summary.info["cutoff_distance"] = args.cutoff_distance
    summary.info["sequences"] = folders_out
    return summary.emit(args)
