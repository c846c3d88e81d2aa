#!/usr/bin/env python3
"""Legacy ``add_fix_dates.py path 'YYYY-MM-DD HH:MM:SS' increment``: same as
``amly fix-dates``."""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "amly", "__init__.py")):
    sys.path.insert(0, ROOT)  # run from a checkout: use its amly, installed or not

from amly.cli import main  # noqa: E402


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Give photos capture times start, start+increment...")
    p.add_argument("path")
    p.add_argument("start_time", help="'YYYY-MM-DD HH:MM:SS'")
    p.add_argument("increment", help="seconds between photos")
    args, rest = p.parse_known_args(argv)
    return ["fix-dates", args.path, args.start_time, args.increment, *rest]


if __name__ == "__main__":
    sys.exit(main(build_argv(sys.argv[1:])))
