#!/usr/bin/env python3
"""What every legacy script shares: run from a checkout, it uses that checkout's amly
(installed or not, from any working directory), and it exits with the verb's exit code.

Each script only maps its legacy arguments to an ``amly`` command line (``build_argv``) and
calls :func:`run`; the download scripts share the legacy latitude-first box. Run on its
own, this file lists the legacy scripts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if os.path.isfile(os.path.join(ROOT, "amly", "__init__.py")):
    sys.path.insert(0, ROOT)  # run from a checkout: use its amly, installed or not


def run(build_argv: Callable[[list[str]], list[str]]) -> NoReturn:
    """Exit with ``amly <build_argv(command-line arguments)>``'s exit code."""
    from amly.cli import main

    sys.exit(main(build_argv(sys.argv[1:])))


def add_bbox_arguments(p: argparse.ArgumentParser) -> None:
    """The legacy box: ``min_lat max_lat min_lon max_lon`` (latitudes first)."""
    for name in ("min_lat", "max_lat", "min_lon", "max_lon"):
        p.add_argument(name, type=float)


def bbox_option(a: argparse.Namespace) -> list[str]:
    """The legacy box as amly's ``--bbox west,south,east,north`` (``repr``: exact floats)."""
    return ["--bbox", f"{a.min_lon!r},{a.min_lat!r},{a.max_lon!r},{a.max_lat!r}"]


if __name__ == "__main__":
    scripts = sorted(n for n in os.listdir(HERE) if n.endswith(".py") and n[0] != "_")
    argparse.ArgumentParser(
        description="Shared start-up of the legacy scripts; not a command itself.",
        epilog="legacy scripts: " + ", ".join(scripts),
    ).parse_args()
