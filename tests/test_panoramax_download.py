"""``amly download images --from panoramax`` against a real geovisio: every picture of the box,
geotagged (read back by exiftool), indexed, and a rerun fetches nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _upload_helpers import tree
from panoramax_support import PanoramaxServer
from test_panoramax_upload import out, run_amly, upload_cmd

from amly.metadata import read_image


@pytest.mark.slow
def test_download_box_geotagged_indexed_resumable(
    panoramax: PanoramaxServer, tmp_path: Path
) -> None:
    local = tree(tmp_path / "t", {"a": 5, "b": 4})
    home = tmp_path / "home"
    up = run_amly(home, *upload_cmd(tmp_path / "t", panoramax, "--wait"), token=panoramax.token)
    assert up.returncode == 0, up.stderr
    originals = {}
    for paths in local.values():
        for p in paths:
            m = read_image(p)
            assert m.capture_time is not None
            originals[m.capture_time.isoformat()] = m

    dest = tmp_path / "dl"
    cmd = ["download", "images", "--from", "panoramax", "--api-url", panoramax.url,
           "--bbox=-180,-85,180,85", "--out", str(dest), "--json", "--no-progress",
           "--concurrency", "4"]  # fmt: skip
    first = run_amly(home, *cmd)
    assert first.returncode == 0, first.stderr
    s1 = out(first)
    assert s1["counts"]["downloaded"] == 9
    files = sorted(dest.glob("*/*.jpg"))
    assert len(files) == 9
    # two collections, one per uploaded sequence
    assert len({f.parent.name for f in files}) == 2
    exif = json.loads(
        subprocess.run(
            [
                "exiftool",
                "-j",
                "-n",
                "-GPSLatitude",
                "-GPSLongitude",
                "-GPSImgDirection",
                "-DateTimeOriginal",
                *map(str, files),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    matched = 0
    for f, e in zip(files, exif, strict=True):
        got = read_image(f)
        assert got.capture_time is not None
        orig = originals[got.capture_time.isoformat()]
        assert abs(e["GPSLatitude"] - orig.lat) < 1e-5 and abs(e["GPSLongitude"] - orig.lon) < 1e-5
        assert orig.heading is not None and abs(e["GPSImgDirection"] - orig.heading) <= 1
        matched += 1
    assert matched == 9
    index = json.loads((dest / "index.geojson").read_text())
    assert len(index["features"]) == 9
    assert {ft["properties"]["path"] for ft in index["features"]} == {
        f"{f.parent.name}/{f.name}" for f in files
    }

    again = run_amly(home, *cmd)
    assert again.returncode == 0, again.stderr
    s2 = out(again)
    assert s2["counts"]["downloaded"] == 0 and s2["counts"]["reused"] == 9
