"""Benchmark for the library choice: amly's own SigV4 over aiohttp vs aiobotocore (the
asyncio botocore), client CPU per small PUT and per GB of multipart, same run, same moto
server build. The harness is bench_s3.py's (fresh process and fresh moto per client and
job, medians of ``--runs``):

    python bench/bench_s3_client.py [--runs 3] [--gb 1] [--photos 2000]

equals ``python bench/bench_s3.py --clients amly,aiobotocore``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_s3 import main  # noqa: E402

if __name__ == "__main__":
    if not any(a.startswith("--clients") or a == "--worker" for a in sys.argv[1:]):
        sys.argv += ["--clients", "amly,aiobotocore"]
    main()
