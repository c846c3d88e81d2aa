"""Every option more than one verb takes, defined once: output, time zone, direction offset,
track, processing, and the network options every network verb shares identically
(``--endpoint``, ``--token``, ``--profile``, ``--concurrency``), plus building the
:class:`amly.Client` they describe.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..client import Client
    from ..config import Secret
    from ..net import Limits
    from ..pipeline import Options
    from ..report import Report
    from ._common import Summary


def add_output_options(p: argparse.ArgumentParser) -> None:
    """``--json``, ``--quiet``, ``--verbose``, ``--no-progress``: the same on every verb."""
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_timezone_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timezone",
        metavar="TZ",
        help="zone of EXIF times that carry no offset (IANA name like Europe/Berlin, or "
        "+02:00); default: this machine's zone",
    )


def finite_float(text: str) -> float:
    """An argparse type: a real number (not nan or inf) below 1e10 in size (1e10 s is three
    centuries: no offset can push a time past the calendar's end).

    >>> finite_float("-12.5")
    -12.5
    >>> finite_float("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: not a finite number below 1e10: 'nan'
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not abs(value) < 1e10:  # also NaN
        raise argparse.ArgumentTypeError(f"not a finite number below 1e10: {text!r}")
    return value


def add_offset_angle_option(p: argparse._ActionsContainer) -> None:
    """``--offset-angle``: the same option (and default) wherever directions are computed."""
    p.add_argument(
        "--offset-angle",
        type=finite_float,
        default=0.0,
        metavar="DEG",
        help="degrees added to every direction (camera not facing forward) [0]",
    )


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
    """The track segments named by ``--gpx``/``--nmea`` (None if neither). Bad points were
    dropped by the reader and are reported here; a track with none left is refused."""
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


def add_process_options(p: argparse.ArgumentParser) -> None:
    """Sequence, duplicate, direction and track options: shared with ``process-and-upload``."""
    g = p.add_argument_group("sequences (defaults: mapillary_tools')")
    g.add_argument(
        "--cutoff-distance",
        type=float,
        default=100.0,
        metavar="M",
        help="cut where consecutive photos are further apart [100]",
    )
    g.add_argument(
        "--cutoff-time",
        type=float,
        default=60.0,
        metavar="S",
        help="cut where consecutive photos are longer apart (0: estimate) [60]",
    )
    g.add_argument(
        "--duplicate-distance",
        type=float,
        default=0.1,
        metavar="M",
        help="photos this close to the last kept one are duplicates (0: keep all) [0.1]",
    )
    g.add_argument(
        "--duplicate-angle",
        type=float,
        default=5.0,
        metavar="DEG",
        help="... if they also point within this many degrees of it [5]",
    )
    g.add_argument(
        "--max-speed",
        type=float,
        default=400.0,
        metavar="KMH",
        help="photos implying a faster jump are GPS errors (0: no check) [400]",
    )
    g.add_argument(
        "--interpolate-directions",
        action="store_true",
        help="recompute every direction towards the next photo (default: only missing ones)",
    )
    add_offset_angle_option(g)
    g.add_argument(
        "--skip-subfolders", action="store_true", help="only the photos directly in each DIR"
    )
    g.add_argument("--workers", type=int, metavar="N", help="reader processes [one per core]")
    add_track_options(p, required=False)
    v = p.add_argument_group("videos (GoPro GPMF, CAMM, BlackVue)")
    v.add_argument(
        "--filetypes",
        default="image,video",
        metavar="LIST",
        help="what to process, comma-separated: image, video (= gopro,camm,blackvue), gopro, "
        "camm, blackvue [image,video]",
    )
    v.add_argument(
        "--video-gpx",
        choices=("fill", "replace"),
        default="fill",
        help="with --gpx/--nmea: give the track to videos without usable telemetry (fill), "
        "or to every video (replace) [fill]",
    )
    v.add_argument(
        "--gps-fixes",
        default="2,3",
        metavar="LIST",
        help="GoPro points with another fix are noise (0 no fix, 2 2D, 3 3D) [2,3]",
    )
    v.add_argument(
        "--max-dop",
        type=float,
        default=1000.0,
        metavar="DOP100",
        help="GoPro points with a precision (DOP x100) over this are noise [1000]",
    )
    v.add_argument(
        "--gps-precision",
        type=float,
        default=15.0,
        metavar="M",
        help="GoPro GPS precision in metres for the outlier filter [15]",
    )


def options_from_args(args: argparse.Namespace) -> Options:
    """A :class:`amly.pipeline.Options` from the parsed ``process`` options."""
    from ..metadata import parse_timezone
    from ..pipeline import Options

    tz = parse_timezone(args.timezone)  # a bad zone raises UsageError itself
    for name in ("cutoff_distance", "duplicate_distance", "duplicate_angle", "max_speed"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative")
    track = load_track(args)
    videos = video_options_from_args(args)
    return Options(
        cutoff_distance=args.cutoff_distance,
        cutoff_time=args.cutoff_time if args.cutoff_time > 0 else None,
        duplicate_distance=args.duplicate_distance,
        duplicate_angle=args.duplicate_angle,
        max_speed_kmh=args.max_speed if args.max_speed > 0 else None,
        offset_angle=args.offset_angle,
        interpolate_directions=args.interpolate_directions,
        tz=tz,
        track=track,
        # With a track the offset only moves the lookup (like --interpolation_offset_time);
        # without one it shifts the capture times (like mapillary_tools' --offset_time).
        track_offset=args.offset_time if track is not None else 0.0,
        time_offset=args.offset_time if track is None else 0.0,
        use_gpx_start_time=args.use_gpx_start_time,
        max_gap=args.max_gap if args.max_gap and args.max_gap > 0 else None,
        recursive=not args.skip_subfolders,
        workers=args.workers,
        images=videos[0],
        videos=videos[1],
    )


def video_options_from_args(args: argparse.Namespace) -> tuple[bool, Any]:
    """(images wanted, :class:`amly.pipeline.video.VideoOptions` or None) from the options."""
    from ..pipeline.video import VideoOptions, parse_filetypes
    from ..video import NoiseFilter

    try:
        images, kinds = parse_filetypes(args.filetypes)
    except ValueError as e:
        raise UsageError(f"--filetypes: {e}") from None
    if not images and not kinds:
        raise UsageError("--filetypes names nothing to process")
    try:
        fixes = frozenset(int(x) for x in args.gps_fixes.split(",") if x.strip())
    except ValueError:
        raise UsageError("--gps-fixes: a comma-separated list of 0, 2, 3") from None
    if args.max_dop < 0 or args.gps_precision < 0:
        raise UsageError("--max-dop and --gps-precision must not be negative")
    if not kinds:
        return images, None
    return images, VideoOptions(
        kinds=kinds,
        noise=NoiseFilter(fixes, args.max_dop, args.gps_precision),
        gpx_mode=args.video_gpx,
        max_speed_kmh=args.max_speed if args.max_speed > 0 else None,
    )


def add_network_options(
    p: argparse.ArgumentParser, *, concurrency: int, what: str = "transfers"
) -> None:
    """``--endpoint``, ``--token``, ``--profile``, ``--concurrency``: the same on every verb
    that talks to a service."""
    g = p.add_argument_group("service")
    g.add_argument(
        "--endpoint", metavar="URL", help="an amly server base URL [MAPILLARY_* variables]"
    )
    g.add_argument(
        "--token",
        metavar="TOKEN",
        help="access token; '-' reads it from stdin (a value on the command line is visible "
        "to other users) [MAPILLARY_ACCESS_TOKEN, then the profile]",
    )
    g.add_argument("--profile", metavar="NAME", help="the 'amly auth' profile to use")
    g.add_argument(
        "--concurrency",
        type=int,
        default=concurrency,
        metavar="N",
        help=f"{what} in flight at once [{concurrency}]",
    )
    add_s3_options(p)


def add_s3_options(p: argparse.ArgumentParser) -> None:
    """``--s3-endpoint``, ``--s3-profile``, ``--s3-region``, ``--s3-checksum``: on every verb
    that accepts an ``s3://`` location."""
    s3 = p.add_argument_group("object storage (s3://BUCKET/PREFIX wherever a folder is accepted)")
    s3.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="an S3-compatible endpoint (MinIO, Ceph RGW, R2...) [AWS_ENDPOINT_URL]",
    )
    s3.add_argument("--s3-profile", metavar="NAME", help="the AWS profile [AWS_PROFILE]")
    s3.add_argument("--s3-region", metavar="NAME", help="the bucket's region [AWS_REGION]")
    s3.add_argument(
        "--s3-checksum",
        choices=("md5", "crc32"),
        help="integrity of multipart parts: md5 (ETag checked; every store) or crc32 (S3 "
        "flexible checksums, verified by AWS, MinIO...: half the CPU) [md5, AMLY_S3_CHECKSUM]",
    )


def apply_s3_options(args: argparse.Namespace) -> None:
    """Hand ``--s3-*`` to :meth:`amly.storage.s3_config.S3Config.from_env` the AWS way (the
    variables it reads). None of them is a secret: keys come from the environment or the
    AWS files only, never from the command line."""
    for opt, var in (
        ("s3_endpoint", "AWS_ENDPOINT_URL_S3"),
        ("s3_profile", "AWS_PROFILE"),
        ("s3_region", "AWS_REGION"),
        ("s3_checksum", "AMLY_S3_CHECKSUM"),
    ):
        value = getattr(args, opt, None)
        if value:
            os.environ[var] = value


def token_from_args(args: argparse.Namespace) -> Secret | None:
    """``--token`` as a secret: ``-`` reads one line from stdin; None when not given."""
    from ..config import Secret

    value = getattr(args, "token", None)
    if not value:
        return None
    if value == "-":
        value = sys.stdin.readline().strip()
        if not value:
            raise UsageError("--token -: no token on stdin")
    return Secret(value)


def client_from_args(
    args: argparse.Namespace, *, limits: Limits | None = None, journal: Any = None
) -> Client:
    """The :class:`amly.Client` the network options describe."""
    from ..client import Client

    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    apply_s3_options(args)
    return Client(
        args.endpoint,
        token_from_args(args),
        profile=args.profile,
        concurrency=args.concurrency,
        journal=journal,
        limits=limits,
    )


def add_report_option(p: argparse.ArgumentParser) -> None:
    """``--report HTML``: a map of the run, the page ``amly report`` writes; on every verb
    that processes, uploads or downloads photos."""
    p.add_argument_group("report").add_argument(
        "--report",
        metavar="HTML",
        help="also write a map of this run: one self-contained HTML page that works offline "
        "(see 'amly report')",
    )


def report_from_args(args: argparse.Namespace, title: str) -> Report | None:
    """An empty :class:`amly.report.Report` when ``--report`` was given, else None."""
    if not getattr(args, "report", None):
        return None
    from ..report import Report

    return Report(title=title)


def write_report(args: argparse.Namespace, report: Report | None, summary: Summary) -> None:
    """Write ``--report`` (before the summary is emitted). A report that cannot be written
    is one failure of the run; the run's work stands."""
    if report is None:
        return
    try:
        report.write_html(args.report)
    except OSError as e:
        summary.fail(
            f"cannot write the report: {e.strerror or 'I/O error'}", path=args.report, kind="report"
        )
        return
    summary.info["report"] = os.path.abspath(args.report)
