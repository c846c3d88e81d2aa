"""``amly``: one subcommand per verb, each in its own module under ``amly.cli``.

A verb module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` where ``run(args) -> int`` returns the exit code. Exit codes:

==  ==========================================================================
0   everything succeeded
1   the run finished, but some files failed (the summary lists them)
2   bad arguments or input: nothing was done
3   authentication failed (missing, invalid or expired token)
4   the server or network failed beyond the retry policy
130 interrupted (Ctrl-C); finished work is kept, a rerun resumes
70  an internal error (a bug in amly; -v shows the traceback)
==  ==========================================================================
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ..errors import AmlyError
from ._common import describe_error

#: Verb modules, in the order ``amly --help`` lists them (the pipeline's order).
VERBS = [
    "fix_dates",
    "geotag",
    "interpolate_direction",
    "dedup",
    "split",
    "tag",
    "process",
    "auth",
    "upload",
    "download",
    "transfer",
    "join_gpx",
    "sample_video",
    "video_process",
    "report",
    "server",
    "demo",
]

#: Verbs registered by a module named otherwise.
VERB_ALIASES = {"process_and_upload": "upload"}

#: Ctrl-C; the other codes are the errors' own ``exit_code`` (usage 2, auth 3, API 4) and a
#: summary's (1 when some files failed).
EXIT_INTERRUPTED = 130
#: A bug in amly (not in the input): one line, and ``-v`` shows where.
EXIT_INTERNAL = 70


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``amly`` parser; ``only`` registers just that verb module (a fast start: the other
    verbs' imports, aiohttp among them, are skipped)."""
    parser = argparse.ArgumentParser(
        prog="amly",
        description="Fast, safe preprocessing, upload and download of Mapillary imagery.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Exit codes:", 1)[1] if __doc__ else None,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"amly {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in [only] if only else VERBS:
        importlib.import_module(f".{name}", __name__).register(sub)
    return parser


def _verb_module(argv: Sequence[str] | None) -> str | None:
    """The module of the verb ``argv`` starts with, if one module is named after it."""
    args = list(sys.argv[1:] if argv is None else argv)
    name = args[0].replace("-", "_") if args else ""
    name = VERB_ALIASES.get(name, name)
    return name if name in VERBS else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_verb_module(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("amly: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AmlyError as e:
        print(f"amly: {describe_error(e)}", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        if getattr(args, "verbose", False):
            raise
        print(
            f"amly: internal error ({type(e).__name__}); this is a bug, please report it with "
            "the output of the same command run with -v",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
