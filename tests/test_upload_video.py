"""Videos through the upload engine (the Mapillary target): rebuilt as CAMM while streaming,
sent resumably, finished as ``mly_camm_video``, journaled; a dropped connection resumes at
the server's offset and ``kill -9`` then a rerun never sends a byte twice or makes a second
cluster."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from _upload_helpers import env_for, summary

import amly
from amly.description import DESCRIPTION_FILE, write_file
from amly.server.faults import Faults
from amly.server.testing import RunningServer, running_server
from amly.services.upload import UploadResult
from amly.video import _build as B
from amly.video import read_video_sync
from amly.video._describe import video_entry


def _videos(folder: Path, big: int = 0) -> list[Path]:
    """Three videos and their description file (amly's entries, official format)."""
    folder.mkdir(parents=True)
    paths = [folder / "gopro.mp4", folder / "theta.mp4", folder / "dash.mp4"]
    base = B.Base(seconds=12, fps=30, frame_size=big) if big else None
    B.build_gopro(paths[0], B.straight_track(12, 10), gps9=True, gps5=False, base=base)
    B.build_camm(paths[1], B.straight_track(10, 5, lat=48.1), make="RICOH", model="THETA Z1")
    B.build_blackvue(paths[2], B.straight_track(15, 1, lat=45.0), empty_free_first=True)
    write_file(folder / DESCRIPTION_FILE, [video_entry(read_video_sync(p)) for p in paths])
    return paths


def _video_rows(srv: RunningServer) -> list[sqlite3.Row]:
    con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    con.row_factory = sqlite3.Row
    return con.execute(
        "SELECT v.*, c.file_type FROM videos v JOIN clusters c ON c.id = v.cluster_id "
        "ORDER BY v.points"
    ).fetchall()


def _sizes_match(srv: RunningServer) -> None:
    """Every byte of every upload arrived exactly once."""
    for k, n in srv.stats.bytes_by_key.items():
        assert n == (srv.store_dir / "uploads" / k).stat().st_size, k


def _amly(srv: RunningServer, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amly", "upload", *args, "--endpoint", srv.url, "--json"],
        env=env_for(srv, home),
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_upload_videos_from_a_description_file_then_rerun(tmp_path: Path) -> None:
    paths = _videos(tmp_path / "v")
    with running_server(tmp_path / "srv") as srv:
        res = _amly(srv, tmp_path / "home", str(tmp_path / "v"))
        assert res.returncode == 0, res.stderr
        out = summary(res)
        assert len(out["cluster_ids"]) == 3
        assert out["counts"]["videos"] == 3 and out["counts"]["images"] == 0
        rows = _video_rows(srv)
        assert [(r["file_type"], r["points"], r["model"]) for r in rows] == [
            ("mly_camm_video", 15, "DR900X Plus"),
            ("mly_camm_video", 50, "THETA Z1"),
            ("mly_camm_video", 120, "HERO9 Black"),
        ]
        for r in rows:  # the stored file is the CAMM rebuild of the source, same track
            back = read_video_sync(srv.store_dir / r["path"])
            assert back.filetype == "camm" and len(back.points) == r["points"]
        assert all(p.stat().st_size for p in paths)
        sent = srv.stats.bytes_by_key.copy()
        again = _amly(srv, tmp_path / "home", str(tmp_path / "v"))
        assert again.returncode == 0, again.stderr
        assert sorted(summary(again)["cluster_ids"]) == sorted(out["cluster_ids"])
        assert len(_video_rows(srv)) == 3 and srv.stats.bytes_by_key == sent
        _sizes_match(srv)


def test_client_upload_resumes_after_dropped_connections(tmp_path: Path) -> None:
    """A 24 MB video through ``Client.upload``; every POST is cut after 3 MB: the engine asks
    the offset and goes on, no byte is sent twice, one cluster."""
    _videos(tmp_path / "v", big=60_000)
    with running_server(tmp_path / "srv", faults=Faults(drop_after_bytes=3_000_000)) as srv:

        async def main() -> UploadResult:
            async with amly.Client(srv.url, token=srv.token, journal=tmp_path / "j") as client:
                return await client.upload([tmp_path / "v"])

        result = asyncio.run(main())
        assert result.ok, result
        assert len(result.cluster_ids) == 3
        assert result.retries >= 7  # 21.6 MB in 3 MB cuts
        _sizes_match(srv)
        big = max(srv.stats.bytes_by_key.values())
        assert big > 21_000_000
        assert len(_video_rows(srv)) == 3


def test_kill_9_mid_video_upload_then_rerun(tmp_path: Path) -> None:
    _videos(tmp_path / "v", big=100_000)  # a 36 MB GoPro video
    home = tmp_path / "home"
    with running_server(
        tmp_path / "srv", faults=Faults(drop_after_bytes=2_000_000, latency_ms=100)
    ) as srv:
        cmd = [sys.executable, "-m", "amly", "upload", str(tmp_path / "v")]
        cmd += ["--endpoint", srv.url, "--json"]
        proc = subprocess.Popen(
            cmd,
            env=env_for(srv, home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        uploads = srv.store_dir / "uploads"

        def biggest() -> int:
            sizes = [p.stat().st_size for p in uploads.iterdir() if p.suffix == ".mp4"]
            return max(sizes, default=0)

        while biggest() < 8_000_000 and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        had = biggest()
        assert 8_000_000 <= had < 36_000_000
        srv.faults.clear()
        rerun = subprocess.run(
            cmd, env=env_for(srv, home), capture_output=True, text=True, timeout=240
        )
        assert rerun.returncode == 0, rerun.stderr
        assert len(summary(rerun)["cluster_ids"]) == 3
        _sizes_match(srv)  # the rerun sent only what the server did not have
        rows = _video_rows(srv)
        assert len(rows) == 3 and rows[-1]["size"] > 36_000_000


def test_upload_a_folder_of_videos_without_a_description(tmp_path: Path) -> None:
    """``amly upload`` processes a raw folder in memory: its videos too."""
    folder = tmp_path / "raw"
    _videos(folder)
    (folder / DESCRIPTION_FILE).unlink()
    B.build_camm(folder / "parked.mp4", B.straight_track(10, 5, speed=0.1))
    with running_server(tmp_path / "srv") as srv:
        res = _amly(srv, tmp_path / "home", str(folder))
        assert res.returncode == 1, res.stderr  # the stationary video is reported
        out = summary(res)
        assert len(out["cluster_ids"]) == 3
        assert [r["model"] for r in _video_rows(srv)] == ["DR900X Plus", "THETA Z1", "HERO9 Black"]
        assert "MapillaryStationaryVideoError" in res.stdout
        assert not (folder / DESCRIPTION_FILE).exists()  # nothing written next to the videos


def test_videos_to_a_bucket_are_stored_as_they_are_with_their_track(tmp_path: Path) -> None:
    """``--to s3://`` stores each video byte for byte (the big one in multipart) with its
    official description entry beside it; photos beside them go too; a rerun sends nothing."""
    import hashlib

    from _upload_helpers import photos
    from s3_support import boto3_client, moto_server, s3_env

    folder = tmp_path / "t"
    paths = _videos(folder, big=60_000)  # the GoPro: ~21 MB, above the multipart threshold
    expected = {p.name: video_entry(read_video_sync(p)) for p in paths}
    (folder / DESCRIPTION_FILE).unlink()
    photos(folder / "p", 3)
    before = {p.name: p.read_bytes() for p in paths}
    with moto_server() as url:
        boto = boto3_client(url)
        boto.create_bucket(Bucket="videos-here")
        env = {k: v for k, v in s3_env(url).items() if not k.startswith("MAPILLARY_")}
        env["AMLY_HOME"] = str(tmp_path / "h")
        cmd = [sys.executable, "-m", "amly", "process-and-upload", str(folder),
               "--to", "s3://videos-here/x", "--json"]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        out = summary(r)
        assert out["counts"]["images"] == 3 and out["counts"]["videos"] == 3, json.dumps(out)
        keys = [o["Key"] for o in boto.list_objects_v2(Bucket="videos-here")["Contents"]]
        descs = [k for k in keys if k.endswith(DESCRIPTION_FILE)]
        assert len(descs) == 4  # one per video, one for the photos
        for name, data in before.items():
            (key,) = [k for k in keys if k.endswith("/" + name)]
            assert key.startswith(f"x/{name[:-4]}-")
            stored = boto.get_object(Bucket="videos-here", Key=key)["Body"].read()
            assert stored == data  # as it is, not rebuilt
            beside = key.rsplit("/", 1)[0] + "/" + DESCRIPTION_FILE
            (entry,) = json.loads(boto.get_object(Bucket="videos-here", Key=beside)["Body"].read())
            assert entry["filename"] == name
            assert entry["md5sum"] == hashlib.md5(data).hexdigest()
            want = {k: v for k, v in expected[name].items() if k not in ("filename", "md5sum")}
            assert {k: v for k, v in entry.items() if k not in ("filename", "md5sum")} == want
        big = [k for k in keys if k.endswith("/gopro.mp4")][0]
        assert "-" in boto.head_object(Bucket="videos-here", Key=big)["ETag"]  # multipart
        assert not boto.list_multipart_uploads(Bucket="videos-here").get("Uploads")

        again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert again.returncode == 0, again.stderr
        assert summary(again)["counts"]["skipped_sequences"] == 4  # the journal has them all
    assert {p.name: p.read_bytes() for p in paths} == before
    assert "Traceback" not in r.stderr + again.stderr


def test_videos_staged_in_a_bucket_go_on_to_mapillary_as_from_the_folder(tmp_path: Path) -> None:
    """folder -> Mapillary (server 1); folder -> bucket; bucket -> Mapillary (server 2): the
    CAMM rebuilds are read through ranged GETs (no local copy) and arrive byte for byte as
    from the folder; a rerun from the bucket sends nothing."""
    import hashlib

    from s3_support import boto3_client, moto_server, s3_env

    _videos(tmp_path / "v", big=60_000)
    with moto_server() as url:
        boto3_client(url).create_bucket(Bucket="relay")
        senv = {k: v for k, v in s3_env(url).items() if not k.startswith("MAPILLARY_")}
        staged = subprocess.run(
            [sys.executable, "-m", "amly", "upload", str(tmp_path / "v"), "--to", "s3://relay/d1",
             "--json"], capture_output=True, text=True, timeout=300,
            env={**senv, "AMLY_HOME": str(tmp_path / "h0")},
        )  # fmt: skip
        assert staged.returncode == 0, staged.stderr
        received = []
        for i, source in enumerate([str(tmp_path / "v"), "s3://relay/d1"]):
            with running_server(tmp_path / f"srv{i}") as srv:
                env = {**s3_env(url), **env_for(srv, tmp_path / f"h{i + 1}")}
                cmd = [sys.executable, "-m", "amly", "upload", source, "--json",
                       "--endpoint", srv.url]  # fmt: skip
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
                assert r.returncode == 0, r.stderr
                assert summary(r)["counts"]["videos"] == 3, r.stdout
                rows = _video_rows(srv)
                assert [r["file_type"] for r in rows] == ["mly_camm_video"] * 3
                digests = [
                    (r["points"], hashlib.md5((srv.store_dir / r["path"]).read_bytes()).hexdigest())
                    for r in rows
                ]
                received.append(sorted(digests))
                _sizes_match(srv)
                sent = srv.stats.bytes_by_key.copy()
                again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
                assert again.returncode == 0, again.stderr
                assert srv.stats.bytes_by_key == sent and len(_video_rows(srv)) == 3
                assert "Traceback" not in r.stderr + again.stderr
    assert received[0] == received[1]
