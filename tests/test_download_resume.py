"""Resuming downloads: ``kill -9`` in the middle then a rerun fetches only what is missing; a
changed box reuses the files the two queries share; a changed size downloads again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from download_support import (
    SUB,
    amly,
    bbox_arg,
    env,
    files,
    index_ids,
    seeded_server,
    summary,
    truth,
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from seeded_server(tmp_path_factory.mktemp("resume"))


def _cdn_requests(srv: Any) -> int:
    return sum(n for route, n in srv.stats.by_route.items() if "cdn" in route)


def test_kill_9_then_rerun_downloads_only_what_is_missing(srv: Any, tmp_path: Path) -> None:
    expected = truth(srv, SUB)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "amly", "download", "images", "--bbox", bbox_arg(SUB),
           "--size", "256", "--out", str(out), "--concurrency", "4",
           "--endpoint", srv.url, "--token", srv.token, "-q"]  # fmt: skip
    srv.faults.latency_ms = 25  # slow enough to be killed mid-way
    try:
        proc = subprocess.Popen(cmd, env=env(tmp_path), stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(list(out.glob("*/*.jpg"))) < 60:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        srv.faults.latency_ms = 0
    before = files(out)  # complete files only (atomic writes: no torn JPEG is ever visible)
    assert 60 <= len(before) < len(expected)
    assert not (out / "index.geojson").exists()
    cdn0 = _cdn_requests(srv)
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SUB), "--size", "256",
             "--out", str(out), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = summary(r)["counts"]
    assert files(out) == expected and sorted(index_ids(out)) == sorted(expected)
    assert not list(out.glob("*/.amly-*.tmp"))  # a killed run's temp files are swept
    # The manifest is written after each file: at most the images in flight are fetched again.
    assert s["reused"] >= len(before) - 4
    assert s["reused"] + s["downloaded"] == len(expected)
    assert _cdn_requests(srv) - cdn0 == s["downloaded"] <= len(expected) - len(before) + 4
    # A third run downloads nothing.
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SUB), "--size", "256",
             "--out", str(out), "--json")  # fmt: skip
    third = summary(r)
    assert third["counts"] == {"downloaded": 0, "reused": len(expected)}
    # ...and reads no tile again: each was recorded once all its images were on disk.
    assert third["enumeration"]["tiles"] == 0 and third["enumeration"]["tiles_skipped"] > 0
    assert sorted(index_ids(out)) == sorted(expected)
    # A file deleted by hand is noticed: its tile is read again and the image fetched.
    victim = next(iter(out.glob("*/*.jpg")))
    victim.unlink()
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SUB), "--size", "256",
             "--out", str(out), "--json")  # fmt: skip
    fourth = summary(r)
    assert fourth["counts"] == {"downloaded": 1, "reused": len(expected) - 1}
    assert fourth["enumeration"]["tiles"] >= 1
    assert files(out) == expected and sorted(index_ids(out)) == sorted(expected)


def test_changed_box_reuses_shared_images_and_size_change_downloads_again(
    srv: Any, tmp_path: Path
) -> None:
    w, s, e, n = SUB
    a = (w, s, (w + e) / 2, n)
    b = ((w + e) * 0.5 - (e - w) * 0.2, s, e, n)  # overlaps a
    ta, tb = truth(srv, a), truth(srv, b)
    shared = set(ta) & set(tb)
    assert shared and set(tb) - set(ta)
    out = tmp_path / "out"

    def run(box: Any, size: str = "256") -> dict[str, Any]:
        r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(box), "--size", size,
                 "--out", str(out), "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        return summary(r)

    first = run(a)
    assert first["counts"]["downloaded"] == len(ta) and not first["query_changed"]
    second = run(b)
    assert second["query_changed"]
    assert second["counts"] == {"downloaded": len(set(tb) - set(ta)), "reused": len(shared)}
    assert sorted(index_ids(out)) == sorted(tb)  # the index describes the latest query
    assert set(files(out)) == set(ta) | set(tb)  # nothing deleted
    third = run(b, "1024")
    assert third["counts"] == {"downloaded": len(tb), "reused": 0}
    feats = json.loads((out / "index.geojson").read_text())["features"]
    assert len(feats) == len(tb)
