"""``amly sample-video`` run as a user runs it; frames read back by exiftool and accepted by
the official ``mapillary_tools process``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _process_helpers import amly, amly_json, exiftool

from amly.video import _build as B
from amly.video._sample import locate

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return Path(B.encode_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 4, 10, 64, 32))


def _videos(folder: Path, clip: Path) -> dict[str, Path]:
    folder.mkdir()
    pts = B.straight_track(4, 10, speed=10.0)
    v = {
        "camm": folder / "theta.mp4",
        "gopro": folder / "gopro.mp4",
        "blackvue": folder / "dash.mp4",
        "nogps": folder / "plain.mp4",
        "max": folder / "GS010001.360",
    }
    B.build_camm(
        v["camm"], pts, base=B.Base(path=str(clip), spherical=True), make="RICOH", model="THETA X"
    )
    B.build_gopro(
        v["gopro"], pts, base=B.Base(path=str(clip)), gps9=True, gps5=False, model="HERO12 Black"
    )
    B.build_blackvue(
        v["blackvue"], B.straight_track(4, 1), base=B.Base(path=str(clip)), empty_free_first=True
    )
    v["nogps"].write_bytes(clip.read_bytes())
    B.build_gopro(v["max"], pts, base=B.Base(path=str(clip)), model="GoPro Max")
    return v


def test_sample_video_folder(tmp_path, clip):
    _videos(tmp_path / "in", clip)
    rc, out = amly_json("sample-video", tmp_path / "in", tmp_path / "out", "--interval", "1")
    assert rc == 1  # two of five videos cannot be sampled; the others are
    assert out["counts"]["videos"] == 3 and out["counts"]["failed"] == 2
    fails = {Path(f["file"]).name: f for f in out["failures"]}
    assert "equirectangular" in fails["GS010001.360"]["hint"]
    assert fails["plain.mp4"]["type"] == "MapillaryVideoGPSNotFoundError"
    assert "--gpx" in fails["plain.mp4"]["hint"]
    assert set(out["capture_clock"].values()) == {"gps"}

    frames = sorted((tmp_path / "out" / "theta.mp4").glob("*.jpg"))
    assert [f.name for f in frames] == [f"theta_{i:06d}.jpg" for i in range(4)]
    tags = exiftool(*frames)
    track = B.straight_track(4, 10, speed=10.0)
    for i, t in enumerate(tags):
        want = locate(track, float(i))
        assert want is not None
        assert t["GPSLatitude"] == pytest.approx(want.lat, abs=1e-6)
        assert t["GPSLongitude"] == pytest.approx(want.lon, abs=1e-6)
        assert t["GPSAltitude"] == pytest.approx(want.alt, abs=0.01)
        assert t["GPSImgDirection"] == pytest.approx(45.0, abs=0.5)
        assert (t["Make"], t["Model"]) == ("RICOH", "THETA X")
        assert t["ProjectionType"] == "equirectangular"
        assert t["UsePanoramaViewer"] in (True, "True")
        assert t["FullPanoWidthPixels"] == 64 and t["FullPanoHeightPixels"] == 32
        # capture time = GPS time at the frame: 1_700_000_000 + i seconds (22:13:20 UTC)
        assert t["DateTimeOriginal"] == f"2023:11:14 22:13:{20 + i:02d}"
        assert t["GPSDateStamp"] == "2023:11:14"
    gopro = exiftool(*sorted((tmp_path / "out" / "gopro.mp4").glob("*.jpg")))
    assert len(gopro) == 4 and {g["Model"] for g in gopro} == {"HERO12 Black"}
    assert all("ProjectionType" not in g for g in gopro)  # not a 360 video
    dash = exiftool(*sorted((tmp_path / "out" / "dash.mp4").glob("*.jpg")))
    assert len(dash) == 4 and dash[0]["Make"] == "BlackVue"


def test_sample_by_distance_and_official_process_accepts_the_frames(tmp_path, clip):
    v = _videos(tmp_path / "in", clip)
    res = amly("sample-video", v["gopro"], tmp_path / "out", "--distance", "4.9", "-q")
    assert res.returncode == 0, res.stderr
    frames = sorted((tmp_path / "out" / "gopro.mp4").glob("*.jpg"))
    # 39 m of track at 10 m/s, frames every 0.1 s (1 m): a frame each 5 m -> t = 0, 0.5, ... 3.5
    assert len(frames) == 8
    desc = tmp_path / "desc.json"
    off = subprocess.run(
        [
            sys.executable,
            "-m",
            "mapillary_tools.commands",
            "process",
            tmp_path / "out",
            "--desc_path",
            desc,
            "--skip_process_errors",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert off.returncode == 0, off.stderr
    entries = json.loads(desc.read_text())
    ok = [e for e in entries if "error" not in e]
    # the official duplicate filter keeps frames >= its default 0.1 m apart: all of them
    assert len(ok) == 8, entries
    assert {e["MAPDeviceModel"] for e in ok} == {"HERO12 Black"}


def test_bad_arguments(tmp_path, clip):
    res = amly("sample-video", tmp_path / "missing", tmp_path / "out")
    assert res.returncode == 2 and "no such file" in res.stderr
    res = amly("sample-video", clip, tmp_path / "out", "--interval", "1", "--distance", "2")
    assert res.returncode == 2
    res = amly("sample-video", clip, tmp_path / "out", "--interval", "-1")
    assert res.returncode == 2 and "positive" in res.stderr
    assert "Traceback" not in res.stderr


def test_video_process_samples_then_processes(tmp_path, clip):
    v = _videos(tmp_path / "in", clip)
    rc, out = amly_json("video-process", v["gopro"], tmp_path / "out", "--interval", "1")
    assert rc == 0, out
    assert out["verb"] == "process" and out["counts"]["ready"] == 4
    entries = json.loads((tmp_path / "out" / "mapillary_image_description.json").read_text())
    assert len(entries) == 4 and {e["MAPDeviceModel"] for e in entries} == {"HERO12 Black"}
    assert len({e["MAPSequenceUUID"] for e in entries}) == 1
    times = sorted(e["MAPCaptureTime"] for e in entries)
    assert times[0] == "2023_11_14_22_13_20_000" and times[-1] == "2023_11_14_22_13_23_000"
