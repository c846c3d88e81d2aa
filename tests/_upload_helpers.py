"""Shared by the upload tests: small photo trees, running the CLI, reading back clusters."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from amly import synth
from amly.description import validate_embedded
from amly.server.testing import RunningServer

SIZE = (160, 90)


def photos(
    folder: Path, n: int, *, seed: int = 1, lat: float = 52.52, hour: int = 10
) -> list[Path]:
    """``n`` geotagged photos of one drive (one sequence) in ``folder``, in capture order."""
    plan = synth.DrivePlan(
        n=n,
        seed=seed,
        start_lat=lat,
        start=datetime(2024, 6, 1, hour, 0, 0, tzinfo=timezone.utc) + timedelta(minutes=seed),
    )
    return synth.write_photos(folder, synth.drive(plan), size=SIZE)


def tree(root: Path, layout: dict[str, int]) -> dict[str, list[Path]]:
    """Subfolders of ``root`` with that many photos each, far apart (one sequence each)."""
    out = {}
    for i, (name, n) in enumerate(sorted(layout.items())):
        out[name] = photos(root / name, n, seed=i + 1, lat=52.0 + i * 0.5)
    return out


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def env_for(srv: RunningServer, home: Path, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY_")}
    env.update(AMLY_HOME=str(home), MAPILLARY_ACCESS_TOKEN=token or srv.token, AMLY_LOOP="uvloop")
    return env


def amly(
    srv: RunningServer, home: Path, *args: str, token: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m amly ARGS --endpoint SERVER`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "amly", *args, "--endpoint", srv.url],
        env=env_for(srv, home, token),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def db(srv: RunningServer) -> sqlite3.Connection:
    con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    con.row_factory = sqlite3.Row
    return con


def clusters(srv: RunningServer) -> dict[str, list[sqlite3.Row]]:
    """Every cluster on the server: its images in sequence order."""
    con = db(srv)
    out = {}
    for (cid,) in con.execute("SELECT id FROM clusters ORDER BY created_at"):
        out[cid] = con.execute(
            "SELECT i.* FROM images i JOIN sequences s ON s.id = i.sequence_id "
            "WHERE s.cluster_id = ? ORDER BY i.seq_index",
            (cid,),
        ).fetchall()
    con.close()
    return out


def check_cluster(srv: RunningServer, rows: list[sqlite3.Row], local: list[Path]) -> None:
    """The cluster holds exactly ``local`` in order: each received image's md5 is what its
    session key says, its description is valid and names the local photo."""
    assert [r["seq_index"] for r in rows] == list(range(len(local)))
    keys = {k[len("mly_tools_") : -4] for k in srv.stats.bytes_by_key if k.endswith(".jpg")}
    for r, path in zip(rows, local, strict=True):
        received = srv.store_dir / r["path"]
        digest = md5(received)
        assert digest == r["md5"]
        # content-addressed: the received bytes are what the client named them
        con = db(srv)
        (n,) = con.execute(
            "SELECT COUNT(*) FROM uploads WHERE session_key = ?", (f"mly_tools_{digest}.jpg",)
        ).fetchone()
        con.close()
        assert n == 1 and (not keys or digest in keys)
        d = json.loads(r["description"])
        assert validate_embedded(d) == []
        assert d["MAPFilename"] == path.name
    times = [r["captured_at"] for r in rows]
    assert times == sorted(times)


def cluster_names(rows: list[sqlite3.Row]) -> list[str]:
    return [json.loads(r["description"])["MAPFilename"] for r in rows]
