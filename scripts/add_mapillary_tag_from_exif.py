#!/usr/bin/env python3
"""Legacy ``add_mapillary_tag_from_exif.py path [sequence_id]``: same as ``amly tag``.

No Mapillary account variables are needed any more: the description is written locally."""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "amly", "__init__.py")):
    sys.path.insert(0, ROOT)  # run from a checkout: use its amly, installed or not

from amly.cli import main  # noqa: E402


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Write the Mapillary description into photos")
    p.add_argument("path")
    p.add_argument("sequence_id", nargs="?")
    args, rest = p.parse_known_args(argv)
    out = ["tag", args.path, *rest]
    if args.sequence_id:
        out += ["--sequence-id", args.sequence_id]
    return out


if __name__ == "__main__":
    sys.exit(main(build_argv(sys.argv[1:])))
