#!/usr/bin/env python3
"""Legacy ``upload_with_authentication.py path``: same as ``amly upload path``.

The permission/signature hashes of the old upload API are obsolete: uploads now use a user
access token (MAPILLARY_ACCESS_TOKEN, or ``amly auth``). Other ``amly upload`` options pass
through unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(ROOT, "amly", "__init__.py")):
    sys.path.insert(0, ROOT)  # run from a checkout: use its amly, installed or not

from amly.cli import main  # noqa: E402


def build_argv(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(description="Upload photos taken with any camera.")
    p.add_argument("path")
    args, rest = p.parse_known_args(argv)
    return ["upload", args.path, *rest]


if __name__ == "__main__":
    sys.exit(main(build_argv(sys.argv[1:])))
