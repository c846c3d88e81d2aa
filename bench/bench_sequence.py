"""Sequence processing speed: amly.sequence.process vs mapillary_tools' process_sequence_properties.

Usage: python bench/bench_sequence.py [N_IMAGES] (default 20000). Same synthetic drive (a
red-light stop, a parking break) through both; prints times, img/s, the ratio, and whether
both cut the same sequences.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mapillary_tools import process_sequence_properties as psp
from mapillary_tools import types as mtypes

from amly import sequence as sq
from amly.synth import DrivePlan, drive
from amly.types import ImageMeta


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    points = drive(DrivePlan(n=n, stop_at=n // 40, stop_photos=50, park_at=n // 2))
    images = [
        ImageMeta(f"d/IMG_{i:06}.jpg", p.time, p.lat, p.lon, p.alt, p.heading, filesize=600_000)
        for i, p in enumerate(points)
    ]
    official = [
        mtypes.ImageMetadata(
            time=p.time.timestamp(),
            lat=p.lat,
            lon=p.lon,
            alt=p.alt,
            angle=p.heading,
            filename=Path("/x") / i.path,
            filesize=i.filesize,
        )
        for i, p in zip(images, points, strict=True)
    ]
    t0 = time.perf_counter()
    ours = sq.process(images)
    t_amly = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = psp.process_sequence_properties(official)
    t_mt = time.perf_counter() - t0
    t_seqs: dict[str, list[str]] = {}
    for m in theirs:
        if isinstance(m, mtypes.ImageMetadata):
            t_seqs.setdefault(str(m.MAPSequenceUUID), []).append(m.filename.name)
    same = t_seqs == {s.uuid: [Path(i.path).name for i in s.images] for s in ours.sequences}
    print(f"images={n} sequences={len(ours.sequences)} errors={len(ours.errors)} same={same}")
    print(f"amly            {t_amly:.3f} s  {n / t_amly:,.0f} img/s")
    print(f"mapillary_tools {t_mt:.3f} s  {n / t_mt:,.0f} img/s")
    print(f"ratio mapillary_tools/amly = {t_mt / t_amly:.1f}x")


if __name__ == "__main__":
    main()
