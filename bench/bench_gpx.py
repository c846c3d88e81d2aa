"""GPX parsing speed: amly's ElementTree parser vs gpxpy on one long synthetic track.

Usage: python bench/bench_gpx.py [N_POINTS] (default 100000). Writes the GPX to a temp dir,
parses it with both (best of 3), checks that they agree point for point, prints a ratio.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import gpxpy

from amly import gpx
from amly.synth import DrivePlan, drive, gpx_text


def best_of(n: int, fn):  # type: ignore[no-untyped-def]
    best, result = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    points = drive(DrivePlan(n=n))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "long.gpx")
        with open(path, "w") as f:
            f.write(gpx_text(points))
        size = os.path.getsize(path)

        t_amly, ours = best_of(3, lambda: gpx.read_track(path))

        def with_gpxpy():  # type: ignore[no-untyped-def]
            with open(path) as f:
                g = gpxpy.parse(f)
            return [
                (p.time, p.latitude, p.longitude, p.elevation)
                for t in g.tracks
                for s in t.segments
                for p in s.points
            ]

        t_gpxpy, theirs = best_of(3, with_gpxpy)
    mine = [(p.time, p.lat, p.lon, p.alt) for seg in ours for p in seg]
    agree = len(mine) == len(theirs) and all(
        a[0] == b[0] and a[1:] == b[1:] for a, b in zip(mine, theirs, strict=True)
    )
    print(f"points={n} file={size / 1e6:.1f} MB agree={agree}")
    print(f"amly  {t_amly:.3f} s  {n / t_amly:,.0f} pts/s")
    print(f"gpxpy {t_gpxpy:.3f} s  {n / t_gpxpy:,.0f} pts/s")
    print(f"ratio gpxpy/amly = {t_gpxpy / t_amly:.1f}x")


if __name__ == "__main__":
    main()
