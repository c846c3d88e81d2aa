"""``amly process`` against the official ``mapillary_tools process`` (0.14.7) on the same
folders: a drive with a red-light stop and a parking gap, geotagged in EXIF or from a GPX
track with a camera clock offset. Positions, capture times, sequence partition and
duplicates must agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _process_helpers import amly, drive, write_drive

from amly import geo, synth

pytest.importorskip("mapillary_tools")

STOP = range(25, 34)  # drive(80, stop_at=25, stop_photos=8): photos 25..33 stand still


def official(*args: str | os.PathLike[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "mapillary_tools.commands", "process", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def load(path: Path) -> dict[str, dict[str, Any]]:
    return {e["filename"]: e for e in json.loads(path.read_text())}


def partition(entries: dict[str, dict[str, Any]]) -> set[frozenset[str]]:
    seqs: dict[str, set[str]] = {}
    for name, e in entries.items():
        if "error" not in e:
            seqs.setdefault(e["MAPSequenceUUID"], set()).add(name)
    return {frozenset(s) for s in seqs.values()}


def errors(entries: dict[str, dict[str, Any]], kind: str) -> set[str]:
    return {n for n, e in entries.items() if "error" in e and e["error"]["type"] == kind}


@pytest.fixture(scope="module")
def points() -> list:
    return drive(80, stop_at=25, stop_photos=8, park_at=55, park_seconds=900)


def test_exif_geotagged_drive_matches_exactly(tmp_path: Path, points: list) -> None:
    photos = write_drive(tmp_path / "drive", points)
    out = official(tmp_path / "drive", "--desc_path", tmp_path / "mt.json", home=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    res = amly("process", tmp_path / "drive", "--desc-path", tmp_path / "am.json", "-q")
    assert res.returncode == 0, res.stderr
    mt, am = load(tmp_path / "mt.json"), load(tmp_path / "am.json")
    assert mt.keys() == am.keys() == {str(p) for p in photos}
    assert partition(am) == partition(mt) and len(partition(am)) == 2  # the parking gap
    dups = errors(am, "MapillaryDuplicationError")
    assert dups == errors(mt, "MapillaryDuplicationError")
    assert {str(photos[i]) for i in STOP[1:]} == dups  # the first photo at the light is kept
    for name, e in am.items():
        if "error" in e:
            continue
        o = mt[name]
        for key in ("MAPLatitude", "MAPLongitude", "MAPCaptureTime", "MAPAltitude"):
            assert e[key] == o[key], (name, key)
        assert e["MAPCompassHeading"] == o["MAPCompassHeading"], name
        assert (
            e["MAPDeviceMake"] == o["MAPDeviceMake"] and e["MAPOrientation"] == o["MAPOrientation"]
        )


def test_gpx_with_clock_offset_matches(tmp_path: Path, points: list) -> None:
    # The camera clock is 4.3 s behind GPS; we are told 4.5 s, so photos fall 0.2 s after
    # the fixes, between two of them (as in real life), and the last one after the track.
    photos = write_drive(tmp_path / "drive", points, geotag=False, clock_offset=-4.3)
    gpx = tmp_path / "track.gpx"
    gpx.write_text(synth.gpx_text(points))
    out = official(
        tmp_path / "drive",
        "--desc_path",
        tmp_path / "mt.json",
        "--geotag_source",
        "gpx",
        "--geotag_source_path",
        gpx,
        "--interpolation_offset_time",
        "4.5",
        home=tmp_path,
    )
    assert "MapillaryOutsideGPXTrackError" in out.stderr, out.stderr[-2000:]
    res = amly(
        "process", tmp_path / "drive", "--desc-path", tmp_path / "am.json", "-q",
        "--gpx", gpx, "--offset-time", "4.5",
    )  # fmt: skip
    assert res.returncode == 1  # the photo after the track's end
    mt, am = load(tmp_path / "mt.json"), load(tmp_path / "am.json")
    assert mt.keys() == am.keys()
    kind = "MapillaryOutsideGPXTrackError"
    assert errors(am, kind) == errors(mt, kind) == {str(photos[-1])}
    assert partition(am) == partition(mt) or _same_but_stop(am, mt, photos)
    # Duplicates: only at the light, where headings between (almost) identical fixes are
    # noise: the official tool calls them 0 degrees, amly uses the direction of travel.
    dup_am = errors(am, "MapillaryDuplicationError")
    dup_mt = errors(mt, "MapillaryDuplicationError")
    stop = {str(photos[i]) for i in STOP}
    assert dup_am <= stop and dup_mt <= stop
    assert len(dup_am & dup_mt) >= len(dup_mt) - 1 and dup_mt
    for name, e in am.items():
        o = mt[name]
        if "error" in e or "error" in o:
            continue
        assert e["MAPCaptureTime"] == o["MAPCaptureTime"], name
        assert abs(e["MAPLatitude"] - o["MAPLatitude"]) < 2e-7, name
        assert abs(e["MAPLongitude"] - o["MAPLongitude"]) < 2e-7, name
        assert abs(e["MAPAltitude"] - o["MAPAltitude"]) < 0.01, name
        if name not in stop:
            h1 = e["MAPCompassHeading"]["TrueHeading"]
            h2 = o["MAPCompassHeading"]["TrueHeading"]
            assert geo.angle_diff(h1, h2) < 0.01, name


def _same_but_stop(am: dict, mt: dict, photos: list[Path]) -> bool:
    """Partitions equal once the stop photos that only one tool kept are left out."""
    stop = {str(photos[i]) for i in STOP}
    strip = lambda p: {frozenset(s - stop) for s in p}  # noqa: E731
    return strip(partition(am)) == strip(partition(mt))
