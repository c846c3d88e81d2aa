"""Uploads against a misbehaving server: 5xx, dropped connections mid-body, rate limiting,
a token revoked mid-run, an outage. Real sockets, the server's own counters as the judge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _upload_helpers import check_cluster, cluster_names, clusters, tree

import amly
from amly.net.retry import RetryPolicy
from amly.server.auth import STORE_KEY
from amly.server.faults import Faults
from amly.server.testing import RunningServer, running_server
from amly.services.upload import UploadProgress, UploadResult

FAST = RetryPolicy(base_delay=0.01, max_delay=0.1, rate_limit_wait=0.05)


def upload(
    srv: RunningServer, root: Path, journal: Path, *, concurrency: int = 8, progress=None
) -> UploadResult:
    async def main() -> UploadResult:
        async with amly.Client(
            srv.url, token=srv.token, journal=journal, policy=FAST, concurrency=concurrency
        ) as client:
            return await client.upload([root], subfolders=True, progress=progress)

    return asyncio.run(main())


def test_faulty_server_every_sequence_exactly_once(tmp_path: Path) -> None:
    local = tree(tmp_path / "t", {"a": 14, "b": 11, "c": 9})
    smallest = min(p.stat().st_size for ps in local.values() for p in ps)
    faults = Faults(
        error_rate=0.2,
        drop_after_bytes=smallest // 2,  # every image needs at least two POSTs
        rate_limit_every=7,
        backoff_ms=20,
        seed=11,
    )
    with running_server(tmp_path / "srv", faults=faults) as srv:
        result = upload(srv, tmp_path / "t", tmp_path / "j.sqlite3")
        assert result.ok, (result.failures, [s.error for s in result.sequences])
        found = clusters(srv)
        assert len(found) == 3 and sorted(result.cluster_ids) == sorted(found)
        for ps in local.values():
            (rows,) = [r for r in found.values() if cluster_names(r) == [p.name for p in ps]]
            check_cluster(srv, rows, ps)
        stats = srv.stats
        assert stats.injected_errors > 0 and stats.dropped >= 34 and stats.rate_limited > 0
        # resumed at the server's offset: at most 10 % of the bytes arrived twice
        sizes = {k: (srv.store_dir / "uploads" / k).stat().st_size for k in stats.bytes_by_key}
        assert sum(stats.bytes_by_key.values()) <= 1.1 * sum(sizes.values())
        assert result.retries > 0


def test_token_revoked_mid_run_stops_everything_without_retry_storm(tmp_path: Path) -> None:
    tree(tmp_path / "t", {"a": 30, "b": 30})
    with running_server(tmp_path / "srv", faults=Faults(latency_ms=20)) as srv:
        store = srv.app[STORE_KEY]

        def revoke(p: UploadProgress) -> None:
            if p.images_done == 5:
                srv.call(lambda: store.db.execute("DELETE FROM tokens"))

        with pytest.raises(amly.AuthError):
            upload(srv, tmp_path / "t", tmp_path / "j.sqlite3", concurrency=4, progress=revoke)
        refused = srv.stats.by_status[401] + srv.stats.by_status[403]
        assert 1 <= refused <= 4  # at most one refusal per upload in flight, then stop
        assert clusters(srv) == {}


def test_outage_beyond_retries_stops_then_rerun_finishes_once(tmp_path: Path) -> None:
    local = tree(tmp_path / "t", {"a": 20, "b": 12})
    journal = tmp_path / "j.sqlite3"
    with running_server(tmp_path / "srv", faults=Faults(latency_ms=10)) as srv:

        def outage(p: UploadProgress) -> None:
            if p.images_done == 6:
                srv.faults.error_rate = 1.0

        with pytest.raises(amly.APIError, match="failed after"):
            upload(srv, tmp_path / "t", journal, concurrency=4, progress=outage)
        # stopped: not every image was tried (about one retry budget per upload in flight)
        assert srv.stats.injected_errors <= 4 * FAST.max_attempts + 10
        sent_before = dict(srv.stats.bytes_by_key)
        srv.faults.clear()
        result = upload(srv, tmp_path / "t", journal)
        assert result.ok and len(clusters(srv)) == 2
        assert sum(s.cached for s in result.sequences) >= 6
        # nothing the server already had was sent again
        for k, n in sent_before.items():
            assert srv.stats.bytes_by_key[k] == n == (srv.store_dir / "uploads" / k).stat().st_size
        for ps in local.values():
            found = clusters(srv).values()
            (rows,) = [r for r in found if cluster_names(r) == [p.name for p in ps]]
            check_cluster(srv, rows, ps)
