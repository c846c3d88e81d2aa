#!/usr/bin/env python3
"""Legacy ``sequence_split.py path cutoff_distance [cutoff_time]``: same as
``amly split``."""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "amly", "__init__.py")):
    sys.path.insert(0, ROOT)  # run from a checkout: use its amly, installed or not

from amly.cli import main  # noqa: E402


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Move photos into one folder per sequence")
    p.add_argument("path")
    p.add_argument("cutoff_distance")
    p.add_argument("cutoff_time", nargs="?")
    args, rest = p.parse_known_args(argv)
    out = ["split", args.path, args.cutoff_distance]
    if args.cutoff_time:
        out.append(args.cutoff_time)
    return out + rest


if __name__ == "__main__":
    sys.exit(main(build_argv(sys.argv[1:])))
