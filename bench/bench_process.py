"""Benchmark: ``amly process`` vs ``mapillary_tools process``, same folders, same run.

    python bench/bench_process.py [--sizes 1000,5000] [--runs 3] [--mode exif|gpx] [--json]

For each size, generates (or reuses) ``bench/data/process_<n>/`` with bench/gen_dataset.py
(1920x1080 ~700 KB photos in 5 subfolders, a red-light stop and a parking gap each), then
runs both tools alternately, each run a fresh process, and reports the median wall time,
images/s, the ratio, and peak memory:

* ``tree RSS`` = peak of the summed RSS of the tool's whole process tree (sampled from
  /proc every 25 ms: the pool workers count), and
* ``max RSS`` = largest single process (``getrusage(RUSAGE_CHILDREN)`` of a fresh
  intermediate process, exact).

The page cache is warmed once before timing so both tools read from memory: this compares
CPU work, not the disk. ``--mode gpx`` geotags from the dataset's track.gpx (clock offset
3.7 s) instead of the photos' EXIF GPS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

GPX_OFFSET = 3.7


def _children(pid: int) -> list[int]:
    # /proc/PID/task/TID/children is cheap (no walk over every process on the machine), so
    # sampling does not steal the CPU the measured tool needs.
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` once (in THIS process's child): wall seconds, peak tree RSS, exit code."""
    import resource

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while True:
        tree, todo = [], [proc.pid]
        while todo:
            p = todo.pop()
            tree.append(p)
            todo.extend(_children(p))
        peak = max(peak, sum(_rss_kb(p) for p in tree))
        try:  # wakes up the moment the tool exits: no sleep granularity in the timing
            proc.wait(timeout=0.025)
            break
        except subprocess.TimeoutExpired:
            continue
    seconds = time.perf_counter() - t0
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": seconds, "tree_rss_kb": peak, "max_rss_kb": maxrss, "rc": proc.returncode}


def measure_fresh(cmd: list[str]) -> dict[str, Any]:
    """:func:`measure` inside a fresh interpreter, so RUSAGE_CHILDREN covers this run only."""
    out = subprocess.run(
        [sys.executable, __file__, "--measure", "--", *cmd],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def commands(data: Path, out: Path, mode: str) -> dict[str, list[str]]:
    py = sys.executable
    bindir = Path(py).parent
    mt = [str(bindir / "mapillary_tools")] if (bindir / "mapillary_tools").exists() else [
        py, "-m", "mapillary_tools.commands"
    ]  # fmt: skip
    am = [py, "-m", "amly", "process", str(data), "--desc-path", str(out / "amly.json"),
          "-q", "--no-progress"]  # fmt: skip
    mt += ["process", str(data), "--desc_path", str(out / "mt.json")]
    if mode == "gpx":
        gpx = str(data / "track.gpx")
        am += ["--gpx", gpx, "--offset-time", str(GPX_OFFSET)]
        mt += ["--geotag_source", "gpx", "--geotag_source_path", gpx,
               "--interpolation_offset_time", str(GPX_OFFSET)]  # fmt: skip
    return {"amly": am, "mapillary_tools": mt}


def warm(data: Path) -> None:
    for p in data.rglob("*.jpg"):
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def bench(sizes: list[int], runs: int, mode: str) -> list[dict[str, Any]]:
    from gen_dataset import generate

    rows = []
    for n in sizes:
        data = generate(HERE / "data" / f"process_{n}", n)
        out = HERE / "out"
        out.mkdir(exist_ok=True)
        warm(data)
        cmds = commands(data, out, mode)
        results: dict[str, list[dict[str, Any]]] = {k: [] for k in cmds}
        for _ in range(runs):
            for name, cmd in cmds.items():  # alternate, so load changes hit both
                results[name].append(measure_fresh(cmd))
        row: dict[str, Any] = {"images": n, "mode": mode, "runs": runs}
        for name, rs in results.items():
            secs = statistics.median(r["seconds"] for r in rs)
            row[name] = {
                "seconds": round(secs, 3),
                "images_per_s": round(n / secs, 1),
                "tree_rss_mb": round(max(r["tree_rss_kb"] for r in rs) / 1024, 1),
                "max_rss_mb": round(max(r["max_rss_kb"] for r in rs) / 1024, 1),
                "exit_codes": sorted({r["rc"] for r in rs}),
            }
        row["ratio"] = round(row["mapillary_tools"]["seconds"] / row["amly"]["seconds"], 2)
        rows.append(row)
        print(table([row], header=len(rows) == 1), file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]], header: bool = True) -> str:
    lines = []
    if header:
        lines += [
            "| images | mode | amly s | amly img/s | mapillary_tools s | mapillary_tools img/s "
            "| ratio | amly tree RSS MB (max proc) | mapillary_tools tree RSS MB (max proc) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for r in rows:
        a, m = r["amly"], r["mapillary_tools"]
        lines.append(
            f"| {r['images']} | {r['mode']} | {a['seconds']} | {a['images_per_s']:,.0f} "
            f"| {m['seconds']} | {m['images_per_s']:,.0f} | **{r['ratio']}x** "
            f"| {a['tree_rss_mb']} ({a['max_rss_mb']}) | {m['tree_rss_mb']} ({m['max_rss_mb']}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["--measure", "--"]:
        print(json.dumps(measure(argv[2:])))
        return 0
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="1000,5000", help="comma-separated image counts")
    p.add_argument("--runs", type=int, default=3, help="runs per tool and size (median)")
    p.add_argument("--mode", choices=["exif", "gpx"], default="exif")
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    args = p.parse_args(argv)
    rows = bench([int(s) for s in args.sizes.split(",")], args.runs, args.mode)
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
