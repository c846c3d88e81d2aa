"""``amly server`` takes ``mly_camm_video`` clusters: the official uploader's video uploads
land as one cluster and sequence each, with the file and its track; anything that is not a
CAMM video with GPS is refused with a clear message and creates nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_server_mapillary_tools import official
from test_server_upload import Client

from amly.server.testing import RunningServer, running_server
from amly.video import _build as B
from amly.video import read_video_sync, write_camm

pytest.importorskip("mapillary_tools")


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "srv") as s:
        yield s


def _db(srv: RunningServer) -> sqlite3.Connection:
    con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    con.row_factory = sqlite3.Row
    return con


def _upload(c: Client, data: bytes) -> str:
    key = f"mly_tools_{hashlib.md5(data).hexdigest()}.mp4"
    status, body, _ = c.post(key, 0, data)
    assert status == 200, body
    return str(body["h"])


def test_official_uploader_sends_videos_we_store(srv: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    B.build_gopro(folder / "gopro.mp4", B.straight_track(12, 10), gps9=True, gps5=False)
    B.build_camm(
        folder / "theta.mp4", B.straight_track(10, 5, lat=48.1), make="RICOH", model="THETA Z1"
    )
    B.build_blackvue(folder / "dash.mp4", B.straight_track(15, 1, lat=45.0))
    p = official(srv, tmp_path, "process_and_upload", str(folder))
    assert p.returncode == 0, p.stderr[-3000:]
    con = _db(srv)
    rows = con.execute(
        "SELECT v.*, c.file_type, s.cluster_id AS sc FROM videos v JOIN clusters c ON c.id = "
        "v.cluster_id JOIN sequences s ON s.id = v.sequence_id ORDER BY v.points"
    ).fetchall()
    assert [r["file_type"] for r in rows] == ["mly_camm_video"] * 3
    assert all(r["sc"] == r["cluster_id"] for r in rows)
    assert [r["points"] for r in rows] == [15, 50, 120]
    assert [(r["make"], r["model"]) for r in rows] == [
        ("BlackVue", None),  # the official tool misses this cprt (it reads on from 'gps ')
        ("RICOH", "THETA Z1"),
        ("GoPro", "HERO9 Black"),
    ]
    for r in rows:
        stored = srv.store_dir / r["path"]
        assert hashlib.md5(stored.read_bytes()).hexdigest() == r["md5"]
        # what is stored reads back as a CAMM video with the same track
        back = read_video_sync(stored)
        assert back.filetype == "camm" and len(back.points) == r["points"]
        track = json.loads(r["track"])
        assert track[0][1:3] == [back.points[0].lon, back.points[0].lat]
    assert rows[2]["started_at"] == 1_700_000_000_000


def test_amly_rebuild_is_accepted_and_finishing_twice_is_one_cluster(
    srv: RunningServer, tmp_path: Path
) -> None:
    src = tmp_path / "g.mp4"
    B.build_gopro(src, B.straight_track(8, 10))
    v = read_video_sync(src)
    out = tmp_path / "camm.mp4"
    write_camm(src, out, v.points, v.make, v.model)
    c = Client(srv)
    handle = _upload(c, out.read_bytes())
    s1, b1, _ = c.finish(handle, "mly_camm_video")
    s2, b2, _ = c.finish(handle, "mly_camm_video")
    assert s1 == s2 == 200 and b1 == b2
    con = _db(srv)
    assert con.execute("SELECT COUNT(*) FROM clusters").fetchone()[0] == 1
    assert con.execute("SELECT COUNT(*) FROM sequences").fetchone()[0] == 1
    row = con.execute("SELECT * FROM videos").fetchone()
    assert row["points"] == 80 and row["model"] == "HERO9 Black"


@pytest.mark.parametrize("what", ["gopro", "no-gps", "not-mp4", "camm-no-gps"])
def test_videos_that_are_not_camm_with_gps_are_refused(
    srv: RunningServer, tmp_path: Path, what: str
) -> None:
    path = tmp_path / "v.mp4"
    if what == "gopro":  # telemetry, but not CAMM: the client must rebuild it first
        B.build_gopro(path, B.straight_track(5, 10))
    elif what == "no-gps":
        B.build_gopro(path, [], payloads=[b""] * 3, base=B.Base(seconds=3))
    elif what == "camm-no-gps":
        B.build_camm(path, [B.TrackPoint(0.0, 0.0, 0.0)])
        data = bytearray(path.read_bytes())
        at = data.rfind(b"\x00\x00\x06\x00")  # type 6 -> type 1 (exposure): no position
        data[at + 2] = 1
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(b"not a video at all" * 100)
    c = Client(srv)
    status, body, _ = c.finish(_upload(c, path.read_bytes()), "mly_camm_video")
    assert status == 400
    msg = body["error"]["message"]
    assert "CAMM" in msg or "MP4" in msg or "video" in msg
    con = _db(srv)
    assert con.execute("SELECT COUNT(*) FROM clusters").fetchone()[0] == 0
    assert con.execute("SELECT COUNT(*) FROM videos").fetchone()[0] == 0
    assert not list((srv.store_dir / "videos").iterdir())


def test_official_upload_accepts_amlys_video_description(
    srv: RunningServer, tmp_path: Path
) -> None:
    """amly's entries for three kinds of video, given to ``mapillary_tools upload``."""
    from amly.description import write_file
    from amly.video._describe import check_video, video_entry

    folder = tmp_path / "videos"
    folder.mkdir()
    B.build_gopro(folder / "gopro.mp4", B.straight_track(12, 10), gps9=True, gps5=False)
    B.build_camm(
        folder / "theta.mp4", B.straight_track(10, 5, lat=48.1), make="RICOH", model="THETA Z1"
    )
    B.build_blackvue(folder / "dash.mp4", B.straight_track(15, 1, lat=45.0), empty_free_first=True)
    entries = []
    for p in sorted(folder.iterdir()):
        track = read_video_sync(p)
        assert check_video(track) is None
        entries.append(video_entry(track))
    desc = tmp_path / "desc.json"
    write_file(desc, entries)
    p = official(srv, tmp_path, "upload", str(folder), "--desc_path", str(desc))
    assert p.returncode == 0, p.stderr[-3000:]
    con = _db(srv)
    rows = con.execute("SELECT points, make, model FROM videos ORDER BY points").fetchall()
    # the BlackVue behind an empty free box: amly found it, so it is uploaded, model and all
    assert [tuple(r) for r in rows] == [
        (15, "BlackVue", "DR900X Plus"),
        (50, "RICOH", "THETA Z1"),
        (120, "GoPro", "HERO9 Black"),
    ]


def test_video_bytes_must_match_the_md5_in_the_session_key(
    srv: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.mp4"
    B.build_camm(path, B.straight_track(5, 5))
    data = path.read_bytes()
    c = Client(srv)
    key = f"mly_tools_{hashlib.md5(b'other bytes').hexdigest()}.mp4"
    status, body, _ = c.post(key, 0, data)
    assert status == 400 and "md5" in json.dumps(body)
    assert c.offset(key) == 0  # nothing kept under a key that lies
