"""The asyncio API: ``async with amly.Client(...) as client: await client.upload(...)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _upload_helpers import check_cluster, cluster_names, clusters, photos, tree

import amly
from amly.metadata import read_image
from amly.server.testing import RunningServer, running_server
from amly.services.upload import SequenceResult, UploadProgress, UploadResult


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "srv") as s:
        yield s


def test_client_uploads_folders_with_typed_results_and_progress(
    srv: RunningServer, tmp_path: Path
) -> None:
    local = tree(tmp_path / "t", {"a": 9, "b": 6})
    seen: list[UploadProgress] = []

    async def main() -> UploadResult:
        async with amly.Client(
            srv.url, token=srv.token, journal=tmp_path / "j.sqlite3", concurrency=4
        ) as client:
            return await client.upload([tmp_path / "t"], subfolders=True, progress=seen.append)

    result = asyncio.run(main())
    assert isinstance(result, UploadResult) and result.ok
    assert all(isinstance(s, SequenceResult) for s in result.sequences)
    assert sorted(s.images for s in result.sequences) == [6, 9]
    assert sorted(result.cluster_ids) == sorted(clusters(srv))
    assert all(s.bytes_sent >= s.bytes > 0 and not s.skipped for s in result.sequences)
    # progress: a call per image (and per finished sequence), monotonic, ending at the totals
    dones = [p.images_done for p in seen]
    assert dones == sorted(dones) and set(dones) == set(range(1, 16))
    last = seen[-1]
    assert last.images_done == last.images_total == 15 and last.sequences_done == 2
    for rows in clusters(srv).values():
        ps = local["a"] if len(rows) == 9 else local["b"]
        check_cluster(srv, rows, ps)


def test_client_uploads_sequences_from_an_async_iterable(
    srv: RunningServer, tmp_path: Path
) -> None:
    """Sequences processed in memory upload while the producer is still producing."""
    a = photos(tmp_path / "a", 5, seed=2)
    b = photos(tmp_path / "b", 4, seed=3, lat=53.0)
    order: list[str] = []

    async def produce() -> AsyncIterator[amly.Sequence]:
        for name, ps in (("a", a), ("b", b)):
            order.append(f"made {name}")
            yield amly.Sequence(name, [read_image(p) for p in ps])
            await asyncio.sleep(0.3)  # a slow processor: the first sequence is uploading

    def on_progress(p: UploadProgress) -> None:
        if p.images_done == 5 and "uploaded a" not in order:
            order.append("uploaded a")

    async def main() -> UploadResult:
        async with amly.Client(srv.url, token=srv.token, journal=False) as client:
            return await client.upload(produce(), progress=on_progress)

    result = asyncio.run(main())
    assert result.ok and len(result.cluster_ids) == 2
    assert order == ["made a", "uploaded a", "made b"]
    names = sorted(cluster_names(r) for r in clusters(srv).values())
    assert names == sorted([[p.name for p in a], [p.name for p in b]])


def test_client_rerun_reports_skipped_and_dry_run(srv: RunningServer, tmp_path: Path) -> None:
    photos(tmp_path / "p", 5)
    journal = tmp_path / "j.sqlite3"

    async def main(**kw: object) -> UploadResult:
        async with amly.Client(srv.url, token=srv.token, journal=journal) as client:
            return await client.upload([tmp_path / "p"], **kw)  # type: ignore[arg-type]

    dry = asyncio.run(main(dry_run=True))
    assert dry.images == 5 and dry.cluster_ids == [] and srv.stats.requests == 0
    first = asyncio.run(main())
    again = asyncio.run(main())
    assert [s.skipped for s in again.sequences] == [True]
    assert again.cluster_ids == first.cluster_ids and again.bytes_sent == 0


def test_client_bad_token_raises_auth_error(srv: RunningServer, tmp_path: Path) -> None:
    photos(tmp_path / "p", 3)

    async def main() -> None:
        async with amly.Client(srv.url, token="not-a-valid-token-123", journal=False) as c:
            await c.upload([tmp_path / "p"])

    with pytest.raises(amly.AuthError) as info:
        asyncio.run(main())
    assert "not-a-valid-token-123" not in str(info.value)


def test_memory_budget_bounds_images_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a budget smaller than one photo, photos go one at a time (and all arrive)."""
    from amly.server.faults import Faults
    from amly.services.mapillary.upload import MapillaryTarget

    photos(tmp_path / "p", 8)
    real = MapillaryTarget.send
    live = {"now": 0, "max": 0}

    async def counting(self, state, key, data, **kw):  # type: ignore[no-untyped-def]
        live["now"] += 1
        live["max"] = max(live["max"], live["now"])
        try:
            return await real(self, state, key, data, **kw)
        finally:
            live["now"] -= 1

    monkeypatch.setattr(MapillaryTarget, "send", counting)

    def run(budget: int, srv: RunningServer) -> UploadResult:
        async def main() -> UploadResult:
            async with amly.Client(
                srv.url, token=srv.token, journal=False, concurrency=8, buffer_bytes=budget
            ) as client:
                return await client.upload([tmp_path / "p"])

        return asyncio.run(main())

    with running_server(tmp_path / "srv1", faults=Faults(latency_ms=30)) as srv:
        assert run(1, srv).ok and live["max"] == 1
    live["max"] = 0
    with running_server(tmp_path / "srv2", faults=Faults(latency_ms=30)) as srv:
        assert run(1 << 30, srv).ok and live["max"] > 1
