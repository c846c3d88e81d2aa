"""Vector tiles of the local server over real sockets, decoded with mapbox_vector_tile."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any

import mapbox_vector_tile
import pytest

from amly.config import CLIENT_TOKEN_DEFAULT
from amly.geo import tile, tiles
from amly.server.seed import seed_store
from amly.server.store import Store
from amly.server.testing import running_server
from amly.server.tiles import EXTENT, pixel

AREA = (13.40, 52.50, 13.43, 52.52)  # spans a few z14 tiles


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("tiles")
    store = Store(d)
    seed_store(store, 2000, AREA, sequences=8, dense_cell=(13.41, 52.51, 13.412, 52.512),
               dense_images=600, seed=5)  # fmt: skip
    rows = store.db.execute(
        "SELECT i.id, i.sequence_id, i.lon, i.lat, c.lon AS c_lon, c.lat AS c_lat,"
        " i.organization_id, i.is_pano, i.captured_at, i.compass_angle"
        " FROM images i JOIN images_computed c ON c.id = i.id"
    ).fetchall()
    store.close()
    with running_server(d) as s:
        s.rows = {r["id"]: r for r in rows}  # type: ignore[attr-defined]
        yield s


def fetch(srv: Any, z: int, x: int, y: int, *, tileset: str = "mly1_public",
          token: str | None = None, header: bool = False) -> tuple[int, bytes]:  # fmt: skip
    url = f"{srv.url}/tiles/maps/vtp/{tileset}/2/{z}/{x}/{y}"
    headers = {}
    if header:
        headers["Authorization"] = f"OAuth {token or srv.token}"
    else:
        url += "?" + urllib.parse.urlencode({"access_token": token or CLIENT_TOKEN_DEFAULT})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
            assert r.headers["Content-Type"] == "application/x-protobuf"
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def decode(data: bytes) -> dict[str, Any]:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def test_z14_image_layer_has_exactly_the_tiles_images(srv: Any) -> None:
    seen: Counter[str] = Counter()
    for x, y, z in tiles(AREA, 14):
        status, data = fetch(srv, z, x, y)
        assert status == 200
        layers = decode(data)
        want = {i for i, r in srv.rows.items() if tile(r["lon"], r["lat"], 14) == (x, y, z)}
        got = {str(f["properties"]["id"]) for f in layers.get("image", {}).get("features", [])}
        assert got == want
        seen.update(got)
        for f in layers.get("image", {}).get("features", []):
            p, r = f["properties"], srv.rows[str(f["properties"]["id"])]
            assert p["sequence_id"] == r["sequence_id"] and p["captured_at"] == r["captured_at"]
            assert p["is_pano"] == bool(r["is_pano"])
            assert abs(p["compass_angle"] - r["compass_angle"]) < 1e-6
            assert ("organization_id" in p) == (r["organization_id"] is not None)
            px, py = pixel(r["lon"], r["lat"], x, y, z)
            assert f["geometry"]["coordinates"] == [round(px), round(py)]
            assert 0 <= px <= EXTENT and 0 <= py <= EXTENT
    # Every image in exactly one z14 tile, none capped (the dense cell has 600 in one tile).
    assert set(seen) == set(srv.rows) and max(seen.values()) == 1


def test_sequence_and_overview_layers(srv: Any) -> None:
    x, y, z = tile(13.415, 52.51, 10)
    status, data = fetch(srv, z, x, y, header=True)
    layers = decode(data)
    assert status == 200 and set(layers) == {"sequence"}
    seqs = {f["properties"]["id"] for f in layers["sequence"]["features"]}
    assert seqs == {r["sequence_id"] for r in srv.rows.values()}
    for f in layers["sequence"]["features"]:
        assert f["geometry"]["type"] in ("LineString", "MultiLineString")
        assert str(f["properties"]["image_id"]) in srv.rows
    x, y, z = tile(13.415, 52.51, 3)
    layers = decode(fetch(srv, z, x, y)[1])
    assert set(layers) == {"overview"}
    assert {f["properties"]["sequence_id"] for f in layers["overview"]["features"]} == seqs
    # z14 has both layers; a tile far away is empty.
    x, y, z = tile(13.411, 52.511, 14)
    assert set(decode(fetch(srv, z, x, y)[1])) == {"sequence", "image"}
    status, data = fetch(srv, 14, 0, 0)
    assert status == 200 and decode(data) == {}


def test_computed_tileset_uses_computed_positions(srv: Any) -> None:
    x, y, z = tile(13.411, 52.511, 14)
    layers = decode(fetch(srv, z, x, y, tileset="mly1_computed_public")[1])
    feats = layers["image"]["features"]
    assert len(feats) >= 600
    moved = 0
    for f in feats:
        r = srv.rows[str(f["properties"]["id"])]
        px, py = pixel(r["c_lon"], r["c_lat"], x, y, z)
        assert f["geometry"]["coordinates"] == [round(px), round(py)]
        raw = pixel(r["lon"], r["lat"], x, y, z)
        moved += [round(raw[0]), round(raw[1])] != f["geometry"]["coordinates"]
    assert moved > len(feats) / 2


def test_tile_errors(srv: Any) -> None:
    assert fetch(srv, 14, 8802, 5373, token="MLY|1|bad")[0] == 401
    assert fetch(srv, 14, 8802, 5373, token="MLY|1|bad", header=True)[0] == 401
    assert fetch(srv, 15, 0, 0)[0] == 404
    assert fetch(srv, 2, 4, 0)[0] == 404
    assert fetch(srv, 14, 8802, 5373, tileset="mly1_private")[0] == 404
