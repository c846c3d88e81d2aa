"""The server's read side over real sockets: image search, entities, image_ids, thumbnails."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from amly.server import thumbs
from amly.server.seed import seed_store
from amly.server.store import Store
from amly.server.testing import running_server

AREA = (13.40, 52.50, 13.45, 52.53)
DENSE = (13.402, 52.502, 13.404, 52.504)  # inside AREA, 2500 images
CELL = (13.4015, 52.5015, 13.4045, 52.5045)  # a legal search box around DENSE


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("read")
    store = Store(d)
    summary = seed_store(store, 3000, AREA, dense_cell=DENSE, dense_images=2500, seed=3)
    store.close()
    with running_server(d) as s:
        s.summary = summary  # type: ignore[attr-defined]
        yield s


def get(srv: Any, path: str, token: str | None = None, **params: Any) -> tuple[int, Any]:
    url = path if path.startswith("http") else srv.url + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, headers={"Authorization": f"OAuth {token or srv.token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def bbox_str(b: tuple[float, ...]) -> str:
    return ",".join(map(str, b))


def db_rows(srv: Any, sql: str, *args: Any) -> list[Any]:
    store = Store(srv.store_dir)
    try:
        return store.db.execute(sql, args).fetchall()
    finally:
        store.close()


def test_bbox_rule(srv: Any) -> None:
    for box in [(13.40, 52.50, 13.41, 52.505), (13.40, 52.50, 13.405, 52.52), (1, 2, 3)]:
        status, body = get(srv, "/images", bbox=bbox_str(box))
        assert status == 400
        assert body["error"]["code"] == 100
    status, body = get(srv, "/images", bbox="13.40,52.50,13.41,52.505")
    assert "smaller than 0.01" in body["error"]["message"]
    status, body = get(srv, "/images", fields="id")
    assert status == 400 and "required" in body["error"]["message"]
    status, _ = get(srv, "/images", bbox="13.400,52.500,13.4099,52.5099")
    assert status == 200


def test_bbox_matches_database(srv: Any) -> None:
    box = (13.420, 52.510, 13.4299, 52.5199)
    status, body = get(srv, "/images", bbox=bbox_str(box), fields="geometry")
    assert status == 200
    want = {
        r["id"]
        for r in db_rows(
            srv,
            "SELECT id FROM images WHERE lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?",
            box[0], box[2], box[1], box[3],
        )
    }  # fmt: skip
    assert 0 < len(want) < 2000
    assert {d["id"] for d in body["data"]} == want
    for d in body["data"]:
        lon, lat = d["geometry"]["coordinates"]
        assert box[0] <= lon <= box[2] and box[1] <= lat <= box[3]
        assert set(d) == {"id", "geometry"}


def test_limit_truncates_without_paging(srv: Any) -> None:
    status, body = get(srv, "/images", bbox=bbox_str(CELL), fields="geometry")
    assert status == 200
    assert len(body["data"]) == 2000  # > 2500 inside: truncated to the limit
    assert "paging" not in body
    status, small = get(srv, "/images", bbox=bbox_str(CELL), limit=100)
    assert len(small["data"]) == 100
    # Deterministic, and biased to the edges: the centre of the dense box goes missing.
    again = get(srv, "/images", bbox=bbox_str(CELL), limit=100)[1]
    assert [d["id"] for d in again["data"]] == [d["id"] for d in small["data"]]
    total = db_rows(
        srv,
        "SELECT count(*) FROM images WHERE lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?",
        CELL[0], CELL[2], CELL[1], CELL[3],
    )[0][0]  # fmt: skip
    assert total > 2000
    assert get(srv, "/images", bbox=bbox_str(CELL), limit=2001)[0] == 400


def test_fields(srv: Any) -> None:
    fields = sorted(read_fields())
    status, body = get(
        srv, "/images", bbox="13.420,52.510,13.4299,52.5199", fields=",".join(fields), limit=5
    )
    assert status == 200 and len(body["data"]) == 5
    d = body["data"][0]
    assert set(d) == set(fields) | {"id"}
    assert isinstance(d["captured_at"], int) and d["captured_at"] > 1_500_000_000_000
    assert d["geometry"]["type"] == "Point" and len(d["geometry"]["coordinates"]) == 2
    assert d["computed_geometry"]["coordinates"] != d["geometry"]["coordinates"]
    assert set(d["creator"]) == {"username", "id"}
    assert isinstance(d["is_pano"], bool) and isinstance(d["width"], int)
    assert d["thumb_1024_url"].startswith(srv.url + "/cdn/" + d["id"] + "/1024?exp=")
    status, body = get(srv, "/images", bbox="13.420,52.510,13.4299,52.5199", fields="thumb_640_url")
    assert status == 400 and "thumb_640_url" in body["error"]["message"]


def read_fields() -> set[str]:
    from amly.server.read import FIELDS

    return set(FIELDS)


def test_filters(srv: Any) -> None:
    box = "13.420,52.510,13.4299,52.5199"
    _, all_ = get(srv, "/images", bbox=box, fields="captured_at,is_pano,sequence")
    times = sorted(d["captured_at"] for d in all_["data"])
    mid = times[len(times) // 2]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mid / 1000))
    _, late = get(srv, "/images", bbox=box, fields="captured_at", start_captured_at=iso)
    assert late["data"] and all(d["captured_at"] >= mid // 1000 * 1000 for d in late["data"])
    _, early = get(srv, "/images", bbox=box, fields="captured_at", end_captured_at=iso)
    assert len(early["data"]) + len(late["data"]) >= len(all_["data"])
    _, pano = get(srv, "/images", bbox=box, fields="is_pano", is_pano="true")
    assert all(d["is_pano"] for d in pano["data"])
    seq = all_["data"][0]["sequence"]
    _, by_seq = get(srv, "/images", sequence_id=seq, fields="sequence,captured_at")
    assert by_seq["data"] and all(d["sequence"] == seq for d in by_seq["data"])
    got = [d["captured_at"] for d in by_seq["data"]]
    assert got == sorted(got)
    org = db_rows(srv, "SELECT organization_id FROM images WHERE organization_id IS NOT NULL")
    org_id = org[0][0]
    _, by_org = get(srv, "/images", organization_id=org_id, limit=50)
    ids = {d["id"] for d in by_org["data"]}
    want = {r[0] for r in db_rows(srv, "SELECT id FROM images WHERE organization_id=?", org_id)}
    assert len(ids) == min(50, len(want)) and ids <= want


def test_creator_pagination(srv: Any) -> None:
    user = srv.summary["users"][0]
    want = [
        r[0]
        for r in db_rows(
            srv,
            "SELECT i.id FROM images i JOIN users u ON u.id = i.user_id WHERE u.username = ?"
            " ORDER BY i.captured_at, i.id",
            user,
        )
    ]
    assert len(want) > 700
    seen: list[str] = []
    status, body = get(srv, "/images", creator_username=user, limit=300, fields="creator")
    pages = 1
    while True:
        assert status == 200
        seen += [d["id"] for d in body["data"]]
        assert all(d["creator"]["username"] == user for d in body["data"])
        nxt = body["paging"].get("next")
        if not nxt:
            break
        assert nxt.startswith(srv.url + "/images?")
        status, body = get(srv, nxt)  # verbatim
        pages += 1
    assert seen == want and pages == -(-len(want) // 300)
    status, body = get(srv, "/images", creator_username=user, after="!!bad")
    assert status == 400


def test_entity_and_image_ids(srv: Any) -> None:
    row = db_rows(srv, "SELECT id, sequence_id, lon, lat, captured_at FROM images LIMIT 1")[0]
    status, body = get(srv, f"/{row['id']}", fields="geometry,captured_at,sequence")
    assert status == 200
    assert body == {
        "id": row["id"],
        "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
        "captured_at": row["captured_at"],
        "sequence": row["sequence_id"],
    }
    assert get(srv, f"/{row['id']}")[1] == {"id": row["id"]}
    for bad in ["/1234", "/abc", "/12a"]:
        status, body = get(srv, bad)
        assert status == 404 and body["error"]["code"] == 100
    status, body = get(srv, "/image_ids", sequence_id=row["sequence_id"])
    want = [
        r[0]
        for r in db_rows(
            srv,
            "SELECT id FROM images WHERE sequence_id=? ORDER BY captured_at",
            row["sequence_id"],
        )
    ]
    assert status == 200 and [d["id"] for d in body["data"]] == want and len(want) > 1


def test_bad_auth(srv: Any) -> None:
    for path in ["/images?bbox=13.42,52.51,13.425,52.515", "/image_ids?sequence_id=x", "/1"]:
        status, body = get(srv, path, token="MLY|1|nope")
        assert status == 401 and body["error"]["code"] == 190


def test_search_timeouts_injected(srv: Any) -> None:
    srv.faults.search_timeout_rate = 1.0
    try:
        status, body = get(srv, "/images", bbox="13.42,52.51,13.425,52.515")
        assert status == 400 and body["error"]["error_subcode"] == 3404014
        assert body["error"]["is_transient"] is True
    finally:
        srv.faults.search_timeout_rate = 0.0
    assert get(srv, "/images", bbox="13.42,52.51,13.425,52.515")[0] == 200


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_thumbnails_signed_and_expiring(srv: Any) -> None:
    box = "13.420,52.510,13.4299,52.5199"
    fields = "thumb_256_url,thumb_1024_url,thumb_original_url,width,height"
    _, body = get(srv, "/images", bbox=box, fields=fields, limit=2)
    a, b = body["data"]
    import io

    from PIL import Image

    status, jpg = fetch(a["thumb_256_url"])  # no token needed: the URL is signed
    assert status == 200 and jpg[:2] == b"\xff\xd8"
    im = Image.open(io.BytesIO(jpg))
    assert im.width == 256 and "exif" not in im.info
    status, orig = fetch(a["thumb_original_url"])
    assert Image.open(io.BytesIO(orig)).size == (a["width"], a["height"])
    assert fetch(b["thumb_256_url"])[1] != jpg  # every image's bytes differ
    # Tampered signature or another image's signature: 403.
    assert fetch(a["thumb_256_url"][:-4] + "0000")[0] == 403
    sig_b = b["thumb_256_url"].split("?", 1)[1]
    assert fetch(a["thumb_256_url"].split("?", 1)[0] + "?" + sig_b)[0] == 403
    signer = srv.app[thumbs.SIGNER_KEY]
    old = signer.ttl
    signer.ttl = 1
    try:
        _, body = get(srv, f"/{a['id']}", fields="thumb_1024_url")
    finally:
        signer.ttl = old
    assert fetch(body["thumb_1024_url"])[0] == 200
    time.sleep(2.1)
    assert fetch(body["thumb_1024_url"])[0] == 403


def test_uploaded_image_thumbnails(srv: Any, tmp_path: Path) -> None:
    """An image with a stored file: original = the file, smaller sizes = resized, no EXIF."""
    import io

    from PIL import Image

    from amly.synth import DrivePlan, drive, write_photos

    pts = drive(DrivePlan(n=1))
    write_photos(tmp_path, pts, size=(640, 360))
    src = next(tmp_path.glob("*.jpg"))
    row = db_rows(srv, "SELECT id FROM images LIMIT 1 OFFSET 7")[0]
    dest = srv.store_dir / "images" / f"{row['id']}.jpg"
    dest.write_bytes(src.read_bytes())

    def set_path() -> None:
        from amly.server.auth import STORE_KEY

        srv.app[STORE_KEY].db.execute(
            "UPDATE images SET path=?, width=640, height=360 WHERE id=?",
            (f"images/{row['id']}.jpg", row["id"]),
        )

    srv.call(set_path)
    _, body = get(srv, f"/{row['id']}", fields="thumb_256_url,thumb_original_url")
    assert fetch(body["thumb_original_url"]) == (200, src.read_bytes())
    status, small = fetch(body["thumb_256_url"])
    im = Image.open(io.BytesIO(small))
    assert status == 200 and im.size == (256, 144) and "exif" not in im.info
    assert (srv.store_dir / "thumbs" / f"{row['id']}_256.jpg").exists()


def test_index_backfilled_for_old_stores(tmp_path: Path) -> None:
    """A data dir written before the spatial index existed is searchable after a restart."""
    store = Store(tmp_path)
    seed_store(store, 200, (13.40, 52.50, 13.405, 52.505), seed=1)
    store.db.execute("DELETE FROM images_rtree")
    store.close()
    with running_server(tmp_path) as s:
        status, body = get(s, "/images", bbox="13.40,52.50,13.4099,52.5099")
    assert status == 200 and len(body["data"]) == 200


def test_uploaded_sequence_is_searchable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round trip: images uploaded with amly's client show up in search, entities, image_ids,
    tiles, and their original thumbnails are the uploaded bytes (with the description)."""
    import asyncio

    import mapbox_vector_tile

    from amly.client import Client
    from amly.geo import tile
    from amly.synth import DrivePlan, drive, write_photos

    monkeypatch.setenv("AMLY_HOME", str(tmp_path / "home"))
    photos = tmp_path / "photos"
    pts = drive(DrivePlan(n=5, start_lat=48.1, start_lon=11.5, seed=2))
    write_photos(photos, pts, size=(320, 240))

    with running_server(tmp_path / "data") as s:

        async def upload() -> Any:
            async with Client(s.url, s.token) as c:
                return await c.upload([photos])

        result = asyncio.run(upload())
        assert not result.failures
        box = "11.495,48.095,11.5049,48.1049"
        fields = "geometry,captured_at,sequence,creator,width,height,thumb_original_url"
        status, body = get(s, "/images", bbox=box, fields=fields)
        assert status == 200 and len(body["data"]) == 5
        got = sorted(body["data"], key=lambda d: d["captured_at"])
        for d, p in zip(got, pts, strict=True):
            assert d["captured_at"] == round(p.time.timestamp() * 1000)
            lon, lat = d["geometry"]["coordinates"]
            assert abs(lon - p.lon) < 1e-6 and abs(lat - p.lat) < 1e-6
            assert d["creator"]["username"] == "amly-user" and d["width"] == 320
        status, original = fetch(got[0]["thumb_original_url"])
        assert status == 200 and b'"MAPCaptureTime"' in original
        ids = get(s, "/image_ids", sequence_id=got[0]["sequence"])[1]
        assert [d["id"] for d in ids["data"]] == [d["id"] for d in got]
        x, y, z = tile(pts[0].lon, pts[0].lat, 14)
        url = f"{s.url}/tiles/maps/vtp/mly1_public/2/{z}/{x}/{y}"
        req = urllib.request.Request(url, headers={"Authorization": f"OAuth {s.token}"})
        with urllib.request.urlopen(req) as r:
            layers = mapbox_vector_tile.decode(r.read())
        tile_ids = {str(f["properties"]["id"]) for f in layers["image"]["features"]}
        assert {
            d["id"] for d in got if tile(*d["geometry"]["coordinates"], 14) == (x, y, z)
        } == tile_ids


def test_rate_limits_and_errors_injected_on_read_routes(srv: Any) -> None:
    srv.faults.rate_limit_every = 2
    try:
        statuses = [get(srv, "/images", bbox="13.42,52.51,13.425,52.515")[0] for _ in range(4)]
        statuses += [get(srv, "/image_ids", sequence_id="x")[0] for _ in range(2)]
    finally:
        srv.faults.rate_limit_every = 0
    assert statuses.count(429) == 3 and statuses.count(200) == 3
    srv.faults.error_rate = 1.0
    try:
        status, body = get(srv, "/images", bbox="13.42,52.51,13.425,52.515")
    finally:
        srv.faults.error_rate = 0.0
    assert status == 503 and body["error"]["is_transient"] is True
