#!/usr/bin/env python3
"""Legacy ``interpolate_direction.py path [--offset_angle A]``: same as
``amly interpolate-direction``."""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "amly", "__init__.py")):
    sys.path.insert(0, ROOT)  # run from a checkout: use its amly, installed or not

from amly.cli import main  # noqa: E402


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Point each photo towards the next one")
    p.add_argument("path")
    p.add_argument("--offset_angle", "--offset-angle", default="0", help="degrees")
    args, rest = p.parse_known_args(argv)
    return ["interpolate-direction", args.path, "--offset-angle", args.offset_angle, *rest]


if __name__ == "__main__":
    sys.exit(main(build_argv(sys.argv[1:])))
