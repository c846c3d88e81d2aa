"""Deterministic benchmark dataset: a long drive as realistic JPEGs in several subfolders.

    python bench/gen_dataset.py [--n 5000] [--size 1920x1080] [--folders 5] [--out DIR]

Writes ``n`` photos (amly.synth: textured 1920x1080 frames, ~600 KB, camera EXIF with GPS)
along a drive with a red-light stop (near-duplicates) and a long parking gap (a sequence
break) in every subfolder, plus ``track.gpx`` of the whole drive whose clock runs
``--gpx-offset`` seconds ahead of the camera's (for ``--offset-time`` runs). Default output:
``bench/data/process_<n>/`` (gitignored). Same arguments, same bytes: reruns are skipped
when the folder is already complete (``--force`` rewrites it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from amly import synth  # noqa: E402

MANIFEST = "dataset.json"


def generate(
    out: Path,
    n: int,
    *,
    size: tuple[int, int] = (1920, 1080),
    folders: int = 5,
    gpx_offset: float = 3.7,
    force: bool = False,
) -> Path:
    """Write the dataset into ``out`` (unless already there); return ``out``."""
    spec = {"n": n, "size": list(size), "folders": folders, "gpx_offset": gpx_offset, "v": 1}
    manifest = out / MANIFEST
    if not force and manifest.exists() and json.loads(manifest.read_text()) == spec:
        return out
    per = [n // folders + (1 if k < n % folders else 0) for k in range(folders)]
    all_points = []
    start = synth.DrivePlan().start
    for k, count in enumerate(per):
        plan = synth.DrivePlan(
            n=count,
            start=start,
            start_lat=52.52 + 0.02 * k,
            start_lon=13.405,
            stop_at=count // 4,
            stop_photos=12,
            park_at=count // 2,
            park_seconds=1800.0,
            seed=k,
        )
        points = synth.drive(plan)
        synth.write_photos(out / f"drive_{k:02d}", points, size=size, serial=f"SN{k:04d}")
        all_points.extend(points)
        start = points[-1].time + timedelta(minutes=10)
    shifted = [replace(p, time=p.time + timedelta(seconds=gpx_offset)) for p in all_points]
    (out / "track.gpx").write_text(synth.gpx_text(shifted))
    manifest.write_text(json.dumps(spec))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--size", default="1920x1080", help="WxH [1920x1080]")
    p.add_argument("--folders", type=int, default=5)
    p.add_argument("--gpx-offset", type=float, default=3.7, help="GPS clock - camera clock, s")
    p.add_argument("--out", type=Path, help="[bench/data/process_<n>]")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    w, h = (int(x) for x in args.size.lower().split("x"))
    out = args.out or HERE / "data" / f"process_{args.n}"
    generate(
        out, args.n, size=(w, h), folders=args.folders, gpx_offset=args.gpx_offset, force=args.force
    )
    total = sum(f.stat().st_size for f in out.rglob("*.jpg"))
    print(f"{out}: {args.n} photos, {total / args.n / 1024:.0f} KB each, {total / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
