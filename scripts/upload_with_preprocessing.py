#!/usr/bin/env python3
"""Legacy ``upload_with_preprocessing.py path [--remove_duplicates] ...``: same as
``amly process-and-upload path``: (optionally) skip near-duplicates, group into sequences by
GPS and time, interpolate compass angles, tag and upload, in memory (photos are not changed).

Legacy options map to ``amly process-and-upload`` options; any other option passes through.
"""

from __future__ import annotations

import argparse

from _legacy import run


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Preprocess and upload photos from any camera.")
    p.add_argument("path")
    p.add_argument("--remove_duplicates", action="store_true", help="skip near-duplicates")
    p.add_argument("--duplicate_distance", type=float, default=0.1, help="metres [0.1]")
    p.add_argument("--duplicate_angle", type=float, default=5.0, help="degrees [5]")
    p.add_argument("--cutoff_distance", type=float, default=100.0, help="metres [100]")
    p.add_argument("--cutoff_time", type=float, help="seconds [estimated]")
    p.add_argument("--offset_angle", type=float, default=0.0, help="camera angle [0]")
    p.add_argument("--project", help="organization id to upload into")
    args, rest = p.parse_known_args(argv)
    out = ["process-and-upload", args.path, "--interpolate-directions"]
    out += ["--cutoff-distance", str(args.cutoff_distance)]
    out += ["--cutoff-time", str(args.cutoff_time if args.cutoff_time is not None else 0)]
    out += ["--offset-angle", str(args.offset_angle)]
    if args.remove_duplicates:
        out += ["--duplicate-distance", str(args.duplicate_distance)]
        out += ["--duplicate-angle", str(args.duplicate_angle)]
    else:
        out += ["--duplicate-distance", "0"]
    if args.project:
        out += ["--organization-id", args.project]
    return [*out, *rest]


if __name__ == "__main__":
    run(build_argv)
