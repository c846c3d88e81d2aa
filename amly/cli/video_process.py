"""``amly video-process VIDEO_OR_DIR OUT``: sample geotagged frames from videos (as
``amly sample-video``), then process the frames (as ``amly process OUT``): the official
``video_process``. The frames and ``OUT/mapillary_image_description.json`` are then ready
for ``amly upload OUT``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._options import add_output_options, add_process_options, add_timezone_option
from .sample_video import add_sample_options, sample_all


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "video-process",
        help="sample frames from videos, then process them (as mapillary_tools video_process)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_sample_options(p)
    add_process_options(p)
    add_timezone_option(p)
    add_output_options(p)
    p.set_defaults(func=run, filetypes_default=True)


def run(args: argparse.Namespace) -> int:
    from . import process

    sampled = sample_all(args, {"gopro", "camm", "blackvue"}, quiet=True)
    if not args.quiet:
        counts = ", ".join(f"{v} {k}" for k, v in sampled.counts.items()) or "nothing"
        print(f"video-process: sampled {counts}", file=sys.stderr)
        for f in sampled.failures:
            hint = f" -> {f['hint']}" if f.get("hint") else ""
            print(f"  {f['file']}: {f['error']}{hint}", file=sys.stderr)
    # process's own defaults for every option it has and this verb does not (--report,
    # --dask, storage options...), then the shared ones as given here
    parser = argparse.ArgumentParser()
    process.register(parser.add_subparsers())
    merged = parser.parse_args(["process", args.output])
    for key, value in vars(args).items():
        if hasattr(merged, key):
            setattr(merged, key, value)
    merged.dirs = [args.output]
    merged.filetypes = "image"  # the frames; the videos themselves are not in OUT
    code = process.run(merged)
    return max(code, sampled.exit_code)
