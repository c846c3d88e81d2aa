#!/usr/bin/env python3
"""Legacy ``geotag_from_gpx.py path gpx_file [--time-offset N]``: same as
``amly geotag path --gpx gpx_file --offset-time N``."""

from __future__ import annotations

import argparse

from _legacy import run


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Geotag photos from a GPX track")
    p.add_argument("path")
    p.add_argument("gpx_file")
    p.add_argument("--time-offset", "--time_offset", default="0", help="camera clock offset, s")
    args, rest = p.parse_known_args(argv)
    return ["geotag", args.path, "--gpx", args.gpx_file, "--offset-time", args.time_offset, *rest]


if __name__ == "__main__":
    run(build_argv)
