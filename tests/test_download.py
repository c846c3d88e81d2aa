"""``amly download images`` against the real local server (10,000+ seeded images, a cell
denser than the search limit): completeness for both enumeration methods, EXIF read back with
exiftool, max-results, errors before work, faults, unsafe ids, expiring URLs, legacy script."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from download_support import (
    BOX,
    DENSE,
    ROOT,
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

from amly.config import Secret
from amly.net import Transport
from amly.services.mapillary.query import Filters, SearchReport, iso_millis
from amly.services.mapillary.search import candidates


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from seeded_server(tmp_path_factory.mktemp("dl"))


def _enumerate(srv: Any, method: str) -> tuple[list[str], SearchReport]:
    async def run() -> tuple[list[str], SearchReport]:
        rep = SearchReport()
        async with Transport(srv.endpoints, Secret(srv.token)) as t:
            ids = [c.id async for c in candidates(t, BOX, Filters(), rep, method=method)]
        return ids, rep

    return asyncio.run(run())


@pytest.mark.parametrize("method", ["tiles", "search"])
def test_enumeration_finds_every_image_once(srv: Any, method: str) -> None:
    expected = truth(srv, BOX)
    assert len(expected) >= 12_000
    ids, rep = _enumerate(srv, method)
    assert len(ids) == len(set(ids)), "an image was enumerated twice"
    assert set(ids) == set(expected)
    assert not rep.truncated and not rep.rejected
    if method == "search":
        assert rep.splits > 0  # the dense cell held more than one search returns


@pytest.mark.parametrize("method", ["tiles", "search"])
def test_download_box_exactly(srv: Any, tmp_path: Path, method: str) -> None:
    expected = truth(srv, SUB)
    assert 300 < len(expected) < 2000
    out = tmp_path / "out"
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SUB), "--size", "256",
             "--out", str(out), "--method", method, "--search-limit", "200", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = summary(r)
    assert s["counts"]["downloaded"] == len(expected)
    got = files(out)
    assert got == expected  # right ids, each in its sequence's folder
    ids = index_ids(out)
    assert sorted(ids) == sorted(expected)
    if method == "search":
        assert s["enumeration"]["splits"] > 0
    # EXIF as a user would read it: exiftool, every file.
    x = subprocess.run(
        ["exiftool", "-json", "-n", "-r", "-ext", "jpg", "-GPSLatitude", "-GPSLongitude",
         "-DateTimeOriginal", "-GPSImgDirection", "-GPSAltitude", "-Make", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    tags = json.loads(x.stdout)
    assert len(tags) == len(expected)
    feats = {
        f["properties"]["id"]: f
        for f in json.loads((out / "index.geojson").read_text())["features"]
    }
    for t in tags:
        f = feats[Path(t["SourceFile"]).stem]
        lon, lat = f["geometry"]["coordinates"]
        assert math.isclose(t["GPSLatitude"], lat, abs_tol=1e-6)
        assert math.isclose(t["GPSLongitude"], lon, abs_tol=1e-6)
        assert SUB[0] <= t["GPSLongitude"] <= SUB[2] + 1e-6
        assert abs(t["GPSImgDirection"] - f["properties"]["compass_angle"]) < 0.01
        assert t["DateTimeOriginal"].count(":") == 4 and t["Make"]
        assert "GPSAltitude" in t


def test_max_results_and_legacy_size(srv: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SUB), "--size", "320",
             "--max-results", "25", "--out", str(out), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "320 no longer exists" in r.stderr and "256" in r.stderr
    got = files(out)
    assert len(got) == 25 and set(got) <= set(truth(srv, SUB))
    assert len(index_ids(out)) == 25


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--bbox", "13.41,52.5,13.40,52.51"], 2, "inverted"),
        (["--bbox", "13.40,52.5,13.41,95"], 2, "outside -90..90"),
        (["--bbox", "13.40,52.5,13.41"], 2, "4 numbers"),
        (["--bbox", bbox_arg(SUB), "--size", "300"], 2, "unknown image size"),
        (["--bbox", bbox_arg(SUB), "--start", "yesterday"], 2, "bad time"),
    ],
)
def test_bad_input_fails_before_any_work(
    srv: Any, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    before = srv.stats.requests
    out = tmp_path / "out"
    r = amly(srv, tmp_path, "download", "images", *args, "--out", str(out))
    assert r.returncode == code and message in r.stderr, r.stderr
    assert not out.exists() and srv.stats.requests == before


def test_bad_token_is_refused_up_front(srv: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(SUB), "--out", str(out),
             token="MLY|not|a-valid-token")  # fmt: skip
    assert r.returncode == 3, r.stderr
    assert "token" in r.stderr.lower() or "authoris" in r.stderr.lower()
    assert not any(out.glob("*/*.jpg"))


@pytest.mark.parametrize("method", ["tiles", "search"])
def test_faults_are_survived(srv: Any, tmp_path: Path, method: str) -> None:
    box = (13.4101, 52.5101, 13.4125, 52.5125)
    expected = truth(srv, box)
    assert len(expected) > 50
    f = srv.faults
    f.seed = 11
    f.error_rate, f.rate_limit_every, f.backoff_ms, f.search_timeout_rate = 0.1, 17, 20, 0.3
    try:
        out = tmp_path / "out"
        r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(box), "--size", "256",
                 "--out", str(out), "--method", method, "--json")  # fmt: skip
    finally:
        f.error_rate, f.rate_limit_every, f.search_timeout_rate = 0.0, 0, 0.0
    assert r.returncode == 0, r.stderr
    assert files(out) == expected
    assert srv.stats.injected_errors > 0 and srv.stats.rate_limited > 0


def test_unsafe_sequence_id_is_rejected_and_counted(srv: Any, tmp_path: Path) -> None:
    from amly.server.auth import STORE_KEY

    spot = (13.431, 52.531)

    def inject() -> None:
        db = srv.app[STORE_KEY].db
        db.execute("INSERT INTO sequences (id, user_id, created_at) VALUES ('../../evil', 'u', 0)")
        for i, dx in enumerate((0.0, 0.0001)):
            db.execute(
                "INSERT INTO images (id, sequence_id, seq_index, user_id, captured_at, lon, lat)"
                " VALUES (?, ?, 0, 'u', 1600000000000, ?, ?)",
                (
                    str(9 * 10**15 + i),
                    "../../evil" if i == 0 else "fine_seq",
                    spot[0] + dx,
                    spot[1],
                ),
            )

    db = srv.app[STORE_KEY].db
    srv.call(
        lambda: db.execute(
            "INSERT INTO sequences (id, user_id, created_at) VALUES ('fine_seq', 'u', 0)"
        )
    )
    srv.call(inject)
    box = (spot[0] - 0.001, spot[1] - 0.001, spot[0] + 0.001, spot[1] + 0.001)
    for method in ("tiles", "search"):
        out = tmp_path / method / "out"
        r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(box), "--size", "256",
                 "--out", str(out), "--method", method, "--json")  # fmt: skip
        assert r.returncode == 1, r.stderr
        s = summary(r)
        assert s["counts"]["downloaded"] == 1 and s["counts"]["failed"] == 1
        assert s["failures"][0]["type"] == "UnsafeIdError"
        assert files(out) == {str(9 * 10**15 + 1): "fine_seq"}
        assert not list(tmp_path.rglob("evil*"))


def test_expired_thumbnail_urls_are_resolved_again(srv: Any, tmp_path: Path) -> None:
    from amly.server.thumbs import SIGNER_KEY

    signer = srv.app[SIGNER_KEY]
    box = (13.4141, 52.5141, 13.4152, 52.5152)
    expected = truth(srv, box)
    assert expected
    out = tmp_path / "out"
    ttl, signer.ttl = signer.ttl, -5.0  # every URL is born expired: 403 from the CDN
    try:
        r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(box), "--size", "256",
                 "--out", str(out), "--json")  # fmt: skip
    finally:
        signer.ttl = ttl
    assert r.returncode == 1
    s = summary(r)
    assert s["counts"]["failed"] == len(expected) and not files(out)
    # With URLs valid again the rerun gets everything.
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(box), "--size", "256",
             "--out", str(out), "--json")  # fmt: skip
    assert r.returncode == 0 and files(out) == expected


def test_legacy_download_images_script(srv: Any, tmp_path: Path) -> None:
    w, s, e, n = SUB
    out = tmp_path / "legacy"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "download_images.py"),
         repr(s), repr(n), repr(w), repr(e), "--max_results=12", "--image_size=640",
         f"--out={out}"],
        capture_output=True, text=True, timeout=120,
        env=env(tmp_path, MAPILLARY_GRAPH_API_ENDPOINT=srv.url,
                MAPILLARY_TILES_ENDPOINT=srv.url + "/tiles", MAPILLARY_ACCESS_TOKEN=srv.token),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "640 no longer exists" in r.stderr
    assert len(files(out)) == 12


@pytest.mark.parametrize("method", ["tiles", "search"])
def test_filters_user_time_pano(srv: Any, tmp_path: Path, method: str) -> None:
    import sqlite3

    box = (13.401, 52.501, 13.4099, 52.5099)
    w, s, e, n = box
    db = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    try:
        users = [
            u for (u,) in db.execute("SELECT username FROM users WHERE username LIKE 'seed_%'")
        ]
        rows = db.execute(
            "SELECT i.id, u.username, i.captured_at, i.is_pano FROM images i"
            " JOIN users u ON u.id = i.user_id"
            " WHERE lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?",
            (w, e, s, n),
        ).fetchall()
    finally:
        db.close()
    times = sorted(r[2] for r in rows)
    start, end = times[len(times) // 5], times[4 * len(times) // 5]
    for user in users:
        expected = {r[0] for r in rows if r[1] == user and start <= r[2] <= end and not r[3]}
        if expected:
            break
    assert len(expected) > 10
    out = tmp_path / "out"
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(box), "--size", "256",
             "--out", str(out), "--method", method, "--user", user, "--no-pano",
             "--start", iso_millis(start), "--end", iso_millis(end), "--search-limit", "300", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert set(files(out)) == expected


def test_client_api(srv: Any, tmp_path: Path) -> None:
    import amly

    box = (13.4101, 52.5101, 13.4125, 52.5125)
    expected = truth(srv, box)

    async def run() -> tuple[dict[str, Any], Any, Any]:
        async with amly.Client(srv.url, token=srv.token, journal=False) as client:
            found = {
                img["id"]: img
                async for img in client.images(box, fields=["thumb_256_url", "altitude"])
            }
            few = [img async for img in client.images(box, max_results=5)]
            await asyncio.sleep(0.05)
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert len(few) == 5 and not leftover, leftover  # stopping early leaks no task
            res = await client.download_images(box, tmp_path / "api", size="256", max_results=5)
            seq = next(iter(expected.values()))
            track = await client.sequence_track(seq)
        return found, res, track

    found, res, track = asyncio.run(run())
    assert set(found) == set(expected)
    assert all(img["thumb_256_url"].startswith(srv.url) for img in found.values())
    assert res.downloaded == 5 and len(files(tmp_path / "api")) == 5
    assert len(track) > 1 and [p.time for p in track] == sorted(p.time for p in track)
    with pytest.raises(amly.UsageError):
        asyncio.run(_inverted(srv))


async def _inverted(srv: Any) -> None:
    import amly

    async with amly.Client(srv.url, token=srv.token, journal=False) as client:
        async for _ in client.images((1, 1, 0, 0)):
            pass


@pytest.mark.parametrize("method", ["tiles", "search"])
def test_organization_filter(srv: Any, tmp_path: Path, method: str) -> None:
    import sqlite3

    box = (13.401, 52.501, 13.4099, 52.5099)
    w, s, e, n = box
    db = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    try:
        rows = db.execute(
            "SELECT id, organization_id FROM images"
            " WHERE lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?",
            (w, e, s, n),
        ).fetchall()
    finally:
        db.close()
    orgs = sorted({o for _, o in rows if o})
    assert orgs and any(o is None for _, o in rows)
    expected = {i for i, o in rows if o == orgs[0]}
    out = tmp_path / "out"
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(box), "--size", "256",
             "--out", str(out), "--method", method, "--organization-id", orgs[0], "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert set(files(out)) == expected


def test_expiring_url_is_resolved_once_more_and_succeeds(srv: Any, tmp_path: Path) -> None:
    """The CDN refuses each image's first URL (as if it expired in a queue): each image is
    resolved again right away and then downloads."""
    from amly.server.thumbs import SIGNER_KEY
    from amly.services.mapillary.download import download_images

    signer = srv.app[SIGNER_KEY]
    box = (13.4141, 52.5141, 13.4158, 52.5158)
    expected = truth(srv, box)
    refused: set[str] = set()
    real_verify = signer.verify

    def verify_once_refused(image_id: str, *a: Any, **k: Any) -> bool:
        if image_id in expected and image_id not in refused:
            refused.add(image_id)
            return False
        return bool(real_verify(image_id, *a, **k))

    async def run() -> Any:
        async with Transport(srv.endpoints, Secret(srv.token)) as t:
            return await download_images(t, box, tmp_path / "out", size="256")

    signer.verify = verify_once_refused
    try:
        res = asyncio.run(run())
    finally:
        del signer.verify
    assert res.downloaded == len(expected) and not res.failures
    assert refused == set(expected)
    assert res.resolves == len(expected)
    assert files(tmp_path / "out") == expected


def test_timeouts_are_survived(srv: Any, tmp_path: Path) -> None:
    """The server stalls past the client's timeout for a while, then recovers."""
    from amly.net.retry import RetryPolicy
    from amly.services.mapillary.download import download_images

    box = (13.4171, 52.5171, 13.4185, 52.5185)
    expected = truth(srv, box)
    assert expected

    async def run() -> Any:
        policy = RetryPolicy(base_delay=0.2, max_delay=1.0, max_attempts=12)
        async with Transport(srv.endpoints, Secret(srv.token), timeout=0.5, policy=policy) as t:
            loop = asyncio.get_running_loop()
            srv.faults.latency_ms = 2000
            loop.call_later(1.5, setattr, srv.faults, "latency_ms", 0)
            res = await download_images(t, box, tmp_path / "out", size="256")
            return res, t.stats["retries"]

    try:
        res, retries = asyncio.run(run())
    finally:
        srv.faults.latency_ms = 0
    assert retries > 0 and res.downloaded == len(expected) and not res.failures
    assert files(tmp_path / "out") == expected


def test_search_splits_by_time_when_a_minimal_cell_is_full(srv: Any, tmp_path: Path) -> None:
    w, s, e, n = DENSE
    box = (w, s, w + (e - w) / 2, s + (n - s) / 2)  # a quarter of the dense cell
    expected = truth(srv, box)
    out = tmp_path / "out"
    r = amly(srv, tmp_path, "download", "images", "--bbox", bbox_arg(box), "--size", "256",
             "--out", str(out), "--method", "search", "--search-limit", "40", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    enum = summary(r)["enumeration"]
    assert enum["time_splits"] > 0 and enum["truncated_cells"] == 0
    assert files(out) == expected
