"""A video's description entry and checks, against ``mapillary_tools process`` on the same
videos; GPX tracks replacing a video's own."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from _process_helpers import official_process_videos

from amly.types import Point
from amly.video import _build as B
from amly.video import read_video_sync
from amly.video._describe import check_video, gpx_track, video_entry, video_start

pytest.importorskip("mapillary_tools")


def test_entries_match_the_official_process(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    B.build_gopro(folder / "gopro9.mp4", B.straight_track(12, 10), gps9=True, gps5=False)
    B.build_camm(
        folder / "theta.mp4", B.straight_track(10, 5, lat=48.1), make="RICOH", model="THETA Z1"
    )
    B.build_blackvue(folder / "dash.mp4", B.straight_track(15, 1, lat=45.0))
    B.build_gopro(folder / "parked.mp4", B.straight_track(12, 10, speed=0.2), model="HERO8 Black")
    B.build_camm(
        folder / "null.mp4",
        [
            p if i else B.TrackPoint(0.0, 0.0, 0.0, 0.0, p.epoch)
            for i, p in enumerate(B.straight_track(10, 5))
        ],
    )
    B.build_camm(folder / "jet.mp4", B.straight_track(10, 5, speed=200.0))
    theirs = official_process_videos(folder, tmp_path / "off.json")
    for p in sorted(folder.iterdir()):
        track = read_video_sync(p)
        err = check_video(track)
        ref = theirs[p.name]
        if "error" in ref:
            assert err is not None and err.kind == ref["error"]["type"], (p.name, ref["error"])
            continue
        assert err is None, p.name
        mine = video_entry(track)
        # the one difference: amly finds BlackVue's cprt model where the official tool does not
        assert set(mine) - {"MAPDeviceModel"} == set(ref) - {"MAPDeviceModel"}
        assert mine["filetype"] == ref["filetype"] and mine["filesize"] == ref["filesize"]
        assert (mine.get("MAPDeviceMake"), mine.get("MAPDeviceModel")) == (
            ref.get("MAPDeviceMake"),
            ref.get("MAPDeviceModel"),
        ) or p.name == "dash.mp4"
        assert len(mine["MAPGPSTrack"]) == len(ref["MAPGPSTrack"])
        for a, b in (
            (mine["MAPGPSTrack"][0], ref["MAPGPSTrack"][0]),
            (mine["MAPGPSTrack"][-1], ref["MAPGPSTrack"][-1]),
        ):
            assert a[:5] == pytest.approx(b[:5], abs=1e-6)
            assert a[5] == pytest.approx(b[5], abs=1e-3)
    kinds = {n: e["error"]["type"] for n, e in theirs.items() if "error" in e}
    assert kinds == {
        "parked.mp4": "MapillaryStationaryVideoError",
        "null.mp4": "MapillaryNullIslandError",
        "jet.mp4": "MapillaryCaptureSpeedTooFastError",
    }


def test_gpx_replaces_a_video_track_on_its_gps_clock(tmp_path):
    path = tmp_path / "g.mp4"
    B.build_gopro(path, B.straight_track(20, 10), gps9=True, gps5=False)
    track = read_video_sync(path)
    start, clock = video_start(track)
    assert clock == "gps" and start == pytest.approx(1_700_000_000.0)
    gpx = [
        Point(datetime.fromtimestamp(1_700_000_000 - 5 + i, timezone.utc), 10.0 + i * 1e-4, 20.0)
        for i in range(40)
    ]
    new, clock = gpx_track(track, gpx, offset=2.0)
    assert clock == "gps"
    # GPX second i is video time i - 5 + 2: points from video t = 0 .. duration + 1 are kept
    assert new.points[0].time == pytest.approx(0.0, abs=1e-6)
    assert new.points[0].lat == pytest.approx(10.0 + 3e-4)
    assert [round(p.time, 6) for p in new.points] == [float(i) for i in range(len(new.points))]
    assert len(new.points) == int(track.duration + 1) + 1
    assert (new.make, new.model, new.filetype) == ("GoPro", "HERO9 Black", "gopro")
