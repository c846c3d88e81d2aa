#!/usr/bin/env python3
"""Legacy ``upload_with_authentication.py path``: same as ``amly upload path``.

The permission/signature hashes of the old upload API are obsolete: uploads now use a user
access token (MAPILLARY_ACCESS_TOKEN, or ``amly auth``). Other ``amly upload`` options pass
through unchanged.
"""

from __future__ import annotations

import argparse

from _legacy import run


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Upload photos taken with any camera.")
    p.add_argument("path")
    args, rest = p.parse_known_args(argv)
    return ["upload", args.path, *rest]


if __name__ == "__main__":
    run(build_argv)
