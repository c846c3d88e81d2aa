#!/usr/bin/env python3
"""Legacy ``add_fix_dates.py path 'YYYY-MM-DD HH:MM:SS' increment``: same as
``amly fix-dates``."""

from __future__ import annotations

import argparse

from _legacy import run


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Give photos capture times start, start+increment...")
    p.add_argument("path")
    p.add_argument("start_time", help="'YYYY-MM-DD HH:MM:SS'")
    p.add_argument("increment", help="seconds between photos")
    args, rest = p.parse_known_args(argv)
    return ["fix-dates", args.path, args.start_time, args.increment, *rest]


if __name__ == "__main__":
    run(build_argv)
