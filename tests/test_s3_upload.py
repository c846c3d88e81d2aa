"""``amly upload TREE --to s3://bucket/prefix``: the bucket receives exactly the bytes the
Mapillary upload sends (photos with their description embedded), one description file per
sequence, and a rerun sends nothing again."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _upload_helpers import amly, clusters, env_for, md5, summary, tree
from s3_support import boto3_client, moto_server, s3_env

from amly.server.testing import RunningServer, running_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("srv")) as s:
        yield s


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_server() as url:
        yield url


def amly_to_s3(s3: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in s3_env(s3).items()}
    env.update(AMLY_HOME=str(home))
    env = {k: v for k, v in env.items() if not k.startswith("MAPILLARY_")}
    return subprocess.run([sys.executable, "-m", "amly", *args], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip


def test_upload_to_bucket_stores_what_mapillary_receives(
    srv: RunningServer, s3: str, tmp_path: Path
) -> None:
    photos = tree(tmp_path / "t", {"a": 7, "b": 5})
    for sub in ("a", "b"):
        done = subprocess.run(
            [sys.executable, "-m", "amly", "process", str(tmp_path / "t" / sub), "--no-progress"],
            env=env_for(srv, tmp_path / "h0"), capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    before = {md5(p) for ps in photos.values() for p in ps}

    # To Mapillary (the local server) ...
    proc = amly(srv, tmp_path / "h1", "upload", str(tmp_path / "t"), "--subfolders", "--json")
    assert proc.returncode == 0, proc.stderr
    received = {r["md5"] for rows in clusters(srv).values() for r in rows}
    assert len(received) == 12

    # ... and to a bucket, from the same folder.
    boto = boto3_client(s3)
    boto.create_bucket(Bucket="staging")
    r = amly_to_s3(s3, tmp_path / "h2", "upload", str(tmp_path / "t"), "--subfolders",
                   "--to", "s3://staging/run 1", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = summary(r)
    assert s["counts"]["images"] == 12 and s["counts"]["sequences"] == 2
    objs: dict[str, bytes] = {}
    for o in boto.list_objects_v2(Bucket="staging", Prefix="run 1/")["Contents"]:
        objs[o["Key"]] = boto.get_object(Bucket="staging", Key=o["Key"])["Body"].read()
    jpgs = {k: v for k, v in objs.items() if k.endswith(".jpg")}
    assert {hashlib.md5(v).hexdigest() for v in jpgs.values()} == received
    assert {k.rsplit("/", 1)[1] for k in jpgs} == {p.name for ps in photos.values() for p in ps}
    descs = [
        json.loads(v) for k, v in objs.items() if k.endswith("mapillary_image_description.json")
    ]
    assert sorted(len(d) for d in descs) == [5, 7]
    for d in descs:
        for entry in d:
            assert entry["filename"].endswith(".jpg") and "MAPLatitude" in entry
    assert sorted(s["cluster_ids"]) == sorted(
        f"s3://staging/{k.rsplit('/', 1)[0]}/" for k in objs if k.endswith(".json")
    )
    # the photos on disk were never touched
    assert {md5(p) for ps in photos.values() for p in ps} == before

    # A rerun sends nothing: the journal has every photo and finished sequence.
    again = amly_to_s3(s3, tmp_path / "h2", "upload", str(tmp_path / "t"), "--subfolders",
                       "--to", "s3://staging/run 1", "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    s2: dict[str, Any] = summary(again)
    assert s2["counts"].get("bytes_sent", 0) == 0
    assert s2["counts"]["skipped_sequences"] == 2


def test_upload_to_missing_bucket_is_a_clear_error(s3: str, tmp_path: Path) -> None:
    tree(tmp_path / "t", {"a": 3})
    r = amly_to_s3(s3, tmp_path / "h", "process-and-upload", str(tmp_path / "t" / "a"),
                   "--to", "s3://nobucket-here/x")  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "nobucket-here" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_upload_from_bucket_equals_upload_of_the_folder(s3: str, tmp_path: Path) -> None:
    """Folder -> Mapillary (server 1); folder -> bucket; bucket -> Mapillary (server 2): the
    two servers hold the same clusters, images in the same order, byte for byte."""
    tree(tmp_path / "t", {"a": 6, "b": 4})
    for sub in ("a", "b"):
        done = subprocess.run(
            [sys.executable, "-m", "amly", "process", str(tmp_path / "t" / sub), "--no-progress"],
            env={**amly_env(tmp_path / "h0")}, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    boto3_client(s3).create_bucket(Bucket="relay")
    r = amly_to_s3(s3, tmp_path / "h1", "upload", str(tmp_path / "t"), "--subfolders",
                   "--to", "s3://relay/day1", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = []
    for i, source in enumerate([str(tmp_path / "t"), "s3://relay/day1"]):
        with running_server(tmp_path / f"srv{i}") as srv:
            env = {**s3_env(s3), **env_for(srv, tmp_path / f"h{i + 2}")}
            r = subprocess.run(
                [sys.executable, "-m", "amly", "upload", source, "--subfolders", "--json",
                 "--endpoint", srv.url], env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert summary(r)["counts"]["images"] == 10
            results.append(sorted([row["md5"] for row in rows] for rows in clusters(srv).values()))
    assert results[0] == results[1] and len(results[0]) == 2


def amly_env(home: Path) -> dict[str, str]:
    import os

    return {**{k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY_")},
            "AMLY_HOME": str(home)}  # fmt: skip


def test_upload_from_empty_prefix_is_a_clear_error(
    srv: RunningServer, s3: str, tmp_path: Path
) -> None:
    boto3_client(s3).create_bucket(Bucket="empty-one")
    env = {**s3_env(s3), **env_for(srv, tmp_path / "h")}
    r = subprocess.run(
        [sys.executable, "-m", "amly", "upload", "s3://empty-one/nothing/", "--endpoint", srv.url],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "no JPEG photos under this prefix" in r.stderr
    assert "Traceback" not in r.stderr


def test_process_and_upload_from_bucket_equals_folder(s3: str, tmp_path: Path) -> None:
    """Raw photos (and one PNG named .jpg) in a folder and the same files in a bucket:
    process-and-upload of each reaches Mapillary (two servers) as the same clusters, byte
    for byte; the bad object is counted and named, the others go on (exit 1 both)."""
    tree(tmp_path / "t", {"a": 6, "b": 5})
    (tmp_path / "t" / "a" / "zz_not_a_photo.jpg").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 64)
    boto = boto3_client(s3)
    boto.create_bucket(Bucket="raw")
    for p in sorted((tmp_path / "t").rglob("*.jpg")):
        boto.put_object(Bucket="raw", Key=f"trip 1/{p.relative_to(tmp_path / 't').as_posix()}",
                        Body=p.read_bytes())  # fmt: skip
    results = []
    for i, source in enumerate([str(tmp_path / "t"), "s3://raw/trip 1"]):
        with running_server(tmp_path / f"srv{i}") as srv:
            env = {**s3_env(s3), **env_for(srv, tmp_path / f"h{i}")}
            r = subprocess.run(
                [sys.executable, "-m", "amly", "process-and-upload", source, "--json",
                 "--endpoint", srv.url], env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert r.returncode == 1, (r.returncode, r.stderr)
            s = summary(r)
            assert s["counts"]["images"] == 11
            assert "Traceback" not in r.stderr and "zz_not_a_photo.jpg" in r.stdout + r.stderr
            results.append(sorted([row["md5"] for row in rows] for rows in clusters(srv).values()))
    assert results[0] == results[1] and len(results[0]) == 2

    # amly process on the bucket stores the description file beside the photos; a later
    # upload of the prefix sends them on: the same clusters again.
    env = {**s3_env(s3), **amly_env(tmp_path / "h9")}
    env.pop("AWS_ENDPOINT_URL")  # given as --s3-endpoint instead
    r = subprocess.run([sys.executable, "-m", "amly", "process", "s3://raw/trip 1", "--json", "--s3-endpoint", s3],
                       env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 1, (r.returncode, r.stderr)  # the PNG
    assert summary(r)["written"] == ["s3://raw/trip 1/mapillary_image_description.json"]
    doc = json.loads(
        boto.get_object(Bucket="raw", Key="trip 1/mapillary_image_description.json")["Body"].read()
    )
    good = {p.relative_to(tmp_path / "t").as_posix() for p in (tmp_path / "t").rglob("IMG_*.jpg")}
    assert {e["filename"] for e in doc if "error" not in e} == good
    assert [e["filename"] for e in doc if "error" in e] == ["a/zz_not_a_photo.jpg"]
    with running_server(tmp_path / "srv3") as srv:
        env = {**s3_env(s3), **env_for(srv, tmp_path / "h3")}
        r = subprocess.run(
            [sys.executable, "-m", "amly", "upload", "s3://raw/trip 1", "--json", "--endpoint",
             srv.url], env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert r.returncode == 0, (r.returncode, r.stderr)
        again = sorted([row["md5"] for row in rows] for rows in clusters(srv).values())
    assert again == results[0]


def test_reading_threads_close_their_connections_when_the_source_is_done(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker threads that read photo headers from a bucket each keep a client (keep-
    alive); once the source is done, those clients are closed, not left to the process exit
    (a leak for a long-lived program)."""
    import asyncio
    import threading

    from _upload_helpers import photos

    from amly.pipeline.process import Options
    from amly.storage import s3_source

    for k, v in s3_env(s3).items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    boto = boto3_client(s3)
    boto.create_bucket(Bucket="idle-readers")
    for p in photos(tmp_path / "p", 6):
        boto.upload_file(str(p), "idle-readers", f"p/{p.name}")
    made: list[s3_source._ThreadReader] = []
    init = s3_source._ThreadReader.__init__

    def record(self: s3_source._ThreadReader) -> None:
        init(self)
        made.append(self)

    monkeypatch.setattr(s3_source._ThreadReader, "__init__", record)

    async def run() -> int:
        n = 0
        async for group in s3_source.s3_groups("s3://idle-readers/p", Options()):
            n += sum(len(s.images) for s in group.sequences)
        return n

    assert asyncio.run(run()) == 6
    assert made  # the photos were read by worker threads, each with its own client
    for t in threading.enumerate():
        if t.name == "amly-s3release":
            t.join(60)
    assert all(r.client._session is None and r.loop.is_closed() for r in made)
    assert not any(r in s3_source._readers for r in made)


def test_process_several_prefixes_stores_a_description_file_beside_each(
    s3: str, tmp_path: Path
) -> None:
    from _upload_helpers import photos

    boto = boto3_client(s3)
    boto.create_bucket(Bucket="several")
    names = {}
    for i, sub in enumerate(("day 1", "day 2")):
        ps = photos(tmp_path / sub, 3 + i, seed=i + 1, lat=52.52 + i)
        names[sub] = {p.name for p in ps}
        for p in ps:
            boto.upload_file(str(p), "several", f"{sub}/{p.name}")
    env = {**s3_env(s3), **amly_env(tmp_path / "h")}
    cmd = [sys.executable, "-m", "amly", "process", "s3://several/day 1", "s3://several/day 2",
           "--json"]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = summary(r)
    assert s["counts"]["images"] == 7 and s["counts"]["sequences"] == 2
    assert s["written"] == [f"s3://several/{d}/mapillary_image_description.json" for d in names]
    for sub, want in names.items():
        body = boto.get_object(Bucket="several", Key=f"{sub}/mapillary_image_description.json")
        doc = json.loads(body["Body"].read())
        assert {e["filename"] for e in doc} == want and all("MAPLatitude" in e for e in doc)
    mixed = subprocess.run([*cmd[:-1], str(tmp_path / "day 1")], env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert mixed.returncode == 2 and "not both" in mixed.stderr, mixed.stderr
