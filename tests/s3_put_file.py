"""Upload one file to S3 with amly's multipart engine, as a separate process a test can
``kill -9``: ``python tests/s3_put_file.py FILE BUCKET KEY JOURNAL [--parts-in-flight N]
[--delay S]``. Prints ``part N`` per acknowledged part, then a JSON summary."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from amly.journal import Journal
from amly.storage.s3 import S3Client, S3Config
from amly.storage.s3_multipart import upload_file


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("bucket")
    ap.add_argument("key")
    ap.add_argument("journal")
    ap.add_argument("--parts-in-flight", type=int, default=4)
    ap.add_argument("--part-size", type=int, default=None)
    ap.add_argument("--delay", type=float, default=0.0)
    a = ap.parse_args()

    async def on_part(n: int, size: int) -> None:
        print(f"part {n}", flush=True)
        if a.delay:
            await asyncio.sleep(a.delay)

    with Journal(a.journal) as j:
        async with S3Client(S3Config.from_env()) as s3:
            r = await upload_file(
                s3, a.bucket, a.key, a.file, journal=j, part_size=a.part_size,
                parts_in_flight=a.parts_in_flight, on_part=on_part,
            )  # fmt: skip
    print(json.dumps(dataclasses.asdict(r)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
