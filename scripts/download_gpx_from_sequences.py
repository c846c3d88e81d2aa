#!/usr/bin/env python3
"""Legacy entry point: ``download_gpx_from_sequences.py min_lat max_lat min_lon max_lon
[max_results] [filter_by_user_name] [--out=DIR]``.

A thin wrapper over ``amly download gpx`` (legacy argument order: latitudes first): one GPX
file per sequence found in the box. Endpoint and token come from the environment.
"""

from __future__ import annotations

import argparse
import sys

from _legacy import add_bbox_arguments, bbox_option


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bbox_arguments(p)
    p.add_argument("max_results", type=int, nargs="?")
    p.add_argument("filter_by_user_name", nargs="?")
    p.add_argument("--out", default="mapillary_gpx")
    a = p.parse_args(argv)
    args = [
        "download",
        "gpx",
        *bbox_option(a),
        "--out",
        a.out,
    ]
    if a.max_results is not None:
        args += ["--max-results", str(a.max_results)]
    if a.filter_by_user_name:
        args += ["--user", a.filter_by_user_name]
    from amly.cli import main as amly_main

    return amly_main(args)


if __name__ == "__main__":
    sys.exit(main())
