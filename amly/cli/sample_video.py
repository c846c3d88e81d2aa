"""``amly sample-video VIDEO_OR_DIR OUT``: frames of GoPro, CAMM and BlackVue videos as
geotagged JPEGs, one every ``--interval`` seconds or every ``--distance`` metres.

Each frame gets full EXIF (capture time, GPS position, altitude, direction, make and model)
interpolated on the video's own track at the frame's presentation time; frames of 360°
video also get GPano XMP. Frames go to ``OUT/<video file name>/<stem>_NNNNNN.jpg``.
A video that cannot be sampled is reported and counted; the others go on.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import FileError, UsageError
from ._common import Progress, Summary
from ._options import add_output_options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sample-video",
        help="sample geotagged frames from videos (by distance or time)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_sample_options(p)
    p.add_argument(
        "--filetypes",
        default="gopro,camm,blackvue",
        help="telemetry kinds to read, comma-separated [gopro,camm,blackvue]",
    )
    add_output_options(p)
    p.set_defaults(func=run)


def add_sample_options(p: argparse.ArgumentParser) -> None:
    """The sampling arguments and options (shared with ``video-process``)."""
    p.add_argument(
        "source", metavar="VIDEO_OR_DIR", help="a video, or a folder searched recursively"
    )
    p.add_argument("output", metavar="OUT", help="folder for the frames")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--distance", type=float, metavar="M", help="one frame every M metres [3]")
    g.add_argument("--interval", type=float, metavar="S", help="one frame every S seconds")
    p.add_argument(
        "--panorama",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mark frames as 360° panoramas (default: when the video declares it)",
    )
    p.add_argument("--quality", type=int, default=90, metavar="Q", help="JPEG quality [90]")


def find_videos(source: str) -> list[str]:
    from ..pipeline.video import find_videos as find

    if not os.path.exists(source):
        raise UsageError(f"{source}: no such file or folder")
    return [path for _root, path in find([source])]


def run(args: argparse.Namespace) -> int:
    from ..video import FILETYPES

    kinds = {k.strip() for k in args.filetypes.split(",") if k.strip()}
    kinds.discard("video")
    if not kinds <= set(FILETYPES):
        raise UsageError(f"--filetypes: unknown kinds {sorted(kinds - set(FILETYPES))}")
    summary = sample_all(args, kinds)
    return summary.emit(args)


def sample_all(args: argparse.Namespace, kinds: set[str], *, quiet: bool = False) -> Summary:
    """Sample every video of ``args.source`` into ``args.output``; the summary of it."""
    from ..video import read_video_sync
    from ..video._sample import sample_video

    if args.interval is None and args.distance is None:
        args.distance = 3.0
    if (
        (args.interval is not None and args.interval <= 0)
        or args.distance is not None
        and args.distance <= 0
    ):
        raise UsageError("--interval and --distance must be positive")
    if not 1 <= args.quality <= 100:
        raise UsageError("--quality must be 1..100")
    videos = find_videos(args.source)
    if not videos:
        raise UsageError(f"{args.source}: no videos ({', '.join(('.mp4', '.mov', '.360'))})")
    summary = Summary("sample-video")
    progress = Progress(
        "sample-video", len(videos), enabled=not (args.quiet or args.no_progress or quiet)
    )
    clocks: dict[str, str] = {}
    try:
        for v in videos:
            try:
                if v.lower().endswith(".360"):
                    track = None  # refused before reading
                else:
                    track = read_video_sync(v, kinds)
                res = sample_video(
                    v,
                    args.output,
                    interval=args.interval,
                    distance_m=args.distance,
                    track=track,
                    panorama=args.panorama,
                    quality=args.quality,
                )
            except FileError as e:
                summary.fail(e)
            else:
                summary.count("videos")
                summary.count("frames", len(res.frames))
                clocks[v] = res.clock
            progress.update()
    finally:
        progress.close()
    if clocks:
        summary.info["capture_clock"] = clocks
        camera = sorted(v for v, c in clocks.items() if c == "camera")
        if camera and not args.quiet and not args.json and not quiet:
            import sys

            print(
                f"sample-video: {len(camera)} video(s) have no GPS time: capture times come "
                "from the camera clock (mvhd), which cameras often write in local time",
                file=sys.stderr,
            )
    return summary
