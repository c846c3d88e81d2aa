#!/usr/bin/env python3
"""Legacy entry point: ``join_gpx_mapillary_files.py [gpx_dir] [output.gpx]``.

A thin wrapper over ``amly join-gpx`` (defaults: ``mapillary_gpx`` and ``joined.gpx``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("gpx_dir", nargs="?", default="mapillary_gpx")
    p.add_argument("output", nargs="?", default="joined.gpx")
    a = p.parse_args(argv)
    from amly.cli import main as amly_main

    return amly_main(["join-gpx", a.gpx_dir, a.output])


if __name__ == "__main__":
    sys.exit(main())
