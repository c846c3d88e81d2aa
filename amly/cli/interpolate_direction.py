"""``amly interpolate-direction``: point each photo towards the next one, in place.

Photos are grouped by folder and camera and ordered by capture time; each gets the bearing
to its successor (the last one keeps its predecessor's), plus ``--offset-angle`` for cameras
not facing forward. Only the EXIF direction changes (lossless).
"""

from __future__ import annotations

import argparse

from ..types import ImageMeta
from ._inplace import read_dir, usable, write_each
from ._options import add_offset_angle_option, add_output_options, add_timezone_option

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
    add_offset_angle_option(p)
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
    from ..pipeline import Pool

    tz = parse_timezone(args.timezone)
    with Pool() as pool:
        summary, images, errors, _ = read_dir(args, "interpolate-direction", tz=tz, pool=pool)
        located = usable(images, errors, hint="geotag it first")
        for err in errors:
            summary.fail(err)
        oriented = [
            m
            for group in sequence.group_images(located)
            for m in sequence.interpolate_headings(group, args.offset_angle)
        ]
        write_each(args, summary, pool, _write_heading, oriented, label="writing", count="updated")
    return summary.emit(args)
