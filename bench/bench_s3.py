"""Benchmark: amly's S3 client vs boto3's transfer manager (s3transfer, what ``aws s3 cp``
does) and aiobotocore, against moto's S3 server on 127.0.0.1, in the same run.

    python bench/bench_s3.py [--runs 3] [--gb 1] [--photos 2000] [--clients amly,s3transfer,...]

Jobs: ``multipart`` (one ``--gb`` GB file, 8 MiB parts) and ``photos`` (``--photos`` JPEGs of
bench/gen_dataset.py at 640x360, ~80 KB: one PUT each). Every (client, job) runs in its own
fresh process against its own fresh moto server; the client reports its wall time for the
transfer, its CPU (user+sys, whole process: interpreter start and imports included) and its
peak RSS. Clients alternate within a run; the table gives medians.

Clients (every one checks integrity):

* ``amly``: amly.storage (own SigV4 over aiohttp, uvloop as the CLI uses), signed
  ``Content-MD5`` + ETag check per part/object, ``UNSIGNED-PAYLOAD``; 8 parts / 64 PUTs in
  flight.
* ``amly-crc32``: the same with ``checksum="crc32"`` for the parts (S3's flexible checksums:
  a signed ``x-amz-checksum-crc32`` the server verifies and echoes, instead of MD5/ETag).
* ``s3transfer``: ``boto3`` ``upload_file`` / ``TransferManager`` with the CLI's defaults
  (8 MiB threshold and chunks, 10 threads); botocore adds a CRC32 checksum and, because the
  endpoint is plain http, also signs the SHA-256 of every body.
* ``s3transfer-unsigned``: the same with ``payload_signing_enabled=False``: what botocore
  does over https (CRC32 only, no body SHA-256): the fair peer.
* ``aiobotocore``: the asyncio botocore (same concurrency as amly, payload signing off,
  CRC32 checksums), the library amly could have used instead of its own signer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

MiB = 1024 * 1024
PART = 8 * MiB
PARTS_IN_FLIGHT = 8
PUTS_IN_FLIGHT = 64
CLIENTS = ["amly", "amly-crc32", "s3transfer", "s3transfer-unsigned", "aiobotocore"]


# -- the clients, each run in a fresh process ---------------------------------------------------


def _photos(path: Path) -> list[Path]:
    return sorted(path.rglob("*.jpg"))


def _key(root: Path, p: Path) -> str:
    return f"photos/{p.relative_to(root).as_posix()}"


def run_amly(job: str, endpoint: str, bucket: str, path: Path, checksum: str = "md5") -> None:
    from amly.journal import Journal
    from amly.storage.s3 import S3Client, S3Config
    from amly.storage.s3_multipart import upload_file

    async def go() -> None:
        async with S3Client(S3Config.from_env(endpoint=endpoint)) as s3:
            if job == "multipart":
                with Journal(Path(os.environ["BENCH_TMP"]) / "journal.sqlite3") as j:
                    r = await upload_file(
                        s3, bucket, "big.bin", path, journal=j, part_size=PART,
                        parts_in_flight=PARTS_IN_FLIGHT, checksum=checksum,
                    )  # fmt: skip
                assert r.parts_sent == r.parts
            else:
                files = _photos(path)
                items = ((bucket, _key(path, p), (lambda p=p: p.read_bytes())) for p in files)
                res = await s3.put_many(items, concurrency=PUTS_IN_FLIGHT)
                assert len(res) == len(files) and all(isinstance(v, str) for v in res.values())

    try:
        import uvloop

        uvloop.run(go())
    except ImportError:
        asyncio.run(go())


def _boto(endpoint: str, unsigned: bool) -> Any:
    import boto3
    from botocore.config import Config

    s3cfg = {"payload_signing_enabled": False} if unsigned else {}
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3=s3cfg, max_pool_connections=PUTS_IN_FLIGHT),
    )


def run_s3transfer(job: str, endpoint: str, bucket: str, path: Path, unsigned: bool) -> None:
    from boto3.s3.transfer import TransferConfig
    from s3transfer.manager import TransferManager

    client = _boto(endpoint, unsigned)
    cfg = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART)  # the CLI's
    if job == "multipart":
        client.upload_file(str(path), bucket, "big.bin", Config=cfg)
    else:
        # aws s3 cp --recursive: one TransferManager, max_concurrency=10 threads
        with TransferManager(client, cfg) as tm:
            futures = [tm.upload(str(p), bucket, _key(path, p)) for p in _photos(path)]
            for f in futures:
                f.result()


def run_aiobotocore(job: str, endpoint: str, bucket: str, path: Path) -> None:
    from aiobotocore.session import get_session
    from botocore.config import Config

    size = path.stat().st_size

    async def go() -> None:
        session = get_session()
        cfg = Config(s3={"payload_signing_enabled": False}, max_pool_connections=PUTS_IN_FLIGHT)
        async with session.create_client("s3", endpoint_url=endpoint, config=cfg) as c:
            if job == "multipart":
                n = -(-size // PART)
                up = await c.create_multipart_upload(Bucket=bucket, Key="big.bin")
                uid = up["UploadId"]
                etags: dict[int, str] = {}
                todo = iter(range(1, n + 1))
                loop = asyncio.get_running_loop()
                fd = os.open(path, os.O_RDONLY)

                async def worker() -> None:
                    for i in todo:
                        data = await loop.run_in_executor(None, os.pread, fd, PART, (i - 1) * PART)
                        r = await c.upload_part(
                            Bucket=bucket, Key="big.bin", UploadId=uid, PartNumber=i, Body=data
                        )
                        etags[i] = r["ETag"]

                await asyncio.gather(*(worker() for _ in range(PARTS_IN_FLIGHT)))
                os.close(fd)
                await c.complete_multipart_upload(
                    Bucket=bucket, Key="big.bin", UploadId=uid,
                    MultipartUpload={"Parts": [{"PartNumber": i, "ETag": etags[i]} for i in sorted(etags)]},
                )  # fmt: skip
            else:
                files = iter(_photos(path))

                async def putter() -> None:
                    for p in files:
                        await c.put_object(Bucket=bucket, Key=_key(path, p), Body=p.read_bytes())

                await asyncio.gather(*(putter() for _ in range(PUTS_IN_FLIGHT)))

    asyncio.run(go())


IMPORTS = {
    "amly": ["aiohttp", "uvloop", "amly.journal", "amly.storage.s3", "amly.storage.s3_multipart"],
    "s3transfer": ["boto3", "botocore.config", "boto3.s3.transfer", "s3transfer.manager"],
    "aiobotocore": ["aiobotocore.session", "botocore.config"],
}


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def worker_main(client: str, job: str, endpoint: str, bucket: str, path: str) -> None:
    import importlib

    # Imports are a fixed cost per process, not per byte: measured apart.
    for mod in IMPORTS[client.removesuffix("-unsigned").removesuffix("-crc32")]:
        importlib.import_module(mod)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    p = Path(path)
    if client == "amly":
        run_amly(job, endpoint, bucket, p)
    elif client == "amly-crc32":
        run_amly(job, endpoint, bucket, p, checksum="crc32")
    elif client == "s3transfer":
        run_s3transfer(job, endpoint, bucket, p, unsigned=False)
    elif client == "s3transfer-unsigned":
        run_s3transfer(job, endpoint, bucket, p, unsigned=True)
    elif client == "aiobotocore":
        run_aiobotocore(job, endpoint, bucket, p)
    else:
        raise SystemExit(f"unknown client {client}")
    wall = time.perf_counter() - t0
    cpu = _cpu()
    print(
        json.dumps({"wall": wall, "cpu": cpu - cpu0, "cpu_process": cpu, "rss_mb": _peak_rss_mb()})
    )


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would keep the parent's peak across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the harness ----------------------------------------------------------------------------


def big_file(gb: float) -> Path:
    path = HERE / "data" / f"s3_{gb:g}GB.bin"
    size = int(gb * 1024**3)
    if not path.exists() or path.stat().st_size != size:
        path.parent.mkdir(parents=True, exist_ok=True)
        block = os.urandom(64 * MiB)
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
    return path


def photos(n: int) -> Path:
    from gen_dataset import generate

    return generate(HERE / "data" / f"s3_photos_{n}", n, size=(640, 360))


def warm(path: Path) -> None:
    files = [path] if path.is_file() else list(path.rglob("*.jpg"))
    for p in files:
        with open(p, "rb") as f:
            while f.read(16 * MiB):
                pass


def one(client: str, job: str, path: Path, tmp: Path) -> dict[str, Any]:
    from s3_support import boto3_client, moto_server, s3_env

    with moto_server() as endpoint:
        bucket = "bench"
        boto3_client(endpoint).create_bucket(Bucket=bucket)
        env = s3_env(endpoint, BENCH_TMP=str(tmp), PYTHONPATH=str(HERE.parent))
        (tmp / "journal.sqlite3").unlink(missing_ok=True)
        out = subprocess.run(
            [sys.executable, __file__, "--worker", client, job, endpoint, bucket, str(path)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"{client} {job} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        # Integrity, checked independently: the object/keys are there with the right size.
        b = boto3_client(endpoint)
        if job == "multipart":
            head = b.head_object(Bucket=bucket, Key="big.bin")
            assert head["ContentLength"] == path.stat().st_size
        else:
            n = sum(
                len(page.get("Contents", []))
                for page in b.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            )
            assert n == len(_photos(path)), n
        return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--jobs", default="multipart,photos")
    a = ap.parse_args()
    if a.worker:
        worker_main(*a.worker)
        return
    import tempfile

    clients = a.clients.split(",")
    jobs = a.jobs.split(",")
    paths = {}
    if "multipart" in jobs:
        paths["multipart"] = big_file(a.gb)
    if "photos" in jobs:
        paths["photos"] = photos(a.photos)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(a.runs):
            for job in jobs:
                warm(paths[job])
                for client in clients:
                    if client == "amly-crc32" and job != "multipart":
                        continue  # the checksum mode is a multipart option
                    r = one(client, job, paths[job], Path(tmp))
                    results.setdefault((job, client), []).append(r)
                    print(f"run {run + 1} {job:9s} {client:20s} {json.dumps(r)}", file=sys.stderr)
    rows = []
    for job in jobs:
        size_gb = paths[job].stat().st_size / 1e9 if job == "multipart" else sum(
            p.stat().st_size for p in _photos(paths[job])
        ) / 1e9  # fmt: skip
        count = 1 if job == "multipart" else len(_photos(paths[job]))
        base = None
        for client in clients:
            if (job, client) not in results:
                continue
            rs = results[(job, client)]
            wall = statistics.median(r["wall"] for r in rs)
            cpu = statistics.median(r["cpu"] for r in rs)
            cpu_process = statistics.median(r["cpu_process"] for r in rs)
            rss = max(r["rss_mb"] for r in rs)
            row = {
                "job": job,
                "client": client,
                "runs": len(rs),
                "wall_s": round(wall, 2),
                "MB_per_s": round(size_gb * 1000 / wall, 1),
                "cpu_s": round(cpu, 2),
                "cpu_process_s": round(cpu_process, 2),
                "cpu_s_per_GB": round(cpu / size_gb, 2),
                "cpu_ms_per_object": round(cpu * 1000 / count, 3),
                "peak_rss_MB": round(rss, 1),
            }
            rows.append(row)
            if client == "amly":
                base = row
        for row in rows:
            if row["job"] == job and base is not None:
                row["amly_cpu_ratio"] = round(base["cpu_s"] / row["cpu_s"], 2)
                row["amly_wall_ratio"] = round(base["wall_s"] / row["wall_s"], 2)
    print(json.dumps(rows, indent=1))
    print()
    print(
        "| job | client | wall s | MB/s | transfer CPU s | CPU s/GB | CPU ms/object | process CPU s | peak RSS MB | amly CPU / this | amly wall / this |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['job']} | {r['client']} | {r['wall_s']} | {r['MB_per_s']} | {r['cpu_s']} | "
            f"{r['cpu_s_per_GB']} | {r['cpu_ms_per_object']} | {r['cpu_process_s']} | {r['peak_rss_MB']} | "
            f"{r.get('amly_cpu_ratio', '')} | {r.get('amly_wall_ratio', '')} |"
        )


if __name__ == "__main__":
    main()
