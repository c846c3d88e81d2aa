#!/usr/bin/env python3
"""Legacy ``sequence_split.py path cutoff_distance [cutoff_time]``: same as
``amly split``."""

from __future__ import annotations

import argparse

from _legacy import run


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
    run(build_argv)
