#!/usr/bin/env python3
"""Legacy ``upload.py path [--upload_subfolders]``: same as ``amly upload path [--subfolders]``.

The token comes from MAPILLARY_ACCESS_TOKEN or the profile saved by ``amly auth``; endpoints
from the MAPILLARY_* variables. Other ``amly upload`` options pass through unchanged.
"""

from __future__ import annotations

import argparse

from _legacy import run


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Upload a folder of (processed) photos.")
    p.add_argument("path")
    p.add_argument("--upload_subfolders", action="store_true", help="also upload subfolders")
    args, rest = p.parse_known_args(argv)
    return ["upload", args.path, *(["--subfolders"] if args.upload_subfolders else []), *rest]


if __name__ == "__main__":
    run(build_argv)
