"""``amly dedup``: move near-duplicate photos (red-light stops...) out of a folder.

Photos are grouped by folder and camera and ordered by capture time; a photo within
``-d`` metres of the last kept photo and pointing the same way (within ``--angle`` degrees)
is a duplicate and moves to DUPLICATE_DIR. Photos with broken or unrealistic EXIF (unreadable,
no time, no position, a fix at 0,0) move to the error folder. Moves keep file names and
subfolders, are atomic renames, and never replace a file already in the target.

Default targets sit NEXT TO DIR (so a rescan of DIR does not see them):
DIR_duplicates/ and DIR_errors/.
"""

from __future__ import annotations

import argparse
import os

from ._inplace import move, read_dir, usable
from ._options import add_output_options, add_timezone_option

EPILOG = """\
examples:
  amly dedup photos/                      # -> photos_duplicates/, photos_errors/
  amly dedup -d 0.5 --angle 10 photos/ dups/
  amly dedup photos/ --flag-only --json   # report only, move nothing

exit codes: 0 done (duplicates are not failures), 1 some photos had bad EXIF or could not be
moved (listed), 2 bad arguments
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dedup",
        help="move near-duplicate photos (and photos with bad EXIF) out of a folder",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder of geotagged JPEGs (subfolders included)")
    p.add_argument(
        "duplicate_dir",
        metavar="DUPLICATE_DIR",
        nargs="?",
        help="where duplicates go [DIR_duplicates next to DIR]",
    )
    p.add_argument(
        "-d",
        "--duplicate-distance",
        "--min-distance",
        dest="distance",
        type=float,
        default=0.1,
        metavar="METERS",
        help="photos this close to the last kept one are duplicates [0.1]",
    )
    p.add_argument(
        "--angle",
        "--duplicate-angle",
        dest="angle",
        type=float,
        default=5.0,
        metavar="DEG",
        help="... if they also point within this many degrees of it [5]",
    )
    p.add_argument(
        "--error-dir", metavar="DIR", help="where photos with bad EXIF go [DIR_errors next to DIR]"
    )
    p.add_argument("--flag-only", action="store_true", help="only report; move nothing")
    add_timezone_option(p)
    add_output_options(p)
    p.set_defaults(func=run)


def default_targets(directory: str) -> tuple[str, str]:
    """(duplicates, errors) folders next to ``directory``.

    >>> default_targets("/data/photos/")
    ('/data/photos_duplicates', '/data/photos_errors')
    """
    base = os.path.abspath(directory).rstrip(os.sep)
    return base + "_duplicates", base + "_errors"


def run(args: argparse.Namespace) -> int:
    from .. import sequence
    from ..metadata import parse_timezone
    from ..pipeline import Pool

    root = os.path.abspath(args.dir)
    tz = parse_timezone(args.timezone)
    with Pool() as pool:
        summary, images, bad, n = read_dir(args, "dedup", tz=tz, pool=pool, path=root)
    dup_default, err_default = default_targets(root)
    dup_dir = os.path.abspath(args.duplicate_dir or dup_default)
    err_dir = os.path.abspath(args.error_dir or err_default)
    located = usable(
        images,
        bad,
        hint="set the time with `amly fix-dates` or the position with `amly geotag`",
        check=sequence.check_null_island,
    )
    duplicates = []
    for group in sequence.group_images(located):
        _, dups = sequence.find_duplicates(group, args.distance, args.angle)
        duplicates.extend(dups)

    def target(base: str, path: str) -> str:
        return os.path.join(base, os.path.relpath(path, root))

    moves = [(e, target(err_dir, e.path), "errors") for e in bad]
    moves += [(e, target(dup_dir, e.path), "duplicates") for e in duplicates]
    summary.count("images", n)
    summary.count("duplicates", len(duplicates))
    flagged = []
    for error, dst, kind in moves:
        flagged.append({"file": error.path, "type": error.kind, "to": dst, "error": error.message})
        if kind == "errors":
            summary.fail(error)
        if not args.flag_only:
            move(summary, error.path, dst, count=f"moved to {kind}")
    summary.info["duplicate_dir"] = dup_dir
    summary.info["error_dir"] = err_dir
    summary.info["flagged"] = flagged
    summary.info["moved"] = not args.flag_only
    return summary.emit(args)
