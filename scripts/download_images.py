#!/usr/bin/env python3
"""Legacy entry point: ``download_images.py min_lat max_lat min_lon max_lon
[--max_results=N] [--image_size=320|640|1024|2048] [--out=DIR]``.

A thin wrapper over ``amly download images`` (note the legacy argument order: latitudes
first). Endpoint and token come from the environment (``MAPILLARY_ACCESS_TOKEN``,
``MAPILLARY_GRAPH_API_ENDPOINT``...), as for the legacy tools.
"""

from __future__ import annotations

import argparse
import sys

from _legacy import add_bbox_arguments, bbox_option


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bbox_arguments(p)
    p.add_argument("--max_results", type=int)
    p.add_argument("--image_size", default="1024")
    p.add_argument("--out", default="mapillary_download")
    a = p.parse_args(argv)
    args = [
        "download",
        "images",
        *bbox_option(a),
        "--size",
        str(a.image_size),
        "--out",
        a.out,
    ]
    if a.max_results is not None:
        args += ["--max-results", str(a.max_results)]
    from amly.cli import main as amly_main

    return amly_main(args)


if __name__ == "__main__":
    sys.exit(main())
