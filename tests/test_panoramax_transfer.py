"""``amly transfer``: a seeded ``amly server`` (Mapillary's protocol) into a real geovisio; every
image lands once, in one set per Mapillary sequence, with its metadata; a rerun sends nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from panoramax_support import PanoramaxServer
from test_panoramax_upload import items_of

from amly.server.seed import seed_store
from amly.server.store import Store
from amly.server.testing import running_server

BOX = (13.40, 52.50, 13.41, 52.51)


@pytest.mark.slow
def test_transfer_box_once_with_metadata(panoramax: PanoramaxServer, tmp_path: Path) -> None:
    data = tmp_path / "mly"
    store = Store(data)
    try:
        seed_store(store, 24, BOX, sequences=2, seed=3, organizations=0)
    finally:
        store.close()
    db = sqlite3.connect(data / "amly-server.sqlite3")
    truth = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT id, sequence_id, lon, lat, captured_at, compass_angle FROM images"
        )
    }
    creator = dict(
        db.execute(
            "SELECT i.sequence_id, u.username FROM images i JOIN users u ON u.id = i.user_id"
        ).fetchall()
    )
    db.close()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAPILLARY_", "PANORAMAX_"))}
    env.update(AMLY_HOME=str(home), PANORAMAX_TOKEN=panoramax.token)
    with running_server(data) as srv:
        cmd = [sys.executable, "-m", "amly", "transfer", "--bbox=" + ",".join(map(str, BOX)),
               "--to", "panoramax", "--api-url", panoramax.url, "--endpoint", srv.url,
               "--token", srv.token, "--wait", "--json", "--no-progress"]  # fmt: skip
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr
        s1 = json.loads(first.stdout)
        assert s1["counts"]["downloaded"] == 24
        assert s1["counts"]["ready_sets"] == 2
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        s2 = json.loads(again.stdout)
        assert s2["counts"]["bytes_sent"] == 0
        assert sorted(s2["upload_set_ids"]) == sorted(s1["upload_set_ids"])
        # one sequence by its id: already there, same set, nothing sent
        one = s1["sequences"][0]
        seq_id = panoramax.get(f"/api/upload_sets/{one['upload_set_id']}")["metadata"][  # type: ignore[index]
            "mapillary_sequence"
        ]
        by_id = subprocess.run(
            [*cmd[:4], "--sequence", seq_id, *cmd[5:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert by_id.returncode == 0, by_id.stderr
        s3 = json.loads(by_id.stdout)
        assert s3["counts"]["bytes_sent"] == 0
        assert s3["upload_set_ids"] == [one["upload_set_id"]]
    seqs = {v[0] for v in truth.values()}
    landed = {}
    for entry in s1["sequences"]:
        (coll,) = entry["collections"]
        feats = items_of(panoramax, coll)
        names = {f["properties"]["original_file:name"].removesuffix(".jpg") for f in feats}
        # one Panoramax collection per Mapillary sequence, holding exactly its images
        (seq,) = {truth[n][0] for n in names}
        assert names == {k for k, v in truth.items() if v[0] == seq}
        landed[seq] = feats
        # the set names its origin: the Mapillary sequence and its creator
        us = panoramax.get(f"/api/upload_sets/{entry['upload_set_id']}")
        assert isinstance(us, dict)
        assert us["metadata"]["mapillary_sequence"] == seq
        assert us["metadata"]["mapillary_creator"] == creator[seq]
    assert set(landed) == seqs
    for feats in landed.values():
        for f in feats:
            _seq, lon, lat, t_ms, compass = truth[f["properties"]["original_file:name"][:-4]]
            glon, glat = f["geometry"]["coordinates"]
            assert abs(glon - lon) < 1e-6 and abs(glat - lat) < 1e-6
            when = datetime.fromisoformat(f["properties"]["datetime"])
            assert (
                abs(when - datetime.fromtimestamp(t_ms / 1000, timezone.utc)).total_seconds() < 0.01
            )
            # geovisio keeps whole degrees and takes 0 for "no heading" (many cameras write 0):
            # it recomputes those from the path, so only the others must be the sequence's
            if round(compass) % 360 != 0:
                assert abs((f["properties"]["view:azimuth"] - compass + 180) % 360 - 180) <= 1
    found = panoramax.get("/api/search?limit=100")
    assert isinstance(found, dict) and len(found["features"]) == 24


@pytest.mark.slow
def test_transfer_streams_a_bounded_number_of_sequences(
    panoramax: PanoramaxServer, tmp_path: Path
) -> None:
    """Several sequences: never more than two sequences' photos on disk at once (one
    downloading, one uploading), and none left behind without --keep."""
    data = tmp_path / "mly"
    store = Store(data)
    try:
        seed_store(store, 30, BOX, sequences=5, seed=5, organizations=0)
    finally:
        store.close()
    db = sqlite3.connect(data / "amly-server.sqlite3")
    sizes = sorted(n for (n,) in db.execute("SELECT count(*) FROM images GROUP BY sequence_id"))
    db.close()
    assert len(sizes) == 5
    bound = sizes[-1] + sizes[-2]
    assert bound < 30  # the bound says something: less than the whole box
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAPILLARY_", "PANORAMAX_"))}
    env.update(AMLY_HOME=str(home), PANORAMAX_TOKEN=panoramax.token)
    peak, samples, stop = [0], [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            n = sum(1 for _d, _s, files in os.walk(home) for f in files if f.endswith(".jpg"))
            peak[0], samples[0] = max(peak[0], n), samples[0] + 1
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    with running_server(data) as srv:
        cmd = [sys.executable, "-m", "amly", "transfer", "--bbox=" + ",".join(map(str, BOX)),
               "--to", "panoramax", "--api-url", panoramax.url, "--endpoint", srv.url,
               "--token", srv.token, "--json", "--no-progress"]  # fmt: skip
        sampler.start()
        try:
            run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        finally:
            stop.set()
            sampler.join()
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["counts"]["downloaded"] == 30
    assert len(out["upload_set_ids"]) == 5
    assert samples[0] > 10 and 0 < peak[0] <= bound, (peak, samples, sizes)
    left = [p for p in home.rglob("*.jpg")]
    assert left == []


@pytest.mark.slow
def test_transfer_keep_holds_every_sequence(panoramax: PanoramaxServer, tmp_path: Path) -> None:
    """--keep: every photo stays, and index.geojson lists every sequence's images."""
    data = tmp_path / "mly"
    store = Store(data)
    try:
        seed_store(store, 12, BOX, sequences=3, seed=7, organizations=0)
    finally:
        store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAPILLARY_", "PANORAMAX_"))}
    env.update(AMLY_HOME=str(tmp_path / "home"), PANORAMAX_TOKEN=panoramax.token)
    keep = tmp_path / "kept"
    with running_server(data) as srv:
        cmd = [sys.executable, "-m", "amly", "transfer", "--bbox=" + ",".join(map(str, BOX)),
               "--to", "panoramax", "--api-url", panoramax.url, "--endpoint", srv.url,
               "--token", srv.token, "--keep", str(keep), "--json", "--no-progress"]  # fmt: skip
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)["upload_set_ids"]) == 3
    photos = sorted(p.relative_to(keep).as_posix() for p in keep.rglob("*.jpg"))
    assert len(photos) == 12
    index = json.loads((keep / "index.geojson").read_text())
    assert sorted(f["properties"]["path"] for f in index["features"]) == photos
