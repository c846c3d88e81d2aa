#!/usr/bin/env python3
"""Legacy ``remove_duplicates.py [-d min-distance] src [duplicate-path]``: same as
``amly dedup``."""

from __future__ import annotations

import argparse

from _legacy import run


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Move near-duplicate photos aside")
    p.add_argument("-d", "--min-dist", "--min-distance", dest="min_dist", default="0.1")
    p.add_argument("-a", "--min-angle", dest="min_angle", default="5")
    p.add_argument("src")
    p.add_argument("duplicate_path", nargs="?")
    args, rest = p.parse_known_args(argv)
    out = ["dedup", args.src]
    if args.duplicate_path:
        out.append(args.duplicate_path)
    out += ["-d", args.min_dist, "--angle", args.min_angle, *rest]
    return out


if __name__ == "__main__":
    run(build_argv)
