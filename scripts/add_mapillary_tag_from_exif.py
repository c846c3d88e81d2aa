#!/usr/bin/env python3
"""Legacy ``add_mapillary_tag_from_exif.py path [sequence_id]``: same as ``amly tag``.

No Mapillary account variables are needed any more: the description is written locally."""

from __future__ import annotations

import argparse

from _legacy import run


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
    run(build_argv)
