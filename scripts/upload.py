#!/usr/bin/env python3
"""Legacy ``upload.py path [--upload_subfolders]``: same as ``amly upload path [--subfolders]``.

The token comes from MAPILLARY_ACCESS_TOKEN or the profile saved by ``amly auth``; endpoints
from the MAPILLARY_* variables. Other ``amly upload`` options pass through unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "amly", "__init__.py")):
    sys.path.insert(0, ROOT)  # run from a checkout: use its amly, installed or not

from amly.cli import main  # noqa: E402


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Upload a folder of (processed) photos.")
    p.add_argument("path")
    p.add_argument("--upload_subfolders", action="store_true", help="also upload subfolders")
    args, rest = p.parse_known_args(argv)
    return ["upload", args.path, *(["--subfolders"] if args.upload_subfolders else []), *rest]


if __name__ == "__main__":
    sys.exit(main(build_argv(sys.argv[1:])))
