#!/usr/bin/env python3
"""Legacy ``add_project.py path project_name``: records the organization (the
successor of projects) in every photo's description; same as ``amly tag --organization``."""

from __future__ import annotations

import argparse

from _legacy import run


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Record an organization key in photos")
    p.add_argument("path")
    p.add_argument("project_name", help="organization key")
    args, rest = p.parse_known_args(argv)
    return ["tag", args.path, "--organization", args.project_name, *rest]


if __name__ == "__main__":
    run(build_argv)
