"""Shared by the download tests: a seeded server, the CLI as a user runs it, ground truth
straight from the server's SQLite store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amly.server.seed import seed_store
from amly.server.store import Store
from amly.server.testing import RunningServer, running_server

ROOT = Path(__file__).resolve().parent.parent
#: 10,000 images over this box, plus DENSE_N inside DENSE (more than one search may return).
BOX = (13.40, 52.50, 13.42, 52.52)
DENSE = (13.405, 52.505, 13.4055, 52.5055)
DENSE_N = 2500
#: A sub-box cutting through the dense cell: a few hundred images, edges through dense areas.
SUB = (13.4032, 52.5031, 13.40521, 52.50517)


def seeded_server(tmp: Path) -> Iterator[RunningServer]:
    data = tmp / "server"
    store = Store(data)
    try:
        seed_store(store, 10_000, BOX, dense_cell=DENSE, dense_images=DENSE_N, seed=0)
    finally:
        store.close()
    with running_server(data) as srv:
        yield srv


def truth(srv: RunningServer, bbox: tuple[float, float, float, float]) -> dict[str, str]:
    """``{image id: sequence id}`` of every image inside ``bbox`` (edges included)."""
    w, s, e, n = bbox
    db = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    try:
        rows = db.execute(
            "SELECT id, sequence_id FROM images WHERE lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?",
            (w, e, s, n),
        ).fetchall()
    finally:
        db.close()
    return dict(rows)


def env(home: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY_")}
    e.update(AMLY_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return e


def amly(
    srv: RunningServer, home: Path, *args: str, token: str | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "amly", *args, "--endpoint", srv.url]
    cmd += ["--token", token if token is not None else srv.token]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(home), timeout=240)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def bbox_arg(b: tuple[float, float, float, float]) -> str:
    return ",".join(repr(v) for v in b)


def summary(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(r.stdout)


def files(out: Path) -> dict[str, str]:
    """``{image id: sequence folder}`` of the JPEGs under ``out``; asserts each id once."""
    found: dict[str, str] = {}
    for p in out.glob("*/*.jpg"):
        assert p.stem not in found, f"{p.stem} downloaded twice"
        found[p.stem] = p.parent.name
    return found


def index_ids(out: Path) -> list[str]:
    doc = json.loads((out / "index.geojson").read_text())
    assert doc["type"] == "FeatureCollection"
    return [f["properties"]["id"] for f in doc["features"]]
