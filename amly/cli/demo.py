"""``amly demo``: the main job end to end on this machine, no account and no internet needed.

Generates a sample drive (photos in subfolders: a red-light stop, a parking gap, a broken
file), starts the embedded Mapillary-compatible server in-process on 127.0.0.1, runs
``process-and-upload`` on the tree with progress bars, then asks the server what arrived.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._options import add_output_options

EPILOG = """\
examples:
  amly demo                      # a temporary folder, removed afterwards
  amly demo --dir ./demo --keep  # keep the photos and the server's data to look at
  amly demo --images 1000

exit codes: 0 the demo ran and everything expected arrived, 1 something did not arrive
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="generate a sample drive, upload it to an embedded local server, show the result",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dir", metavar="DIR", help="work here instead of a temporary folder")
    p.add_argument("--keep", action="store_true", help="keep DIR afterwards")
    p.add_argument(
        "--images", type=int, default=300, metavar="N", help="photos in the sample drive [300]"
    )
    p.add_argument("--size", default="1024x576", metavar="WxH", help="photo size [1024x576]")
    p.add_argument("--concurrency", type=int, default=None, metavar="N", help=argparse.SUPPRESS)
    add_output_options(p)
    p.set_defaults(func=run)


@contextlib.contextmanager
def _workdir(path: str | None, keep: bool) -> Iterator[Path]:
    if path:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix="amly-demo-"))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"demo: kept {root}", file=sys.stderr)


def make_sample_tree(root: Path, n: int, size: tuple[int, int]) -> dict[str, int]:
    """Three trips: one with a red-light stop (duplicates), one with a parking gap (two
    sequences), one with a truncated photo. Returns what the demo expects to arrive."""
    from datetime import datetime, timezone

    from ..synth import DrivePlan, drive, write_photos

    n_a = max(20, n * 2 // 5)
    n_b = max(20, n * 2 // 5)
    n_c = max(10, n - n_a - n_b)
    stop = 15
    a = drive(DrivePlan(n=n_a, stop_at=n_a // 3, stop_photos=stop, seed=1))
    b = drive(
        DrivePlan(
            n=n_b,
            park_at=n_b // 2,
            park_seconds=1800,
            start=datetime(2024, 6, 2, 9, tzinfo=timezone.utc),
            start_lat=52.53,
            seed=2,
        )
    )
    c = drive(
        DrivePlan(
            n=n_c, start=datetime(2024, 6, 3, 17, tzinfo=timezone.utc), start_lon=13.39, seed=3
        )
    )
    write_photos(root / "trip_a", a, size=size, serial="A-1")
    write_photos(root / "trip_b", b, size=size, serial="B-2")
    paths = write_photos(root / "trip_c", c, size=size, serial="C-3")
    # A photo cut short by a full memory card: must be reported, never uploaded.
    broken = paths[-1]
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    return {"photos": n_a + n_b + n_c, "broken": 1, "stop_photos": stop}


def run(args: argparse.Namespace) -> int:
    from ..server.auth import STORE_KEY
    from ..server.testing import running_server
    from . import main as amly_main

    w, _, h = args.size.partition("x")
    size = (int(w), int(h))
    with _workdir(args.dir, args.keep) as root:
        tree = root / "photos"
        if not tree.exists():
            expected = make_sample_tree(tree, args.images, size)
            if not args.quiet:
                print(
                    f"demo: wrote {expected['photos']} photos in 3 trips under {tree}",
                    file=sys.stderr,
                )
        with running_server(root / "server") as srv:
            if not args.quiet:
                print(f"demo: local Mapillary-compatible server at {srv.url}", file=sys.stderr)
            argv = [
                "process-and-upload",
                str(tree),
                "--endpoint",
                srv.url,
                "--journal",
                str(root / "journal.sqlite3"),
            ]
            if args.concurrency:
                argv += ["--concurrency", str(args.concurrency)]
            for flag in ("json", "quiet", "no_progress", "verbose"):
                if getattr(args, flag):
                    argv.append("--" + flag.replace("_", "-"))
            # The token travels in the environment, never in argv (process lists show argv).
            old = os.environ.get("MAPILLARY_ACCESS_TOKEN")
            os.environ["MAPILLARY_ACCESS_TOKEN"] = srv.token
            try:
                code = amly_main(argv)
            finally:
                if old is None:
                    os.environ.pop("MAPILLARY_ACCESS_TOKEN", None)
                else:
                    os.environ["MAPILLARY_ACCESS_TOKEN"] = old
            arrived = srv.call(srv.app[STORE_KEY].holdings)
        if not args.quiet and not args.json:
            _print_arrived(arrived)
    # process-and-upload exits 1 because of the deliberately broken photo; the demo succeeds
    # when that photo is the only failure and every sequence arrived.
    ok = code in (0, 1) and arrived["clusters"] >= 4 and arrived["images"] > 0
    return 0 if ok else 1


def _print_arrived(arrived: dict[str, Any]) -> None:
    seqs = arrived["sequences"]
    assert isinstance(seqs, list)
    print(
        f"\ndemo: the server now holds {arrived['images']} images in {len(seqs)} sequences:",
        file=sys.stderr,
    )
    for s in seqs:
        print(
            f"  sequence {s['id']}: {s['images']:4d} images over {s['seconds']:.0f} s",
            file=sys.stderr,
        )
