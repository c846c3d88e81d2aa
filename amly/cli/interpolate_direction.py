"""``amly interpolate-direction``: point each photo towards the next one, in place.

Photos are grouped by folder and camera and ordered by capture time; each gets the bearing
to its successor (the last one keeps its predecessor's), plus ``--offset-angle`` for cameras
not facing forward. Only the EXIF direction changes (lossless).
"""

from __future__ import annotations

import argparse

from ..errors import GeotagError, UsageError
from ..types import ImageMeta
from ._common import Progress, Summary, add_output_options, add_timezone_option

EPILOG = """\
examples:
  amly interpolate-direction photos/
  # a camera looking out of the right window
  amly interpolate-direction photos/ --offset-angle 90

exit codes: 0 all photos updated, 1 some photos failed (listed), 2 bad arguments
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "interpolate-direction",
        help="set each photo's direction towards the next photo (in place, lossless)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder of geotagged JPEGs (subfolders included)")
    p.add_argument(
        "--offset-angle",
        type=float,
        default=0.0,
        metavar="DEG",
        help="degrees added to every direction (camera not facing forward) [0]",
    )
    add_timezone_option(p)
    add_output_options(p)
    p.set_defaults(func=run)


def _write_heading(m: ImageMeta) -> str:
    from ..metadata import update_exif

    update_exif(m.path, heading=m.heading)  # only the direction: positions stay bit-identical
    return m.path


def run(args: argparse.Namespace) -> int:
    from .. import sequence
    from ..metadata import parse_timezone
    from ..pipeline import Pool, read_all, scan

    try:
        tz = parse_timezone(args.timezone)
        folders = scan([args.dir])
    except FileNotFoundError:
        raise UsageError(f"no such folder: {args.dir}") from None
    except (ValueError, KeyError) as e:
        raise UsageError(f"unknown time zone {args.timezone!r}: {e}") from None
    summary = Summary("interpolate-direction")
    quiet = args.no_progress or args.quiet
    n = sum(len(f.files) for f in folders)
    with Pool() as pool:
        progress = Progress("reading", n, enabled=not quiet)
        images, errors = read_all(folders, tz=tz, pool=pool, on_read=progress.update)
        progress.close()
        for err in errors:
            summary.fail(err)
        usable = []
        for m in images:
            if m.capture_time is None or not m.has_position():
                summary.fail(
                    GeotagError(m.path, "no capture time or GPS position", hint="geotag it first")
                )
            else:
                usable.append(m)
        oriented = [
            m
            for group in sequence.group_images(usable)
            for m in sequence.interpolate_headings(group, args.offset_angle)
        ]
        progress = Progress("writing", len(oriented), enabled=not quiet)
        for r in pool.map(_write_heading, oriented):
            if isinstance(r, str):
                summary.count("updated")
            else:
                summary.fail(r)
            progress.update()
        progress.close()
    return summary.emit(args)
