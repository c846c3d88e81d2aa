"""Distributed downloads (amly.distributed): a LocalCluster of 2 worker processes against an
``amly server`` seeded with 20,000 images at injected latency.

The ids stored equal the box's ids, each once; a worker ``kill -9``ed mid-run does not stop
the job nor make it store anything twice; the shared token bank holds the server's observed
request rate under the configured limit across both workers; ``--shard 1/2`` + ``2/2`` +
merge equals one plain run; about one request per image.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from download_support import amly, bbox_arg, env, files, index_ids, summary, truth

from amly.config import Secret
from amly.distributed.limiter import LEASE_TTL, TokenBank, local_caller, shared_limiters
from amly.distributed.tilejob import TileQuery
from amly.net import Limits
from amly.server.seed import seed_store
from amly.server.store import Store
from amly.server.testing import running_server

distributed = pytest.importorskip("distributed")

from amly.distributed.cluster import JobSpec, run_job  # noqa: E402

#: 20,000 images over this box; the test boxes cut through it (tile and group edges inside).
AREA = (13.36, 52.48, 13.44, 52.54)
BIG = (13.383, 52.497, 13.421, 52.523)  # ~4,000 images, 3 x 3 z14 tiles
SMALL = (13.401, 52.501, 13.413, 52.513)  # ~600 images, 2 x 2 z14 tiles


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("dist") / "server"
    store = Store(data)
    try:
        seed_store(store, 20_000, AREA, seed=3)
    finally:
        store.close()
    with running_server(data) as s:
        s.faults.latency_ms = 20
        yield s


@pytest.fixture(scope="module")
def client() -> Any:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _spec(srv: Any, box: Any, out: Path, search_limit: int = 2000, **kw: Any) -> JobSpec:
    kw.setdefault("workers", 2)
    kw.setdefault("concurrency", 16)
    q = TileQuery(box, size="256", search_limit=search_limit)
    # One z14 tile per task: a small test box still makes several tasks.
    return JobSpec(srv.endpoints, Secret(srv.token), q, str(out), group_zoom=14, **kw)


def _route(srv: Any, part: str) -> int:
    return sum(n for route, n in srv.stats.by_route.items() if part in route)


def test_token_bank_holds_the_rate_for_many_limiters() -> None:
    """Four limiters (four workers' worth) on one bank: together at most the bank's rate."""
    bank = TokenBank({"search": (50.0, 5.0)})
    limiters = [shared_limiters(Limits(search_per_minute=3000), local_caller(bank), workers=4)
                for _ in range(4)]  # fmt: skip

    async def hammer(lim: Any, n: int) -> None:
        for _ in range(n):
            await lim["search"].acquire()

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(hammer(x, 20) for x in limiters)), 30)

    t0 = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - t0
    # 80 requests at 50/s with a burst of 5: the bank allows no more than this, however the
    # four limiters interleave (leased tokens expire after LEASE_TTL, so none are hoarded).
    assert 80 <= 5 + 50 * (elapsed + LEASE_TTL)
    assert bank.granted["search"] == 80


def test_a_429_on_one_worker_pauses_the_others() -> None:
    """One worker's limiter pauses (a 429): another worker's next request waits for it, via
    the bank, though it never saw the 429 itself."""
    bank = TokenBank({"entity": (1000.0, 10.0)})
    a, b = (shared_limiters(Limits(), local_caller(bank), workers=2) for _ in range(2))

    async def main() -> float:
        await b["entity"].acquire()  # b holds a lease of tokens already
        a["entity"].pause(0.5)
        await asyncio.sleep(0.05)  # the pause message reaches the bank
        b["entity"]._leased.clear()  # the lease b held runs out (LEASE_TTL, shortened here)
        t0 = time.monotonic()
        await b["entity"].acquire()
        return time.monotonic() - t0

    assert asyncio.run(main()) >= 0.4


@pytest.mark.slow
def test_two_workers_store_the_box_exactly_once(srv: Any, client: Any, tmp_path: Path) -> None:
    expected = truth(srv, BIG)
    assert len(expected) > 3000
    srv.stats.reset()
    res = run_job(client, _spec(srv, BIG, tmp_path / "out"))
    assert res.errors == [] and res.stats.failures == []
    assert res.tiles_unfinished == 0 and res.groups >= 4
    assert files(tmp_path / "out") == expected  # each id once, in its sequence folder
    ids = index_ids(tmp_path / "out")
    assert sorted(ids) == sorted(expected)
    # Metadata came in bulk: a tile, a few searches, and the images themselves.
    assert _route(srv, "/cdn/") == len(expected)
    assert res.stats.requests == srv.stats.requests  # every request the server saw is counted
    assert res.requests_per_image is not None and res.requests_per_image <= 1.1
    # A rerun reads nothing again: every tile is marked finished.
    srv.stats.reset()
    again = run_job(client, _spec(srv, BIG, tmp_path / "out"))
    assert again.stats.tiles_reused == again.tiles and again.stats.reused == len(expected)
    assert srv.stats.requests == 0


@pytest.mark.slow
def test_a_worker_killed_mid_run_stores_nothing_twice(
    srv: Any, client: Any, tmp_path: Path
) -> None:
    expected = truth(srv, BIG)
    out = tmp_path / "out"
    pids = client.run(os.getpid)  # {worker address: pid}
    srv.stats.reset()
    seen: list[int] = []
    box: dict[str, Any] = {}

    def job() -> None:
        try:
            box["res"] = run_job(client, _spec(srv, BIG, out), on_progress=seen.append)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            box["error"] = e

    th = threading.Thread(target=job)
    th.start()
    deadline = time.monotonic() + 120
    while not seen or seen[-1] < len(expected) // 4:
        assert th.is_alive(), box
        assert time.monotonic() < deadline
        time.sleep(0.05)
    busy = [addr for addr, keys in client.processing().items() if keys]
    victim = pids[busy[0]] if busy else next(iter(pids.values()))
    os.kill(victim, signal.SIGKILL)
    th.join(timeout=300)
    assert not th.is_alive() and "error" not in box, box
    res = box["res"]
    assert res.errors == [] and res.tiles_unfinished == 0
    assert files(out) == expected
    assert sorted(index_ids(out)) == sorted(expected)
    # Re-downloaded at most what the killed worker had in flight, never a stored image.
    assert len(expected) <= _route(srv, "/cdn/") <= len(expected) + 16
    assert victim not in client.run(os.getpid).values()  # the kill did happen


@pytest.mark.slow
def test_shared_limiter_holds_the_servers_rate(srv: Any, client: Any, tmp_path: Path) -> None:
    """Searches limited to 4/s for the whole cluster: the server sees no more, with 2 workers
    both searching (each alone would allow itself 4/s)."""
    limits = Limits(search_per_minute=240)
    srv.stats.reset()
    t0 = time.monotonic()
    # Answers of at most 100 images: cells split, the job is bound by the search rate.
    res = run_job(client, _spec(srv, BIG, tmp_path / "out", search_limit=100, limits=limits))
    elapsed = time.monotonic() - t0
    assert res.errors == [] and res.tiles_unfinished == 0
    assert files(tmp_path / "out") == truth(srv, BIG)
    searches = _route(srv, "/images")
    assert searches >= 60
    # The bank's guarantee: burst (4) + rate x (time + lease TTL).
    assert searches <= 4 + 4.0 * (elapsed + LEASE_TTL)


@pytest.mark.slow
def test_shards_merged_equal_one_plain_run(srv: Any, tmp_path: Path) -> None:
    """``--shard 1/2`` + ``--shard 2/2`` + ``amly download merge`` = one plain run: the same
    files, byte for byte, and the same index (the CLI, as a user runs it)."""
    expected = truth(srv, SMALL)
    common = ["--bbox", bbox_arg(SMALL), "--size", "256", "--json"]
    r = amly(srv, tmp_path, "download", "images", *common, "--out", str(tmp_path / "plain"))
    plain = summary(r)
    assert r.returncode == 0 and plain["counts"]["downloaded"] == len(expected)
    assert plain["requests_per_image"] <= 1.1  # the plain engine gets metadata in bulk too
    parts = []
    for k in (1, 2):
        out = tmp_path / f"part{k}"
        r = amly(srv, tmp_path, "download", "images", *common, "--out", str(out),
                 "--shard", f"{k}/2")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert summary(r)["distributed"]["shard"] == f"{k}/2"
        parts.append(out)
    assert files(parts[0]) and files(parts[1])  # both shards had work
    assert set(files(parts[0])).isdisjoint(files(parts[1]))
    r = subprocess.run(
        [sys.executable, "-m", "amly", "download", "merge", *map(str, parts),
         "--out", str(tmp_path / "merged"), "--json"],
        capture_output=True, text=True, env=env(tmp_path), timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert summary(r)["counts"]["images"] == len(expected)
    assert files(tmp_path / "merged") == files(tmp_path / "plain") == expected
    assert sorted(index_ids(tmp_path / "merged")) == sorted(index_ids(tmp_path / "plain"))
    for ident, seq in expected.items():
        rel = f"{seq}/{ident}.jpg"
        assert (tmp_path / "merged" / rel).read_bytes() == (tmp_path / "plain" / rel).read_bytes()


@pytest.mark.slow
def test_cli_dask_local_cluster(srv: Any, tmp_path: Path) -> None:
    """``amly download images --dask local:2``: every id once, requests per image reported."""
    expected = truth(srv, SMALL)
    srv.stats.reset()
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SMALL), "--size", "256",
             "--out", str(tmp_path / "out"), "--dask", "local:2", "--json",
             "--report", str(tmp_path / "map.html"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = summary(r)
    assert doc["report"] == str(tmp_path / "map.html")
    assert b"amly download images" in (tmp_path / "map.html").read_bytes()
    assert doc["counts"]["downloaded"] == len(expected)
    assert files(tmp_path / "out") == expected
    assert sorted(index_ids(tmp_path / "out")) == sorted(expected)
    assert doc["requests"] == srv.stats.requests  # all requests, the token check included
    assert doc["requests_per_image"] <= 1.1
    assert "Traceback" not in r.stderr
    # --method search: groups enumerated by cell searches alone, no tile quota spent.
    srv.stats.reset()
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SMALL), "--size", "256",
             "--out", str(tmp_path / "search"), "--dask", "local:2", "--method", "search",
             "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert files(tmp_path / "search") == expected
    assert sorted(index_ids(tmp_path / "search")) == sorted(expected)
    assert _route(srv, "/tiles/") == 0 and summary(r)["requests_per_image"] <= 1.1


def test_cli_rejects_a_bad_scheduler_and_shard(srv: Any, tmp_path: Path) -> None:
    for extra, what in ((["--dask", "local:0"], "local:N"), (["--shard", "3/2"], "--shard"),
                        (["--dask", "nowhere"], "tcp://")):  # fmt: skip
        r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SMALL),
                 "--out", str(tmp_path / "x"), *extra)  # fmt: skip
        assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_process_on_the_cluster_equals_local_processes(tmp_path: Path) -> None:
    """``amly process --dask local:2``: the same description file as the local pool."""
    from _process_helpers import add_bad_files, drive, write_drive
    from _process_helpers import amly as amly_local

    write_drive(tmp_path / "a", drive(60))
    write_drive(tmp_path / "b" / "cam", drive(40, start_lat=48.1, start_lon=11.5, seed=3))
    add_bad_files(tmp_path / "a")
    r1 = amly_local("process", tmp_path, "--desc-path", tmp_path / "local.json", "-q")
    r2 = amly_local("process", tmp_path, "--desc-path", tmp_path / "dask.json", "-q",
                    "--dask", "local:2")  # fmt: skip
    assert r1.returncode == r2.returncode == 1, r2.stderr  # the bad files fail in both
    local = (tmp_path / "local.json").read_bytes()
    assert local == (tmp_path / "dask.json").read_bytes() and b"MAPSequenceUUID" in local


def test_a_bbox_search_answers_metadata_and_thumbnail_urls_at_once(srv: Any) -> None:
    """What the tile engine relies on: one bbox search answers every image of the cell (up to
    the limit) with the metadata fields and a working signed thumbnail URL."""
    import json
    import urllib.parse
    import urllib.request

    cell = (13.401, 52.501, 13.409, 52.509)
    q = TileQuery(cell, size="256")
    query = urllib.parse.urlencode(
        {"bbox": ",".join(map(repr, cell)), "fields": ",".join(q.fields), "limit": 2000}
    )
    req = urllib.request.Request(
        f"{srv.url}/images?{query}", headers={"Authorization": f"OAuth {srv.token}"}
    )
    with urllib.request.urlopen(req) as r:
        data = json.load(r)["data"]
    assert {d["id"] for d in data} == set(truth(srv, cell))
    for d in data:
        assert {"id", "sequence", "geometry", "captured_at", "creator", "is_pano"} <= set(d)
        assert {"make", "model", "width", "height", "thumb_256_url"} <= set(d)
    with urllib.request.urlopen(data[0]["thumb_256_url"]) as r:  # no token to the CDN
        assert r.read(3) == b"\xff\xd8\xff"


@pytest.mark.slow
def test_gpx_on_the_cluster_equals_the_plain_download(
    srv: Any, client: Any, tmp_path: Path
) -> None:
    from amly.distributed.gpxjob import run_gpx_job

    res = run_gpx_job(client, _spec(srv, SMALL, tmp_path / "dask"))
    assert res.errors == [] and res.failures == [] and res.written == res.sequences > 3
    amly(srv, tmp_path, "download", "gpx", "--bbox", bbox_arg(SMALL), "--out",
         str(tmp_path / "plain"), "-q", check=True)  # fmt: skip
    plain = {p.name: p.read_bytes() for p in (tmp_path / "plain").glob("*.gpx")}
    dask = {p.name: p.read_bytes() for p in (tmp_path / "dask").glob("*.gpx")}
    assert dask.keys() == plain.keys()
    strip = re.compile(rb"<metadata>.*?</metadata>", re.S)  # creation time differs
    assert all(strip.sub(b"", dask[k]) == strip.sub(b"", plain[k]) for k in plain)
    again = run_gpx_job(client, _spec(srv, SMALL, tmp_path / "dask"))
    assert again.written == 0 and again.existing == res.written


@pytest.mark.slow
def test_cli_dask_remote_scheduler(srv: Any, tmp_path: Path) -> None:
    """``--dask tcp://HOST:PORT``: a scheduler and workers in processes of their own (the
    token bank is installed on a scheduler that is not this process)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dask = [sys.executable, "-c", "from distributed.cli.dask_scheduler import main; main()"]
    addr = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask.log"
    with open(logs, "wb") as log:
        sched = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port),
                                  "--no-dashboard"], stdout=log, stderr=log)  # fmt: skip
        worker = subprocess.Popen(
            [sys.executable, "-c", "from distributed.cli.dask_worker import main; main()",
             addr, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
            stdout=log, stderr=log, cwd=tmp_path,
        )  # fmt: skip
        try:
            expected = truth(srv, SMALL)
            r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SMALL),
                     "--size", "256", "--out", str(tmp_path / "out"), "--dask", addr,
                     "--json")  # fmt: skip
            assert r.returncode == 0, r.stderr + logs.read_text()[-3000:]
            assert files(tmp_path / "out") == expected
            assert sorted(index_ids(tmp_path / "out")) == sorted(expected)
            assert summary(r)["requests_per_image"] <= 1.1
        finally:
            for p in (worker, sched):
                p.terminate()
            for p in (worker, sched):
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def test_a_job_refuses_an_output_of_another_size(srv: Any, tmp_path: Path) -> None:
    """Images are reused by name: a --shard/--dask job into a folder holding another size's
    images stops before any work and says why (a plain run's folder, or its own)."""
    tiny = (13.401, 52.501, 13.4025, 52.5025)
    out = str(tmp_path / "out")
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(tiny), "--size", "256",
             "--out", out, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(tiny), "--size", "1024",
             "--out", out, "--shard", "1/1")  # fmt: skip
    assert r.returncode == 2 and "size 256" in r.stderr and "Traceback" not in r.stderr
    other = str(tmp_path / "other")
    for size, code in (("256", 0), ("1024", 2)):
        r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(tiny), "--size", size,
                 "--out", other, "--shard", "1/1", "-q")  # fmt: skip
        assert r.returncode == code, r.stderr
