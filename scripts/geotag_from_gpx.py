#!/usr/bin/env python3
"""Legacy ``geotag_from_gpx.py path gpx_file [--time-offset N]``: same as
``amly geotag path --gpx gpx_file --offset-time N``."""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "amly", "__init__.py")):
    sys.path.insert(0, ROOT)  # run from a checkout: use its amly, installed or not

from amly.cli import main  # noqa: E402


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Geotag photos from a GPX track")
    p.add_argument("path")
    p.add_argument("gpx_file")
    p.add_argument("--time-offset", "--time_offset", default="0", help="camera clock offset, s")
    args, rest = p.parse_known_args(argv)
    return ["geotag", args.path, "--gpx", args.gpx_file, "--offset-time", args.time_offset, *rest]


if __name__ == "__main__":
    sys.exit(main(build_argv(sys.argv[1:])))
