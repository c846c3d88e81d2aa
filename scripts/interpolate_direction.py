#!/usr/bin/env python3
"""Legacy ``interpolate_direction.py path [--offset_angle A]``: same as
``amly interpolate-direction``."""

from __future__ import annotations

import argparse

from _legacy import run


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Point each photo towards the next one")
    p.add_argument("path")
    p.add_argument("--offset_angle", "--offset-angle", default="0", help="degrees")
    args, rest = p.parse_known_args(argv)
    return ["interpolate-direction", args.path, "--offset-angle", args.offset_angle, *rest]


if __name__ == "__main__":
    run(build_argv)
