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
import sys
from datetime import datetime
from typing import Any

from ..errors import UsageError
from ..types import ImageMeta
from ._common import add_offset_angle_option, add_output_options, add_timezone_option, finite_float
from ._inplace import read_dir, write_each

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


def add_track_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    """``--gpx``/``--nmea``, ``--offset-time``, ``--use-gpx-start-time``, ``--max-gap``:
    shared by ``geotag`` and ``process``."""
    g = p.add_argument_group("track")
    src = g.add_mutually_exclusive_group(required=required)
    src.add_argument("--gpx", metavar="FILE", help="GPX track to take positions from")
    src.add_argument("--nmea", metavar="FILE", help="NMEA log to take positions from")
    g.add_argument(
        "--offset-time",
        type=finite_float,
        default=0.0,
        metavar="S",
        help="seconds to add to camera times to get GPS times (camera clock offset) [0]",
    )
    g.add_argument(
        "--use-gpx-start-time",
        action="store_true",
        help="align the first photo with the first track point (then apply --offset-time)",
    )
    g.add_argument(
        "--max-gap",
        type=float,
        default=None,
        metavar="S",
        help="photos between track points further apart than this are not geotagged "
        "[no limit, as mapillary_tools]",
    )


def load_track(args: argparse.Namespace) -> list[list[Any]] | None:
    """The track segments named by ``--gpx``/``--nmea`` (None if neither)."""
    path = getattr(args, "gpx", None) or getattr(args, "nmea", None)
    if not path:
        return None
    from .. import gpx  # only now: XML parsing imports are not free

    try:
        tracks = gpx.read_tracks(path, nmea=True if getattr(args, "nmea", None) else None)
    except FileNotFoundError:
        raise UsageError(f"no such track file: {path}") from None
    except OSError as e:
        raise UsageError(f"cannot read the track {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"cannot read the track {path}: {e}") from None
    segments = [seg for trk in tracks for seg in trk.segments]
    dropped = sum(t.dropped for t in tracks)
    bad_elevations = sum(t.bad_elevations for t in tracks)
    why = (
        f"{dropped} point(s) left out: position not a number or out of range, or time "
        "unreadable or implausible"
    )
    if not any(segments):
        raise UsageError(
            f"the track {path} has no usable points" + (f" ({why})" if dropped else ""),
            hint="check that the file is the logger's track and not damaged",
        )
    if (dropped or bad_elevations) and not getattr(args, "quiet", False):
        notes = [why] if dropped else []
        if bad_elevations:
            notes.append(
                f"{bad_elevations} elevation(s) ignored: not a number or beyond -1000..100000 m"
            )
        print(f"amly: warning: track {path}: " + "; ".join(notes), file=sys.stderr)
    return segments


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
