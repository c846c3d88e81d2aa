"""Downloads into a bucket (``--out s3://bucket/prefix``) against the seeded local server and
moto's S3 server: the same ids, sequences and bytes (EXIF included) as into a folder; the
index and the resume manifest stored beside the images; a rerun fetches nothing again."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from download_support import SUB, bbox_arg, env, files, index_ids, seeded_server, truth
from s3_support import SECRET_KEY, boto3_client, free_port, moto_server, s3_env

#: A corner of SUB: a few dozen images in several sequences.
SMALL = (SUB[0], SUB[1], SUB[0] + 0.0006, SUB[1] + 0.0006)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from seeded_server(tmp_path_factory.mktemp("dl"))


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_server() as url:
        yield url


def amly_s3(srv: Any, s3: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    e = env(home)
    e.update({k: v for k, v in s3_env(s3).items() if k.startswith("AWS_")})
    e.pop("AWS_ENDPOINT_URL")  # given as --s3-endpoint instead, as a user might
    cmd = [sys.executable, "-m", "amly", *args, "--endpoint", srv.url, "--token", srv.token,
           "--s3-endpoint", s3]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=600)


def bucket_files(s3: str, bucket: str, prefix: str) -> dict[str, bytes]:
    boto = boto3_client(s3)
    out = {}
    for page in boto.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) :]] = boto.get_object(Bucket=bucket, Key=o["Key"])[
                "Body"
            ].read()
    return out


def test_download_into_bucket_equals_folder_and_resumes(srv: Any, s3: str, tmp_path: Path) -> None:
    expected = truth(srv, SMALL)
    assert 10 < len(expected) < 300
    boto3_client(s3).create_bucket(Bucket="survey")
    folder = tmp_path / "out"
    common = ["download", "images", "--bbox", bbox_arg(SMALL), "--size", "256", "--json"]
    r1 = amly_s3(srv, s3, tmp_path / "h1", *common, "--out", str(folder))
    assert r1.returncode == 0, r1.stderr
    r2 = amly_s3(srv, s3, tmp_path / "h2", *common, "--out", "s3://survey/berlin 2024/")
    assert r2.returncode == 0, r2.stderr
    s2 = json.loads(r2.stdout)
    assert s2["counts"]["downloaded"] == len(expected)
    assert s2["index"] == "s3://survey/berlin 2024/index.geojson"

    stored = bucket_files(s3, "survey", "berlin 2024/")
    local = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.glob("*/*.jpg")}
    assert files(folder) == expected
    jpgs = {k: v for k, v in stored.items() if k.endswith(".jpg")}
    assert jpgs == local  # same ids in the same sequence folders, byte for byte (EXIF too)
    doc = json.loads(stored["index.geojson"])
    assert sorted(f["properties"]["id"] for f in doc["features"]) == sorted(index_ids(folder))
    assert ".amly/manifest.sqlite3" in stored  # resume state beside the images

    # A rerun from another machine (a fresh AMLY_HOME: no local cache) resumes from the
    # manifest in the bucket: nothing is downloaded again.
    r3 = amly_s3(srv, s3, tmp_path / "h3", *common, "--out", "s3://survey/berlin 2024/")
    assert r3.returncode == 0, r3.stderr
    s3sum = json.loads(r3.stdout)
    assert s3sum["counts"].get("downloaded", 0) == 0
    assert s3sum["counts"]["reused"] == len(expected)


def test_gpx_into_bucket_equals_folder(srv: Any, s3: str, tmp_path: Path) -> None:
    boto3_client(s3).create_bucket(Bucket="tracks")
    folder = tmp_path / "gpx"
    common = ["download", "gpx", "--bbox", bbox_arg(SMALL), "--json"]
    r1 = amly_s3(srv, s3, tmp_path / "h1", *common, "--out", str(folder))
    assert r1.returncode == 0, r1.stderr
    r2 = amly_s3(srv, s3, tmp_path / "h2", *common, "--out", "s3://tracks/gpx")
    assert r2.returncode == 0, r2.stderr
    local = {p.name: p.read_bytes() for p in folder.glob("*.gpx")}
    stored = {k: v for k, v in bucket_files(s3, "tracks", "gpx/").items() if k.endswith(".gpx")}
    assert local and stored == local


def test_missing_bucket_is_a_clear_error(srv: Any, s3: str, tmp_path: Path) -> None:
    r = amly_s3(srv, s3, tmp_path, "download", "images", "--bbox", bbox_arg(SMALL),
                "--out", "s3://no-such-bucket/x")  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "no-such-bucket" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    assert SECRET_KEY not in r.stderr + r.stdout


def test_unreachable_endpoint_fails_fast_and_clearly(srv: Any, tmp_path: Path) -> None:
    """Nothing listens on the endpoint: a few attempts, then exit 4 naming the endpoint."""
    r = amly_s3(srv, f"http://127.0.0.1:{free_port()}", tmp_path, "download", "images",
                "--bbox", bbox_arg(SMALL), "--out", "s3://bucket-x/y")  # fmt: skip
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert "cannot connect to the S3 endpoint" in r.stderr and "--s3-endpoint" in r.stderr
    assert "Traceback" not in r.stderr


def test_kill_9_into_bucket_then_resume_from_an_empty_cache(
    srv: Any, s3: str, tmp_path: Path
) -> None:
    """The manifest reaches the bucket during the run (here every 10 stored images): after
    ``kill -9``, a run from another machine (no local cache) fetches again only the images
    that manifest does not list, and it lists all but a window of what was stored."""
    import os
    import signal
    import time

    from amly.services.mapillary.download import Manifest

    every = 10
    expected = truth(srv, SUB)
    boto = boto3_client(s3)
    boto.create_bucket(Bucket="killed")
    code = (f"import sys, amly.storage.s3_sink as s; s.MANIFEST_EVERY = {every}; "
            "from amly.cli import main; sys.exit(main())")  # fmt: skip
    e = env(tmp_path / "h1")
    e.update({k: v for k, v in s3_env(s3).items() if k.startswith("AWS_")})
    cmd = [sys.executable, "-c", code, "download", "images", "--bbox", bbox_arg(SUB),
           "--size", "256", "--out", "s3://killed/run/", "--concurrency", "4",
           "--endpoint", srv.url, "--token", srv.token, "-q"]  # fmt: skip

    def stored() -> set[str]:
        found = set()
        for page in boto.get_paginator("list_objects_v2").paginate(Bucket="killed"):
            found |= {o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".jpg")}
        return found

    srv.faults.latency_ms = 25  # slow enough to be killed mid-way
    try:
        proc = subprocess.Popen(cmd, env=e, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(stored()) < 60:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        srv.faults.latency_ms = 0
    before = stored()
    assert 60 <= len(before) < len(expected)
    # What the bucket's manifest lists at the kill: all but the last window of stored images.
    cache = tmp_path / "manifest"
    cache.mkdir()
    raw = boto.get_object(Bucket="killed", Key="run/.amly/manifest.sqlite3")["Body"].read()
    (cache / "manifest.sqlite3").write_bytes(raw)
    m = Manifest(cache)
    try:
        listed = {i for i in expected if m.finished(i)}
    finally:
        m.close()
    in_bucket = {i for i in expected if any(k.endswith(f"/{i}.jpg") for k in before)}
    assert listed <= in_bucket
    assert len(in_bucket) - len(listed) <= 3 * every  # the window, plus PUTs during a snapshot

    r = amly_s3(srv, s3, tmp_path / "h2", "download", "images", "--bbox", bbox_arg(SUB),
                "--size", "256", "--out", "s3://killed/run/", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["counts"]
    assert s["reused"] == len(listed)  # only what the manifest does not list is fetched
    assert s["downloaded"] == len(expected) - len(listed)
    assert {k.rsplit("/", 1)[1][:-4] for k in stored()} == set(expected)
