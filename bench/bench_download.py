"""Download throughput: ``amly download images`` vs a sequential one-request-at-a-time client,
same server, same endpoints, same run, with injected latency (the real service answers in
~1 s; throughput has to come from concurrency).

    .venv/bin/python bench/bench_download.py [--images 10000] [--latency-ms 50]
                                             [--baseline-images 300] [--size 256]

The server (seeded with ``--images`` in one box) runs in a thread of this process; each client
runs as its own process so its peak RSS (``wait4``) is its own. The baseline does exactly the
per-image work amly does (tile enumeration, entity with the thumbnail URL, thumbnail GET, EXIF
written, file written) in a plain loop; it is sequential, so its rate is per-image constant and
it runs on ``--baseline-images`` images only (the table reports its rate and the time it would
take for all). amly runs on the whole box and on a quarter of it: peak RSS must not grow with N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BOX = (13.40, 52.50, 13.42, 52.52)
QUARTER = (13.40, 52.50, 13.41, 52.51)


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run ``cmd``; returns (seconds, peak RSS in MiB, stdout)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed with {proc.returncode}\n{out[-2000:]}")
    return secs, usage.ru_maxrss // 1024, out


# --- the baseline: one request at a time --------------------------------------------------


def baseline(url: str, token: str, bbox: list[float], out: str, limit: int, size: str) -> None:
    import urllib.request

    import mapbox_vector_tile

    from amly.geo import tile_bounds, tiles
    from amly.metadata import set_exif_bytes

    w, s, e, n = bbox
    hdr = {"Authorization": f"OAuth {token}"}

    def get(u: str, auth: bool = True) -> bytes:
        req = urllib.request.Request(u, headers=hdr if auth else {})
        with urllib.request.urlopen(req, timeout=60) as r:
            return bytes(r.read())

    fields = "id,sequence,captured_at,geometry,altitude,compass_angle,make,model"
    done = 0
    t0 = time.perf_counter()
    for x, y, z in tiles((w, s, e, n), 14):
        data = get(f"{url}/tiles/maps/vtp/mly1_public/2/{z}/{x}/{y}")
        layer = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}).get(
            "image", {"features": []}
        )
        tw, ts, te, tn = tile_bounds(x, y, z)
        for feat in layer["features"]:
            px, py = feat["geometry"]["coordinates"]
            lon = tw + (te - tw) * px / 4096
            lat = tn - (tn - ts) * py / 4096  # close enough to pre-filter; the entity decides
            if not (w - 1e-4 <= lon <= e + 1e-4 and s - 1e-4 <= lat <= n + 1e-4):
                continue
            ent = json.loads(
                get(f"{url}/{feat['properties']['id']}?fields={fields},thumb_{size}_url")
            )
            elon, elat = ent["geometry"]["coordinates"]
            if not (w <= elon <= e and s <= elat <= n):
                continue
            from datetime import datetime, timezone

            jpeg = set_exif_bytes(
                get(ent[f"thumb_{size}_url"], auth=False),
                capture_time=datetime.fromtimestamp(ent["captured_at"] / 1000, tz=timezone.utc),
                lat=elat, lon=elon, alt=ent.get("altitude"), heading=ent.get("compass_angle"),
                make=ent.get("make"), model=ent.get("model"),
            )  # fmt: skip
            folder = Path(out) / ent["sequence"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{ent['id']}.jpg").write_bytes(jpeg)
            done += 1
            if done >= limit:
                break
        if done >= limit:
            break
    print(json.dumps({"images": done, "seconds": time.perf_counter() - t0}))


# --- the benchmark ------------------------------------------------------------------------


def amly_run(
    srv: Any, bbox: tuple[float, ...], out: str, args: argparse.Namespace, method: str = "tiles"
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "amly", "download", "images", "--bbox", ",".join(map(str, bbox)),
           "--size", args.size, "--out", out, "--endpoint", srv.url, "--token", srv.token,
           "--concurrency", str(args.concurrency), "--method", method, "--json"]  # fmt: skip
    secs, rss, stdout = run_measured(cmd)
    res = json.loads(stdout)
    n = res["counts"]["downloaded"]
    shutil.rmtree(out, ignore_errors=True)
    return {"n": n, "seconds": secs, "rate": n / secs, "rss": rss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--baseline-images", type=int, default=300)
    ap.add_argument("--size", default="256")
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--baseline", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        url, token, bbox, out, limit, size = args.baseline
        baseline(url, token, [float(v) for v in bbox.split(",")], out, int(limit), size)
        return

    from amly.server.seed import seed_store
    from amly.server.store import Store
    from amly.server.testing import running_server

    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "srv")
        seeded = seed_store(store, args.images, BOX)
        store.close()
        print(f"seeded {seeded['images']} images in {seeded['sequences']} sequences")
        with running_server(Path(d) / "srv") as srv:
            srv.faults.latency_ms = args.latency_ms
            big = amly_run(srv, BOX, f"{d}/big", args)
            small = amly_run(srv, QUARTER, f"{d}/small", args)
            search = amly_run(srv, BOX, f"{d}/search", args, "search")
            bcmd = [sys.executable, __file__, "--baseline", srv.url, srv.token,
                    ",".join(map(str, BOX)), f"{d}/base", str(args.baseline_images), args.size]  # fmt: skip
            bsecs, brss, bout = run_measured(bcmd)
            b = json.loads(bout)
            brate = b["images"] / b["seconds"]
    rows = [
        ("amly, whole box", big),
        ("amly, quarter box", small),
        ("amly --method search, whole box", search),
    ]
    print(f"\nlatency {args.latency_ms:g} ms, size {args.size}, amly --concurrency "
          f"{args.concurrency}\n")  # fmt: skip
    print("| client | images | seconds | images/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['n']} | {r['seconds']:.1f} | {r['rate']:.0f} | {r['rss']} |")
    print(f"| sequential baseline | {b['images']} | {b['seconds']:.1f} "
          f"(~{big['n'] / brate:.0f} for {big['n']}) | {brate:.1f} | {brss} |")  # fmt: skip
    print(
        f"\nspeed-up amly / sequential: {big['rate'] / brate:.1f}x; "
        f"peak RSS {small['n']} -> {big['n']} images: {small['rss']} -> {big['rss']} MiB"
    )


if __name__ == "__main__":
    main()
