"""``amly geotag``: write positions from a GPX or NMEA track into photos, in place.

Each photo's camera time (DateTimeOriginal, plus ``--offset-time``) is looked up in the
track; latitude, longitude, altitude, the direction of travel and the GPS date/time stamp
(the corrected time, in UTC) are written losslessly (only the EXIF segment changes). The
camera's own DateTimeOriginal is never rewritten: it stays what the lookup starts from, so
running the same command again gives the same files (photos already right are not
rewritten), and a different ``--offset-time`` replaces the earlier one instead of adding
to it. Readers that prefer the GPS stamp, as ``amly process`` and mapillary_tools do, get
the corrected capture time. Photos taken before or after the track, or inside a hole in it
longer than ``--max-gap``, are reported and left untouched.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from ..types import ImageMeta
from ._inplace import read_dir, write_each
from ._options import (
    add_offset_angle_option,
    add_output_options,
    add_timezone_option,
    add_track_options,
    load_track,
)

EPILOG = """\
examples:
  amly geotag photos/ --gpx track.gpx
  # the camera clock is 12.5 s behind the GPS clock
  amly geotag photos/ --gpx track.gpx --offset-time 12.5
  # rerunning it changes nothing; a new offset replaces 12.5 (DateTimeOriginal is kept)
  amly geotag photos/ --gpx track.gpx --offset-time 13
  # point each photo at the next one instead of the track's direction, camera looks left
  amly geotag photos/ --nmea log.nmea --interpolate-direction --offset-angle 270

exit codes: 0 all photos geotagged, 1 some photos failed (listed, not modified),
2 bad arguments or unreadable track
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "geotag",
        help="write positions from a GPX/NMEA track into photos (in place, lossless)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder of JPEGs (subfolders included)")
    add_track_options(p, required=True)
    p.add_argument(
        "--interpolate-direction",
        action="store_true",
        help="direction = towards the next photo (default: the track's direction of travel)",
    )
    add_offset_angle_option(p)
    add_timezone_option(p)
    add_output_options(p)
    p.set_defaults(func=run)


def _write_position(item: tuple[ImageMeta, datetime | None]) -> str:
    """Write one photo's position (and GPS stamp); a photo that already holds exactly these
    values is left alone (no rewrite, same bytes and mtime), which makes reruns free."""
    from ..metadata import set_exif_bytes
    from ..metadata.write import read_file, replace_file

    m, stamp = item
    old = read_file(m.path)
    new = set_exif_bytes(
        old, lat=m.lat, lon=m.lon, alt=m.alt, heading=m.heading, gps_time=stamp, name=m.path
    )
    if new != old:
        replace_file(m.path, new)
    return m.path


def _directions(images: list[ImageMeta], args: argparse.Namespace) -> list[ImageMeta]:
    from .. import sequence

    out: list[ImageMeta] = []
    for group in sequence.group_images(images):
        if args.interpolate_direction:
            out.extend(sequence.interpolate_headings(group, args.offset_angle))
        elif args.offset_angle:
            out.extend(sequence.rotate_headings(group, args.offset_angle))
        else:
            out.extend(group)
    return out


def run(args: argparse.Namespace) -> int:
    from ..metadata import parse_timezone
    from ..pipeline import Pool, geotag_from_track

    tz = parse_timezone(args.timezone)
    track = load_track(args)
    assert track is not None
    with Pool() as pool:
        summary, images, errors, n = read_dir(args, "geotag", tz=tz, pool=pool)
        for err in errors:
            summary.fail(err)
        tagged, outside = geotag_from_track(
            images,
            track,
            offset_time=args.offset_time,
            use_gpx_start_time=args.use_gpx_start_time,
            max_gap=args.max_gap,
        )
        for err in outside:
            summary.fail(err)
        tagged = _directions(tagged, args)
        # The GPS stamp gets the corrected time (what readers take as capture time); a photo
        # without a camera time was looked up by its GPS stamp, which therefore stays as it
        # is (rewriting it would move the next run's lookup).
        items = [(m, m.capture_time if m.camera_time is not None else None) for m in tagged]
        write_each(args, summary, pool, _write_position, items, label="writing", count="geotagged")
    summary.info["images"] = n
    return summary.emit(args)
