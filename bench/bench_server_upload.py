"""Throughput of the local server's upload side: small requests/s, upload MB/s, finish time.

    .venv/bin/python bench/bench_server_upload.py [--requests 3000] [--images 300]

Drives the server (in its own thread, as tests do) with aiohttp over 127.0.0.1. The numbers
bound what client benchmarks against the local server can measure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import time

import aiohttp

from amly.server.testing import running_server


async def small_requests(url: str, token: str, n: int, concurrency: int) -> float:
    headers = {"Authorization": f"OAuth {token}"}
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers=headers) as s:

        async def one(i: int) -> None:
            async with sem, s.get(f"{url}/upload/bench_{i % 50}.bin") as r:
                await r.read()

        t = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t)


async def uploads(
    url: str, token: str, blobs: list[bytes], concurrency: int
) -> tuple[float, list[str]]:
    headers = {"Authorization": f"OAuth {token}"}
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers=headers) as s:

        async def one(data: bytes) -> str:
            key = f"mly_tools_{hashlib.md5(data).hexdigest()}.jpg"
            async with sem, s.post(f"{url}/upload/{key}", data=data, headers={"Offset": "0"}) as r:
                return str((await r.json())["h"])

        t = time.perf_counter()
        handles = await asyncio.gather(*(one(b) for b in blobs))
        return time.perf_counter() - t, handles


async def finish(url: str, token: str, handles: list[str]) -> float:
    headers = {"Authorization": f"OAuth {token}"}
    manifest = json.dumps({"image_handles": handles, "upload_type": "images", "version": "1"})
    async with aiohttp.ClientSession(headers=headers) as s:
        t = time.perf_counter()
        key = "uuid_" + hashlib.md5(manifest.encode()).hexdigest() + ".json"
        async with s.post(f"{url}/upload/{key}", data=manifest, headers={"Offset": "0"}) as r:
            h = (await r.json())["h"]
        body = {"file_handle": h, "file_type": "mly_bundle_manifest"}
        async with s.post(f"{url}/finish_upload", json=body) as r:
            assert r.status == 200, await r.text()
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    import io

    import piexif

    from amly import synth
    from amly.description import dumps, format_capture_time

    points = synth.drive(synth.DrivePlan(n=args.images))
    frames = synth.base_frames(1024, 576)
    blobs = []
    for i, p in enumerate(points):
        jpeg = synth.splice_exif(frames[i % len(frames)], synth.exif_bytes(time=p.time))
        d = {
            "MAPLatitude": round(p.lat, 7),
            "MAPLongitude": round(p.lon, 7),
            "MAPCaptureTime": format_capture_time(p.time),
            "MAPFilename": f"{i}.jpg",
        }
        exif = piexif.load(jpeg)
        exif["0th"][piexif.ImageIFD.ImageDescription] = dumps(d).encode()
        out = io.BytesIO()
        piexif.insert(piexif.dump(exif), jpeg, out)
        blobs.append(out.getvalue())
    total = sum(map(len, blobs))
    with tempfile.TemporaryDirectory() as d, running_server(d) as srv:
        rps = asyncio.run(small_requests(srv.url, srv.token, args.requests, args.concurrency))
        secs, handles = asyncio.run(uploads(srv.url, srv.token, blobs, args.concurrency))
        fin = asyncio.run(finish(srv.url, srv.token, handles))
    print(
        json.dumps(
            {
                "small_requests_per_s": round(rps),
                "upload_images": len(blobs),
                "upload_mb": round(total / 1e6, 1),
                "upload_mb_per_s": round(total / 1e6 / secs, 1),
                "upload_images_per_s": round(len(blobs) / secs),
                "finish_seconds": round(fin, 3),
                "finish_images_per_s": round(len(blobs) / fin),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
