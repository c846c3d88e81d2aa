"""``amly server seed``: synthetic imagery for download tests at scale."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from amly.geo import distance
from amly.server.seed import seed_store
from amly.server.store import Store

BBOX = "13.35,52.49,13.45,52.55"
DENSE = (13.40, 52.50, 13.405, 52.505)


def amly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amly", "server", "seed", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def db(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(path / "amly-server.sqlite3")
    c.row_factory = sqlite3.Row
    return c


def test_cli_seeds_10k_with_a_dense_cell(tmp_path: Path) -> None:
    p = amly("--data", str(tmp_path), "--images", "10000", "--bbox", BBOX, "--dense-cell",
             ",".join(map(str, DENSE)), "--users", "4", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["images"] == 12500 and summary["dense_images"] == 2500
    print("seed 10k+2.5k dense:", summary["seconds"], "s")
    c = db(tmp_path)
    assert c.execute("SELECT count(*) FROM images").fetchone()[0] == 12500
    assert c.execute("SELECT count(*) FROM images_rtree").fetchone()[0] == 12500
    assert c.execute("SELECT count(*) FROM images_computed").fetchone()[0] == 12500
    assert c.execute("SELECT count(*) FROM sequences").fetchone()[0] == summary["sequences"]
    w, s, e, n = map(float, BBOX.split(","))
    out = c.execute(
        "SELECT count(*) FROM images WHERE lon < ? OR lon > ? OR lat < ? OR lat > ?", (w, e, s, n)
    ).fetchone()[0]
    assert out == 0
    dense = c.execute(
        "SELECT count(*) FROM images WHERE lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?",
        (DENSE[0], DENSE[2], DENSE[1], DENSE[3]),
    ).fetchone()[0]
    assert dense >= 2500  # denser than one search may return
    users = {r[0] for r in c.execute("SELECT DISTINCT u.username FROM images i JOIN users u"
                                     " ON u.id = i.user_id")}  # fmt: skip
    assert users == set(summary["users"]) and len(users) == 4
    pano, orgs = c.execute(
        "SELECT sum(is_pano), count(DISTINCT organization_id) FROM images"
    ).fetchone()
    assert 0 < pano < 12500 and orgs >= 1
    assert c.execute("SELECT count(*) FROM images WHERE path IS NOT NULL").fetchone()[0] == 0
    # Plausible drives: steps of ~15 m (4 m in the dense cell), times increasing by ~2 s.
    seq = c.execute("SELECT id FROM sequences LIMIT 1").fetchone()[0]
    rows = c.execute(
        "SELECT lat, lon, captured_at FROM images WHERE sequence_id = ? ORDER BY seq_index",
        (seq,),
    ).fetchall()
    assert len(rows) > 10
    for a, b in zip(rows, rows[1:], strict=False):
        assert distance(a[0], a[1], b[0], b[1]) <= 15.01
        assert 1800 <= b[2] - a[2] <= 2200
    c.close()
    again = amly("--data", str(tmp_path), "--images", "10000", "--bbox", BBOX, "--dense-cell",
                 ",".join(map(str, DENSE)))  # fmt: skip
    assert again.returncode == 2 and "seed 0 before" in again.stderr
    other = amly("--data", str(tmp_path), "--images", "10", "--bbox", BBOX, "--seed", "9")
    assert other.returncode == 0, other.stderr


def test_deterministic(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        store = Store(tmp_path / name)
        seed_store(store, 500, (0.0, 0.0, 0.01, 0.01), seed=42)
        ids.append(
            store.db.execute("SELECT id, lon, lat, captured_at FROM images ORDER BY id").fetchall()
        )
        store.close()
    assert [tuple(r) for r in ids[0]] == [tuple(r) for r in ids[1]]
    store = Store(tmp_path / "c")
    seed_store(store, 500, (0.0, 0.0, 0.01, 0.01), seed=43)
    other = {r[0] for r in store.db.execute("SELECT id FROM images")}
    store.close()
    assert not other & {r[0] for r in ids[0]}


@pytest.mark.parametrize(
    "args",
    [
        ["--bbox", "1,2,3"],
        ["--bbox", "13.45,52.49,13.35,52.55"],
        ["--bbox", BBOX, "--images", "10", "--sequences", "11"],
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    p = amly("--data", str(tmp_path), *args)
    assert p.returncode == 2 and p.stderr
