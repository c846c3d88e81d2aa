"""Distributed downloads: requests per image, and one process vs ``--dask local:2``.

    .venv/bin/python bench/bench_dask.py [--images 20000] [--latency-ms 50] [--runs 3]
                                         [--before REV]

One ``amly server`` (a thread of this process) seeded with ``--images`` in one box, with
``--latency-ms`` on every request. Three clients, each ``amly download images`` run as a
user runs it (a fresh process; peak RSS from ``wait4``: the largest process of its tree),
alternating, median of ``--runs``:

- ``before``: the download engine of git revision ``--before`` (exported to a temporary
  folder): a tile, then one entity request per image for its metadata and signed thumbnail
  URL, then the image;
- ``bulk, 1 process``: this tree's engine: a tile, a few bbox searches per tile answering the
  metadata and thumbnail URLs of up to 2,000 images each, entity requests only for images no
  answer described, the image;
- ``bulk, --dask local:2``: the same with ``--dask local:2`` (a LocalCluster of 2 worker
  processes, its start-up included, as a user sees it; the token bank on the scheduler).

Requests per image count every request the server saw (the token check, tiles, searches,
entities, the image GETs, retries) divided by the images stored. The token reaches the
clients through the environment, never their arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: ~20,000 images seeded over this box (0.05 x 0.04 degrees: 12 z14 tiles, 4 z13 groups).
BOX = (13.37, 52.49, 13.42, 52.53)


def run_measured(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, int, str]:
    """Run ``cmd`` in ``cwd`` (not this checkout: ``python -m`` would import the ``amly``
    beside it); returns (seconds, peak RSS in MiB of its largest process, stdout)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=cwd
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{cmd[3:6]} failed\n{err.read()[-2000:].decode()}")
    return secs, usage.ru_maxrss // 1024, out


def export(rev: str, dest: Path) -> Path:
    """The ``amly`` package of git revision ``rev``, exported under ``dest``."""
    dest.mkdir(parents=True)
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "amly"], check=True,
                         capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    # 1e580aa: the reshape, the last engine with one entity request per image.
    ap.add_argument("--before", default="1e580aa", help="git revision of the 'before' engine")
    args = ap.parse_args()

    from amly.server.seed import seed_store
    from amly.server.store import Store
    from amly.server.testing import running_server

    modes = ("before", "single", "dask")
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as d:
        before_src = export(args.before, Path(d) / "src-before")  # not an output folder
        store = Store(Path(d) / "srv")
        seeded = seed_store(store, args.images, BOX)
        store.close()
        print(f"seeded {seeded['images']} images", file=sys.stderr)
        with running_server(Path(d) / "srv") as srv:
            srv.faults.latency_ms = args.latency_ms
            base = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY_")}
            base.update(MAPILLARY_ACCESS_TOKEN=srv.token, AMLY_HOME=f"{d}/home")
            for run in range(args.runs):
                for mode in modes:
                    out = f"{d}/{mode}"
                    cmd = [sys.executable, "-m", "amly", "download", "images",
                           "--bbox", ",".join(map(str, BOX)), "--size", "256", "--out", out,
                           "--endpoint", srv.url, "--concurrency", str(args.concurrency),
                           "--json", "--no-progress"]  # fmt: skip
                    env = dict(base, PYTHONPATH=str(before_src if mode == "before" else ROOT))
                    if mode == "dask":
                        cmd += ["--dask", "local:2"]
                    srv.stats.reset()
                    secs, rss, stdout = run_measured(cmd, env, d)
                    doc = json.loads(stdout)
                    n = doc["counts"]["downloaded"]
                    if mode == "before":  # the right engine ran: it did not know the field
                        assert "requests_per_image" not in doc, "the before engine is this one"
                    r = {"n": n, "seconds": secs, "rss": rss, "requests": srv.stats.requests}
                    results[mode].append(r)
                    print(f"run {run + 1} {mode}: {r}", file=sys.stderr)
                    shutil.rmtree(out, ignore_errors=True)
    names = {
        "before": f"per-image entity ({args.before})",
        "single": "bulk metadata, 1 process",
        "dask": "bulk metadata, --dask local:2",
    }
    med = {m: statistics.median(r["seconds"] for r in rs) for m, rs in results.items()}
    print(f"\n{args.images:,} images, {args.latency_ms:g} ms latency, size 256, concurrency "
          f"{args.concurrency} per process, median of {args.runs}\n")  # fmt: skip
    print("| client | images | requests | requests/image | seconds | images/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m, rs in results.items():
        r = rs[0]
        rss = max(x["rss"] for x in rs)
        print(f"| {names[m]} | {r['n']} | {r['requests']} | {r['requests'] / r['n']:.3f} | "
              f"{med[m]:.1f} | {r['n'] / med[m]:.0f} | {rss} |")  # fmt: skip
    print(
        f"\n--dask local:2 / 1 process: {med['dask'] / med['single']:.2f}x the time; "
        f"bulk / before: {med['single'] / med['before']:.2f}x the time"
    )


if __name__ == "__main__":
    main()
