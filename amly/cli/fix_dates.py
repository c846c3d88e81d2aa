"""``amly fix-dates``: give undated photos (frames cut from a video...) capture times.

The files of DIR, in name order, get ``START``, ``START + INCREMENT``, ... written into EXIF
DateTimeOriginal/SubSecTimeOriginal (losslessly: only the EXIF segment changes).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone, tzinfo

from ..errors import UsageError
from ._common import Summary
from ._inplace import scan_dir, write_each
from ._options import add_output_options, add_timezone_option, finite_float

EPILOG = """\
examples:
  # photos taken every 2 seconds, the first one at 13:01:01 local time
  amly fix-dates photos/ '2014-11-27 13:01:01' 2
  # the camera was set to UTC; half-second spacing
  amly fix-dates photos/ '2014-11-27 12:01:01' 0.5 --timezone UTC

exit codes: 0 all files dated, 1 some files failed (listed), 2 bad arguments
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fix-dates",
        help="write capture times START, START+INCREMENT, ... to the photos of a folder",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder of JPEGs (files in name order)")
    p.add_argument("start", metavar="START", help="time of the first photo: 'YYYY-MM-DD HH:MM:SS'")
    p.add_argument(
        "increment", metavar="INCREMENT", type=finite_float, help="seconds between photos"
    )
    add_timezone_option(p)
    add_output_options(p)
    p.set_defaults(func=run)


def parse_start(text: str, tz: tzinfo | None) -> datetime:
    """The START argument as an aware time (``tz`` None: this machine's zone).

    >>> from datetime import timezone
    >>> parse_start("2014-11-27 13:01:01", timezone.utc).isoformat()
    '2014-11-27T13:01:01+00:00'
    >>> parse_start("2014:11:27 13:01:01.5", timezone.utc).isoformat()
    '2014-11-27T13:01:01.500000+00:00'
    """
    t = text.strip().replace("T", " ")
    date, _, clock = t.partition(" ")
    date = date.replace(":", "-")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            naive = datetime.strptime(f"{date} {clock}".strip(), fmt)
            break
        except ValueError:
            continue
    else:
        raise UsageError(f"cannot read the start time {text!r}", hint="use 'YYYY-MM-DD HH:MM:SS'")
    try:
        return naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()
    except (OverflowError, OSError):  # year 1 or 9999 in this machine's zone
        raise UsageError(
            f"the start time {text!r} is beyond the calendar", hint="check START"
        ) from None


def _check_span(args: argparse.Namespace, start: datetime, n: int) -> None:
    """START and START + (n-1) * INCREMENT must be times a photo can have."""
    from ..types import CAPTURE_YEARS

    years = f"{CAPTURE_YEARS.start}..{CAPTURE_YEARS.stop - 1}"
    try:
        last = start + timedelta(seconds=max(n - 1, 0) * args.increment)
        ok = all(t.astimezone(timezone.utc).year in CAPTURE_YEARS for t in (start, last))
    except OverflowError:
        ok = False
    if not ok:
        raise UsageError(
            f"the photos' times would leave the years {years}",
            hint="check START and INCREMENT",
        )


def _write_time(item: tuple[str, datetime]) -> str:
    from ..metadata import update_exif

    path, t = item
    update_exif(path, capture_time=t)
    return path


def run(args: argparse.Namespace) -> int:
    from ..metadata import parse_timezone
    from ..pipeline import Pool

    tz = parse_timezone(args.timezone)
    start = parse_start(args.start, tz)
    files = sorted(f for folder in scan_dir(args, args.dir, recursive=False) for f in folder.files)
    _check_span(args, start, len(files))
    summary = Summary("fix-dates")
    items = [(f, start + timedelta(seconds=i * args.increment)) for i, f in enumerate(files)]
    with Pool() as pool:
        write_each(args, summary, pool, _write_time, items, label="dating", count="dated")
    if items:
        summary.info["first"] = items[0][1].isoformat()
        summary.info["last"] = items[-1][1].isoformat()
    return summary.emit(args)
