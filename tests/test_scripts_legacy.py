"""The legacy script names and argument syntax still work (thin wrappers over the verbs),
run as ``python scripts/X.py ...`` from another directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _process_helpers import REPO, add_bad_files, drive, exiftool, write_drive

from amly import synth


def script(name: str, *args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_all_scripts_have_help(tmp_path: Path) -> None:
    names = sorted(os.listdir(REPO / "scripts"))
    assert {
        "add_fix_dates.py",
        "add_mapillary_tag_from_exif.py",
        "add_project.py",
        "geotag_from_gpx.py",
        "interpolate_direction.py",
        "remove_duplicates.py",
        "sequence_split.py",
    } <= set(names)
    for name in names:
        if name.endswith(".py"):
            out = script(name, "--help", cwd=tmp_path)
            assert out.returncode == 0 and "usage:" in out.stdout, (name, out.stderr)


def test_preprocessing_chain(tmp_path: Path) -> None:
    pts = drive(30, stop_at=8, stop_photos=4, park_at=None)  # 1 photo/s: fix-dates fits
    photos = write_drive(tmp_path / "p", pts, geotag=False, clock_offset=-2)
    (tmp_path / "t.gpx").write_text(synth.gpx_text(pts))

    out = script(
        "add_fix_dates.py",
        tmp_path / "p",
        "2024-06-01 09:59:58",
        "1",
        "--timezone",
        "UTC",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert exiftool(photos[3])[0]["DateTimeOriginal"] == "2024:06:01 10:00:01"

    out = script(
        "geotag_from_gpx.py", tmp_path / "p", tmp_path / "t.gpx", "--time-offset", "2", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    tags = exiftool(*photos)
    assert all(abs(t["GPSLatitude"] - p.lat) < 1e-6 for t, p in zip(tags, pts, strict=True))

    out = script("interpolate_direction.py", tmp_path / "p", "--offset_angle", "180", cwd=tmp_path)
    assert out.returncode == 0, out.stderr

    out = script("add_mapillary_tag_from_exif.py", tmp_path / "p", "seq_1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = script("add_project.py", tmp_path / "p", "my-org", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    desc = json.loads(exiftool(photos[0])[0]["ImageDescription"])
    assert desc["MAPOrganizationKey"] == "my-org" and desc["MAPSequenceUUID"]

    add_bad_files(tmp_path / "p")
    out = script(
        "remove_duplicates.py", "-d", "0.1", tmp_path / "p", tmp_path / "dups", cwd=tmp_path
    )
    assert out.returncode == 1  # the bad files went to the error folder
    # (interpolated headings at a stop are noise: not every standing photo need be a duplicate)
    dups = set(os.listdir(tmp_path / "dups"))
    assert dups and dups <= {p.name for p in photos[9:13]}
    assert len(os.listdir(tmp_path / "p_errors")) == 4

    out = script("sequence_split.py", tmp_path / "p", "100", "60", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "p")) == ["sequence_0000"]
    assert len(os.listdir(tmp_path / "p" / "sequence_0000")) == 30 - len(dups)
