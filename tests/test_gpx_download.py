"""``amly download gpx`` and ``amly join-gpx`` against the seeded server, read back with gpxpy;
the legacy scripts; a sequence longer than one search page."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import gpxpy
import pytest
from download_support import ROOT, SUB, amly, bbox_arg, env, seeded_server, summary, truth

from amly.config import Secret
from amly.net import Transport
from amly.server.seed import seed_store
from amly.server.store import Store
from amly.services.mapillary.download import sequence_track


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from seeded_server(tmp_path_factory.mktemp("gpx"))


def _db(srv: Any) -> sqlite3.Connection:
    return sqlite3.connect(srv.store_dir / "amly-server.sqlite3")


def _sequence_rows(srv: Any, seq: str) -> list[tuple[int, float, float, float | None]]:
    db = _db(srv)
    try:
        return db.execute(
            "SELECT captured_at, lat, lon, altitude FROM images WHERE sequence_id = ?"
            " ORDER BY captured_at",
            (seq,),
        ).fetchall()
    finally:
        db.close()


def _read(path: Path) -> Any:
    with open(path) as f:
        return gpxpy.parse(f)


def test_one_gpx_per_sequence_time_ordered(srv: Any, tmp_path: Path) -> None:
    seqs = set(truth(srv, SUB).values())
    out = tmp_path / "gpx"
    r = amly(srv, tmp_path, "download", "gpx", "--bbox", bbox_arg(SUB), "--out", str(out),
             "--json", check=True)  # fmt: skip
    assert summary(r)["counts"]["tracks"] == len(seqs)
    assert {p.stem for p in out.glob("*.gpx")} == seqs
    for seq in seqs:
        doc = _read(out / f"{seq}.gpx")
        assert len(doc.tracks) == 1
        pts = [p for s in doc.tracks[0].segments for p in s.points]
        rows = _sequence_rows(srv, seq)
        assert len(pts) == len(rows)  # the whole sequence, not only the part in the box
        times = [p.time for p in pts]
        assert times == sorted(times)
        assert all(p.elevation is not None for p in pts)
        assert (
            abs(pts[0].latitude - rows[0][1]) < 1e-7 and abs(pts[0].longitude - rows[0][2]) < 1e-7
        )
        assert int(times[0].timestamp() * 1000) == rows[0][0]


def test_user_filter_and_max_results(srv: Any, tmp_path: Path) -> None:
    db = _db(srv)
    try:
        w, s, e, n = SUB
        by_user: dict[str, set[str]] = {}
        for name, seq in db.execute(
            "SELECT u.username, i.sequence_id FROM images i JOIN users u ON u.id = i.user_id"
            " WHERE lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?",
            (w, e, s, n),
        ):
            by_user.setdefault(name, set()).add(seq)
    finally:
        db.close()
    user, seqs = max(by_user.items(), key=lambda kv: len(kv[1]))
    out = tmp_path / "user"
    amly(srv, tmp_path, "download", "gpx", "--bbox", bbox_arg(SUB), "--user", user,
         "--out", str(out), check=True)  # fmt: skip
    assert {p.stem for p in out.glob("*.gpx")} == seqs
    out2 = tmp_path / "max"
    amly(srv, tmp_path, "download", "gpx", "--bbox", bbox_arg(SUB), "--max-results", "2",
         "--out", str(out2), check=True)  # fmt: skip
    assert len(list(out2.glob("*.gpx"))) == 2


def test_join_gpx_and_legacy_scripts(srv: Any, tmp_path: Path) -> None:
    w, s, e, n = SUB
    gdir = tmp_path / "legacy_gpx"
    legacy_env = env(tmp_path, MAPILLARY_GRAPH_API_ENDPOINT=srv.url,
                     MAPILLARY_TILES_ENDPOINT=srv.url + "/tiles",
                     MAPILLARY_ACCESS_TOKEN=srv.token)  # fmt: skip
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "download_gpx_from_sequences.py"),
         repr(s), repr(n), repr(w), repr(e), "3", f"--out={gdir}"],
        capture_output=True, text=True, env=legacy_env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    inputs = sorted(gdir.glob("*.gpx"))
    assert len(inputs) == 3
    joined = tmp_path / "joined.gpx"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "join_gpx_mapillary_files.py"),
         str(gdir), str(joined)],
        capture_output=True, text=True, env=legacy_env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = _read(joined)
    assert sorted(t.name for t in doc.tracks) == sorted(p.stem for p in inputs)
    n_points = sum(len(s.points) for p in inputs for t in _read(p).tracks for s in t.segments)
    assert sum(len(s.points) for t in doc.tracks for s in t.segments) == n_points
    # The verb itself, and its refusal of an empty folder.
    r = amly_join(tmp_path, str(gdir), str(tmp_path / "j2.gpx"))
    assert r.returncode == 0 and len(_read(tmp_path / "j2.gpx").tracks) == 3
    (tmp_path / "empty").mkdir()
    assert amly_join(tmp_path, str(tmp_path / "empty"), str(tmp_path / "j3.gpx")).returncode == 2


def amly_join(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amly", "join-gpx", *args],
        capture_output=True, text=True, env=env(home), timeout=60,
    )  # fmt: skip


def test_sequence_longer_than_a_search_page(srv: Any) -> None:
    from amly.server.auth import STORE_KEY

    store: Store = srv.app[STORE_KEY]
    srv.call(lambda: seed_store(store, 2300, (13.45, 52.55, 13.46, 52.56), sequences=1, seed=9))
    db = _db(srv)
    try:
        (seq,) = db.execute(
            "SELECT sequence_id FROM images WHERE lon BETWEEN 13.45 AND 13.46 LIMIT 1"
        ).fetchone()
    finally:
        db.close()

    async def run() -> Any:
        async with Transport(srv.endpoints, Secret(srv.token)) as t:
            return await sequence_track(t, seq)

    pts = asyncio.run(run())
    rows = _sequence_rows(srv, seq)
    assert len(pts) == len(rows) == 2300
    assert [int(p.time.timestamp() * 1000) for p in pts] == [r[0] for r in rows]
