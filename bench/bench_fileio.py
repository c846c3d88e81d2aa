"""aiofiles vs one thread hop per file: how amly reads photos on the asyncio side.

The upload engine needs, per photo, its bytes with the description injected and their md5.
``aiofiles`` (on the design card) runs each file operation (open, read, close) in the default
thread pool: three hops, and the hashing then blocks the event loop. amly does the whole
read + inject + md5 in ONE executor call. This measures both on the same files, same run,
concurrency 64, median of several runs.

    python bench/bench_fileio.py --n 1000 --size 1920x1080 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiofiles  # noqa: E402

from amly.metadata import inject_description  # noqa: E402
from amly.synth import DrivePlan, drive, write_photos  # noqa: E402

DESC = '{"MAPCaptureTime":"2024_06_01_10_00_00_000","MAPLatitude":52.5,"MAPLongitude":13.4}'


async def with_aiofiles(paths: list[Path], concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(p: Path) -> str:
        async with sem:
            async with aiofiles.open(p, "rb") as f:
                data = await f.read()
            return hashlib.md5(inject_description(data, DESC)).hexdigest()

    await asyncio.gather(*(one(p) for p in paths))


def _prepare(p: Path) -> str:
    return hashlib.md5(inject_description(p.read_bytes(), DESC)).hexdigest()


async def one_hop(paths: list[Path], concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def one(p: Path) -> str:
        async with sem:
            return await loop.run_in_executor(None, _prepare, p)

    await asyncio.gather(*(one(p) for p in paths))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=64)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        paths = write_photos(d, drive(DrivePlan(n=a.n)), size=(w, h))
        for p in paths:  # warm the page cache: measure the mechanism, not the disk
            p.read_bytes()
        times: dict[str, list[float]] = {"aiofiles": [], "one hop": []}
        for _ in range(a.runs):
            for name, fn in (("aiofiles", with_aiofiles), ("one hop", one_hop)):
                t0 = time.perf_counter()
                asyncio.run(fn(paths, a.concurrency))
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["aiofiles"])
    print(f"{a.n} photos {a.size}, concurrency {a.concurrency}, median of {a.runs}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:9s} {med:6.3f} s  {a.n / med:8.0f} img/s  {base / med:5.2f}x")


if __name__ == "__main__":
    main()
