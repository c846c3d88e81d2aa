"""Benchmark: EXIF reading speed of amly vs exifread vs mapillary_tools, in one run.

    python bench/bench_exif.py [--n 1000] [--size 1920x1080] [--dir DIR] [--json]

Writes ``n`` synthetic geotagged photos (amly.synth, ~600 KB each at 1920x1080) unless
``--dir`` already holds them, then times, on the same files (page cache warm, one core):

* ``amly``: :func:`amly.metadata.read_image` (header-only, own JPEG/TIFF parser);
* ``exifread``: ``exifread.process_file(details=False)`` plus picking the same fields, i.e.
  what amly would do with exifread as its parser;
* ``mapillary_tools``: the official tool's per-image reader,
  ``ImageEXIFExtractor(path).extract()`` (exifread + its field logic);
* ``inject``: :func:`amly.metadata.inject_description` on bytes in memory (the per-upload
  cost of embedding the description).

Reports images/s and the ratio against mapillary_tools.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def exifread_fields(path: Path) -> dict[str, Any]:
    import exifread

    with open(path, "rb") as f:
        tags = exifread.process_file(f, details=False, debug=False)

    def ratio(key: str) -> list[float]:
        v = tags.get(key)
        return [float(x.num) / x.den if x.den else 0.0 for x in v.values] if v else []

    lat, lon = ratio("GPS GPSLatitude"), ratio("GPS GPSLongitude")
    return {
        "lat": sum(a / b for a, b in zip(lat, (1, 60, 3600), strict=False)),
        "lon": sum(a / b for a, b in zip(lon, (1, 60, 3600), strict=False)),
        "lat_ref": str(tags.get("GPS GPSLatitudeRef")),
        "alt": ratio("GPS GPSAltitude"),
        "dir": ratio("GPS GPSImgDirection"),
        "time": str(tags.get("EXIF DateTimeOriginal")),
        "sub": str(tags.get("EXIF SubSecTimeOriginal")),
        "gps_date": str(tags.get("GPS GPSDate")),
        "gps_time": ratio("GPS GPSTimeStamp"),
        "make": str(tags.get("Image Make")),
        "model": str(tags.get("Image Model")),
        "w": str(tags.get("EXIF ExifImageWidth")),
    }


def mapillary_tools_reader() -> Callable[[Path], object] | None:
    try:
        from mapillary_tools.geotag.image_extractors.exif import ImageEXIFExtractor
    except ImportError:  # pragma: no cover - older/newer layouts
        return None
    return lambda p: ImageEXIFExtractor(p).extract()


def rate(fn: Callable[[Path], object], paths: list[Path], repeat: int = 3) -> float:
    """Best images/s of ``repeat`` passes (the first pass also warms the page cache)."""
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        for p in paths:
            fn(p)
        best = max(best, len(paths) / (time.perf_counter() - t))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from amly import synth
    from amly.metadata import inject_description, read_image

    w, h = (int(x) for x in args.size.split("x"))
    tmp = None
    folder = args.dir
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="amly-bench-exif-")
        folder = Path(tmp.name)
    paths = sorted(folder.glob("*.jpg"))[: args.n]
    if len(paths) < args.n:
        points = synth.drive(synth.DrivePlan(n=args.n))
        paths = synth.write_photos(folder, points, size=(w, h), serial="BENCH-1")

    # Same answers first: a fast wrong reader is worthless.
    a = read_image(paths[1])
    b = exifread_fields(paths[1])
    assert a.make == b["make"] and abs((a.lat or 0) - b["lat"]) < 1e-9, (a, b)

    results: dict[str, float] = {"amly": rate(read_image, paths)}
    results["exifread"] = rate(exifread_fields, paths)
    mt = mapillary_tools_reader()
    if mt is not None:
        results["mapillary_tools"] = rate(mt, paths)
    blobs = [p.read_bytes() for p in paths[:200]]
    desc = json.dumps({"MAPLatitude": 52.52, "MAPLongitude": 13.405, "MAPFilename": "x.jpg"})
    t = time.perf_counter()
    for blob in blobs:
        inject_description(blob, desc)
    results["inject_description"] = len(blobs) / (time.perf_counter() - t)
    mb = sum(map(len, blobs)) / len(blobs) / 1e6

    base = results.get("mapillary_tools")
    if args.json:
        print(json.dumps({"n": len(paths), "size": args.size, "img_per_s": results}))
    else:
        print(f"{len(paths)} files {args.size} (~{mb:.2f} MB each), warm cache, 1 process")
        for k, v in results.items():
            ratio = (
                f"  x{v / base:.1f} vs mapillary_tools"
                if base and k != "inject_description"
                else ""
            )
            print(f"  {k:20s} {v:10.0f} img/s{ratio}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
