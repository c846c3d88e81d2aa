"""``amly join-gpx DIR OUT.gpx``: merge many GPX files (e.g. from ``amly download gpx``) into
one valid GPX 1.1 file, one track per input track."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import UsageError
from ._common import Summary
from ._options import add_output_options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "join-gpx",
        help="merge a folder of GPX files into one",
        description=__doc__,
    )
    p.add_argument("folder", metavar="DIR", help="folder of .gpx files (not recursive)")
    p.add_argument("output", metavar="OUT.gpx", help="the merged file (written atomically)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..gpx import join_gpx

    if not os.path.isdir(args.folder):
        raise UsageError(f"{args.folder}: not a folder")
    out = os.path.abspath(args.output)
    paths = sorted(
        os.path.join(args.folder, n)
        for n in os.listdir(args.folder)
        if n.lower().endswith(".gpx") and os.path.abspath(os.path.join(args.folder, n)) != out
    )
    if not paths:
        raise UsageError(f"{args.folder}: no .gpx files")
    summary = Summary("join-gpx")
    summary.count("files", len(paths))
    try:
        summary.count("tracks", join_gpx(paths, args.output))
    except ValueError as e:
        raise UsageError(
            f"cannot join: {e}", hint="fix or move that file out of the folder; nothing was written"
        ) from None
    except OSError as e:
        raise UsageError(
            f"cannot join: {e.filename}: {e.strerror}", hint="nothing was written"
        ) from None
    summary.info.update(output=args.output)
    return summary.emit(args)
