"""``amly process`` and ``process-and-upload`` with videos, run as a user runs them, against
``mapillary_tools process`` on the same folder; ``--gpx`` filling or replacing a track."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from _process_helpers import amly_json, official_process_videos
from _upload_helpers import env_for, photos, summary

from amly.gpx import track_to_gpx
from amly.server.testing import running_server
from amly.types import Point
from amly.video import _build as B

pytest.importorskip("mapillary_tools")


def _folder(root: Path) -> Path:
    v = root / "trip"
    v.mkdir(parents=True)
    B.build_gopro(v / "gopro9.mp4", B.straight_track(12, 10), gps9=True, gps5=False)
    B.build_gopro(v / "gopro5.mp4", B.straight_track(12, 18, lat=47.0), model="HERO7 Black")
    B.build_camm(v / "theta.mp4", B.straight_track(10, 5, lat=48.1), make="RICOH", model="THETA Z1")
    B.build_blackvue(v / "dash.mp4", B.straight_track(15, 1, lat=45.0))
    B.build_gopro(v / "parked.mp4", B.straight_track(12, 10, speed=0.2), model="HERO8 Black")
    B.build_camm(v / "jet.mp4", B.straight_track(10, 5, speed=200.0))
    B.build_gopro(v / "nogps.mp4", [], payloads=[b""] * 5, base=B.Base(seconds=5))
    (v / "broken.mp4").write_bytes(b"\0\0\0\x20ftypisom" + b"\0" * 20)
    return v


def test_process_videos_like_the_official_tool(tmp_path):
    folder = _folder(tmp_path)
    photos(folder / "photos", 5)
    rc, out = amly_json("process", folder, "--desc-path", tmp_path / "amly.json")
    assert rc == 1  # some videos cannot be used; each is listed
    assert out["counts"]["videos"] == 8 and out["counts"]["videos_ready"] == 4
    assert out["counts"]["ready"] == 5  # the photos too
    assert out["video_clocks"] == {"gps": 4}
    mine = {Path(e["filename"]).name: e for e in json.loads((tmp_path / "amly.json").read_text())}
    theirs = official_process_videos(folder, tmp_path / "official.json")
    for name, ref in theirs.items():
        if not name.endswith(".mp4"):
            continue
        got = mine[name]
        if "error" in ref:
            assert got["error"]["type"] == ref["error"]["type"], name
            continue
        assert "error" not in got, (name, got.get("error"))
        assert got["filetype"] == ref["filetype"]
        assert len(got["MAPGPSTrack"]) == len(ref["MAPGPSTrack"])
        assert got["MAPGPSTrack"][0][:5] == pytest.approx(ref["MAPGPSTrack"][0][:5], abs=1e-6)
        assert got["MAPGPSTrack"][-1][:5] == pytest.approx(ref["MAPGPSTrack"][-1][:5], abs=1e-6)
    assert mine["broken.mp4"]["error"]["type"] == "MapillaryInvalidVideoError"
    assert (
        "no moov" in mine["broken.mp4"]["error"]["message"].lower()
        or "moov" in mine["broken.mp4"]["error"]["message"]
    )
    fails = {Path(f["file"]).name: f for f in out["failures"]}
    assert "--gpx" in fails["nogps.mp4"]["hint"]


def test_filetypes_selects_what_is_processed(tmp_path):
    folder = _folder(tmp_path)
    photos(folder / "photos", 3)
    rc, out = amly_json(
        "process", folder, "--filetypes", "gopro", "--desc-path", tmp_path / "a.json"
    )
    entries = json.loads((tmp_path / "a.json").read_text())
    assert "images" not in out["counts"]
    ok = sorted(Path(e["filename"]).name for e in entries if "error" not in e)
    assert ok == ["gopro5.mp4", "gopro9.mp4"]
    res = subprocess.run(
        [sys.executable, "-m", "amly", "process", folder, "--filetypes", "movie"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "--filetypes" in res.stderr


def _gpx(path: Path, start: float, n: int = 40) -> Path:
    pts = [
        Point(datetime.fromtimestamp(start + i, timezone.utc), 10.0 + i * 1e-4, 20.0, 5.0)
        for i in range(n)
    ]
    path.write_text(track_to_gpx(pts))
    return path


def test_gpx_fills_a_video_without_telemetry_and_can_replace_the_others(tmp_path):
    v = tmp_path / "v"
    v.mkdir()
    B.build_gopro(v / "nogps.mp4", [], payloads=[b""] * 10, base=B.Base(seconds=10))
    B.build_camm(v / "theta.mp4", B.straight_track(10, 5, lat=48.1))
    gpx = _gpx(tmp_path / "t.gpx", 1_700_000_000 - 5)
    rc, out = amly_json("process", v, "--gpx", gpx, "--desc-path", tmp_path / "a.json")
    assert rc == 0, out
    entries = {Path(e["filename"]).name: e for e in json.loads((tmp_path / "a.json").read_text())}
    # mvhd says 1_700_000_000 (the camera clock): GPX second i is video time i - 5
    track = entries["nogps.mp4"]["MAPGPSTrack"]
    assert track[0][0] == 0 and track[0][2] == pytest.approx(10.0 + 5e-4)
    assert len(track) == 12  # video t = 0 .. 11 (duration 10 s, +1 s margin)
    assert entries["nogps.mp4"]["filetype"] == "video"
    assert entries["theta.mp4"]["MAPGPSTrack"][0][2] == pytest.approx(48.1)  # its own track
    # the filled video's times hang on its mvhd time: the summary says so
    assert out["video_clocks"] == {"camera": 1, "gps": 1}
    assert out["video_tracks_from"] == {"gpx": 1, "video": 1}
    rc, out = amly_json(
        "process",
        v,
        "--gpx",
        gpx,
        "--video-gpx",
        "replace",
        "--offset-time",
        "2",
        "--desc-path",
        tmp_path / "b.json",
    )
    assert rc == 0, out
    entries = {Path(e["filename"]).name: e for e in json.loads((tmp_path / "b.json").read_text())}
    # video time t is GPS time start + t + 2 (--offset-time: camera + 2 s = GPS): GPX second
    # i = t + 7, so the track starts at point 7
    assert entries["theta.mp4"]["MAPGPSTrack"][0][2] == pytest.approx(10.0 + 7e-4)


def test_process_and_upload_sends_photos_and_videos(tmp_path):
    folder = _folder(tmp_path)
    photos(folder / "photos", 4)
    with running_server(tmp_path / "srv") as srv:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "amly",
                "process-and-upload",
                str(folder),
                "--endpoint",
                srv.url,
                "--json",
            ],
            env=env_for(srv, tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert res.returncode == 1, res.stderr  # the unusable videos are reported
        out = summary(res)
        assert len(out["cluster_ids"]) == 5  # 4 videos + 1 photo sequence
        con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
        kinds = sorted(r[0] for r in con.execute("SELECT file_type FROM clusters"))
        assert kinds == ["mly_bundle_manifest"] + ["mly_camm_video"] * 4
        models = {r[0] for r in con.execute("SELECT model FROM videos")}
        assert models == {"DR900X Plus", "HERO7 Black", "HERO9 Black", "THETA Z1"}


def test_official_upload_takes_amly_process_output(tmp_path):
    from test_server_mapillary_tools import official

    v = tmp_path / "v"
    v.mkdir()
    B.build_gopro(v / "gopro9.mp4", B.straight_track(12, 10), gps9=True, gps5=False)
    B.build_blackvue(v / "dash.mp4", B.straight_track(15, 1, lat=45.0), empty_free_first=True)
    B.build_camm(v / "parked.mp4", B.straight_track(10, 5, speed=0.1))
    rc, _out = amly_json("process", v)
    assert rc == 1  # the parked video
    with running_server(tmp_path / "srv") as srv:
        p = official(srv, tmp_path, "upload", str(v))
        assert p.returncode == 0, p.stderr[-3000:]
        con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
        rows = sorted(con.execute("SELECT points, model FROM videos").fetchall())
        assert rows == [(15, "DR900X Plus"), (120, "HERO9 Black")]
