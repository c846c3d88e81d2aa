"""Distributed downloads: requests per image, and single process vs ``--dask local:2``.

    .venv/bin/python bench/bench_dask.py [--images 20000] [--latency-ms 50] [--runs 3]

One ``amly server`` (a thread of this process) seeded with ``--images`` in one box, with
``--latency-ms`` on every request. Clients, each a fresh process (peak RSS from ``wait4``:
the largest process of its tree), alternating, median of ``--runs``:

- ``per-image entity``: the download engine as it was (a tile, then one entity request per
  image for its metadata and thumbnail URL, then the image): ``amly download images``;
- ``bulk metadata, 1 process``: the tile engine (a tile, a few bbox searches per tile that
  return metadata and thumbnail URLs, entity requests only for what no answer described, the
  image): :func:`amly.distributed.cluster.run_shard`;
- ``bulk metadata, --dask local:2``: the same engine on a LocalCluster of 2 worker processes
  (the cluster's start-up included, as a user sees it), the token bank on the scheduler.

Requests per image count every request the server saw (tiles, searches, entities, the image
GETs, retries), divided by the images stored.
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

#: ~20,000 images seeded over this box (0.05 x 0.04 degrees, 12 z14 tiles, 6 z13 groups).
BOX = (13.37, 52.49, 13.42, 52.53)


def run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """Run ``cmd``; returns (seconds, peak RSS in MiB, stdout)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:5]} failed\n{out[-2000:]}")
    return secs, usage.ru_maxrss // 1024, out


def child(mode: str, url: str, out: str, concurrency: int) -> None:
    """One client run (in its own process): prints {"images": n}. The token comes from the
    environment (never a process's arguments)."""
    from amly.config import Endpoints, Secret
    from amly.distributed.cluster import JobSpec, connect, run_job, run_shard
    from amly.distributed.tilejob import TileQuery

    spec = JobSpec(
        Endpoints.local(url), Secret(os.environ["MAPILLARY_ACCESS_TOKEN"]),
        TileQuery(BOX, size="256"), out,
        concurrency=concurrency, workers=2 if mode == "dask" else 1,
    )  # fmt: skip
    if mode == "dask":
        client, cluster = connect("local:2")
        try:
            res = run_job(client, spec)
        finally:
            client.close()
            cluster.close()
    else:
        res = run_shard(spec)
    assert not res.errors and not res.stats.failures and not res.tiles_unfinished
    print(json.dumps({"images": res.stats.images}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, url, out, conc = args.child
        child(mode, url, out, int(conc))
        return

    from amly.server.seed import seed_store
    from amly.server.store import Store
    from amly.server.testing import running_server

    results: dict[str, list[dict[str, Any]]] = {"entity": [], "single": [], "dask": []}
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "srv")
        seeded = seed_store(store, args.images, BOX)
        store.close()
        print(f"seeded {seeded['images']} images", file=sys.stderr)
        with running_server(Path(d) / "srv") as srv:
            srv.faults.latency_ms = args.latency_ms
            os.environ["MAPILLARY_ACCESS_TOKEN"] = srv.token  # the children's token
            for run in range(args.runs):
                for mode in results:
                    out = f"{d}/{mode}"
                    if mode == "entity":
                        cmd = [sys.executable, "-m", "amly", "download", "images",
                               "--bbox", ",".join(map(str, BOX)), "--size", "256",
                               "--out", out, "--endpoint", srv.url,
                               "--concurrency", str(args.concurrency), "--json"]  # fmt: skip
                    else:
                        cmd = [sys.executable, __file__, "--child", mode, srv.url, out,
                               str(args.concurrency)]  # fmt: skip
                    srv.stats.reset()
                    secs, rss, stdout = run_measured(cmd)
                    doc = json.loads(stdout)
                    n = doc["counts"]["downloaded"] if mode == "entity" else doc["images"]
                    r = {"n": n, "seconds": secs, "rss": rss, "requests": srv.stats.requests}
                    results[mode].append(r)
                    print(f"run {run + 1} {mode}: {r}", file=sys.stderr)
                    shutil.rmtree(out, ignore_errors=True)
    names = {
        "entity": "per-image entity (the engine before)",
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
        f"bulk / per-image entity: {med['single'] / med['entity']:.2f}x the time"
    )


if __name__ == "__main__":
    main()
