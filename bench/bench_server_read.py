"""Read-side latency of the local server at scale: seed N images, then time searches, entities,
tiles and thumbnails over a real socket (sequential requests, so these are per-request costs).

    .venv/bin/python bench/bench_server_read.py [--images 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import urllib.parse
import urllib.request

from amly.geo import tile
from amly.server.seed import seed_store
from amly.server.store import Store
from amly.server.testing import running_server

AREA = (13.25, 52.40, 13.55, 52.60)
DENSE = (13.400, 52.500, 13.405, 52.505)


def timed(url: str, token: str) -> tuple[float, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"OAuth {token}"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        body = r.read()
    return time.perf_counter() - t, body


def report(name: str, times: list[float], extra: str = "") -> None:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"{name:34s} n={len(ms):4d} p50={statistics.median(ms):8.1f} ms "
          f"p95={p95:8.1f} ms {extra}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory() as d:
        store = Store(d)
        s = seed_store(store, args.images, AREA, dense_cell=DENSE, dense_images=5000)
        store.close()
        print(f"seeded {s['images']} images / {s['sequences']} sequences in {s['seconds']} s")
        with running_server(d) as srv:
            tok = srv.token
            fields = "captured_at,geometry,compass_angle,sequence,creator,thumb_1024_url"
            times, counts = [], []
            for _ in range(args.requests):
                w, so = rnd.uniform(AREA[0], AREA[2] - 0.01), rnd.uniform(AREA[1], AREA[3] - 0.01)
                q = {"bbox": f"{w},{so},{w + 0.0099},{so + 0.0099}", "fields": fields}
                t, body = timed(f"{srv.url}/images?{urllib.parse.urlencode(q)}", tok)
                times.append(t)
                counts.append(len(json.loads(body)["data"]))
            report("/images random 0.0099 box", times, f"mean {statistics.mean(counts):.0f} hits")
            q = {"bbox": "13.4001,52.5001,13.4049,52.5049", "fields": fields}
            times = [timed(f"{srv.url}/images?{urllib.parse.urlencode(q)}", tok)[0]
                     for _ in range(10)]  # fmt: skip
            report("/images dense cell (2000 of 5000)", times)
            ids = json.loads(timed(f"{srv.url}/images?{urllib.parse.urlencode(q)}", tok)[1])
            sample = [d["id"] for d in ids["data"][: args.requests]]
            times = [timed(f"{srv.url}/{i}?fields={fields}", tok)[0] for i in sample]
            report("/{id}", times)
            for z in (14, 12, 10, 8, 6, 3):
                times, sizes = [], []
                for _ in range(10 if z >= 12 else 3):
                    x, y, _ = tile(rnd.uniform(AREA[0], AREA[2]), rnd.uniform(AREA[1], AREA[3]), z)
                    url = f"{srv.url}/tiles/maps/vtp/mly1_public/2/{z}/{x}/{y}"
                    t, body = timed(url, tok)
                    times.append(t)
                    sizes.append(len(body))
                report(f"tile z{z}", times, f"mean {statistics.mean(sizes) / 1024:.0f} KiB")
            x, y, _ = tile(13.4025, 52.5025, 14)
            times = [timed(f"{srv.url}/tiles/maps/vtp/mly1_public/2/14/{x}/{y}", tok)[0]
                     for _ in range(5)]  # fmt: skip
            report("tile z14 with the dense cell", times)
            urls = [d["thumb_1024_url"] for d in ids["data"][: args.requests]]
            times = [timed(u, tok)[0] for u in urls]
            report("thumbnail 1024 (seeded)", times)


if __name__ == "__main__":
    main()
