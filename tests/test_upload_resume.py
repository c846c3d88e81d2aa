"""Resuming: ``kill -9`` in the middle of an upload, a crash between ``finish_upload`` and its
journal record, a lost journal. A rerun completes without re-sending what the server has and
never creates a second cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _upload_helpers import check_cluster, cluster_names, clusters, env_for, summary, tree

import amly
from amly.server.faults import Faults
from amly.server.testing import RunningServer, running_server
from amly.services.mapillary.upload import MapillaryTarget
from amly.services.upload import UploadResult


def _sizes_match(srv: RunningServer) -> None:
    """Every byte of every upload arrived exactly once."""
    for k, n in srv.stats.bytes_by_key.items():
        assert n == (srv.store_dir / "uploads" / k).stat().st_size, k


def test_kill_9_mid_upload_then_rerun(tmp_path: Path) -> None:
    local = tree(tmp_path / "t", {"a": 40, "b": 30})
    home = tmp_path / "home"
    with running_server(tmp_path / "srv", faults=Faults(latency_ms=25)) as srv:
        cmd = [sys.executable, "-m", "amly", "upload", str(tmp_path / "t"), "--subfolders"]
        cmd += ["--concurrency", "4", "--endpoint", srv.url, "--json"]
        # its own process group: the kill takes its reader processes along
        proc = subprocess.Popen(
            cmd,
            env=env_for(srv, home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while srv.stats.uploads_completed < 25 and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = srv.stats.uploads_completed
        assert 25 <= done_before < 70
        srv.faults.clear()
        rerun = subprocess.run(
            cmd, env=env_for(srv, home), capture_output=True, text=True, timeout=120
        )
        assert rerun.returncode == 0, rerun.stderr
        out = summary(rerun)
        # finished images came from the journal (or the server's offset == size)
        assert out["counts"]["already_uploaded"] >= 25
        _sizes_match(srv)
        found = clusters(srv)
        assert len(found) == 2 and sorted(out["cluster_ids"]) == sorted(found)
        for ps in local.values():
            (rows,) = [r for r in found.values() if cluster_names(r) == [p.name for p in ps]]
            check_cluster(srv, rows, ps)


def _upload(srv: RunningServer, root: Path, journal: Path) -> UploadResult:
    async def main() -> UploadResult:
        async with amly.Client(srv.url, token=srv.token, journal=journal) as client:
            return await client.upload([root])

    return asyncio.run(main())


class Crash(BaseException):
    """Stands in for the process dying at an awkward moment."""


@pytest.mark.parametrize("when", ["before_finish", "after_finish"])
def test_crash_around_finish_never_makes_a_second_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    tree(tmp_path / "t", {"a": 8})
    root = tmp_path / "t" / "a"
    journal = tmp_path / "j.sqlite3"
    real = MapillaryTarget._finish_upload

    async def crashing(self: Any, handle: str, file_type: str, org: str | None) -> str:
        if when == "after_finish":
            await real(self, handle, file_type, org)  # the server made the cluster...
        raise Crash  # ... but the process died before the journal heard of it

    with running_server(tmp_path / "srv") as srv:
        monkeypatch.setattr(MapillaryTarget, "_finish_upload", crashing)
        with pytest.raises(Crash):
            _upload(srv, root, journal)
        monkeypatch.setattr(MapillaryTarget, "_finish_upload", real)
        assert len(clusters(srv)) == (1 if when == "after_finish" else 0)
        manifests = {k for k in srv.stats.bytes_by_key if k.endswith(".json")}
        result = _upload(srv, root, journal)
        assert result.ok and len(clusters(srv)) == 1
        assert result.cluster_ids == list(clusters(srv))
        # the same manifest was finished (the rerun sent no image and no manifest again)
        assert {k for k in srv.stats.bytes_by_key if k.endswith(".json")} == manifests
        assert result.bytes_sent == 0
        _sizes_match(srv)


def test_lost_journal_still_no_second_cluster(tmp_path: Path) -> None:
    tree(tmp_path / "t", {"a": 6})
    root = tmp_path / "t" / "a"
    with running_server(tmp_path / "srv") as srv:
        first = _upload(srv, root, tmp_path / "j1.sqlite3")
        received = srv.stats.bytes_received
        again = _upload(srv, root, tmp_path / "j2.sqlite3")  # a fresh journal
        assert again.cluster_ids == first.cluster_ids and len(clusters(srv)) == 1
        # the server took no byte twice: each first POST got a 412 (it had them all), the
        # retry asked for the offset (== size) and got the same handle back
        assert srv.stats.bytes_received == received
        assert srv.stats.offset_errors == 6
