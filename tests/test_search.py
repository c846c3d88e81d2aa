"""Enumeration logic (amly.services.mapillary: tiles, search): tile decoding, edge dedup, cell splitting on full
responses, time splitting of minimal cells, unsafe ids. A fake transport stands in for the
server here (exact, scriptable truncation); tests/test_download.py runs against the real one."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timezone
from typing import Any

import mapbox_vector_tile
import pytest

from amly.geo import tile, tile_bounds, tiles
from amly.server.tiles import pixel
from amly.services.mapillary.query import (
    Filters,
    SearchReport,
    UnsafeId,
    check_image_id,
    check_sequence_id,
    in_bbox,
)
from amly.services.mapillary.search import search_candidates
from amly.services.mapillary.tiles import decode_image_tile, tile_candidates


class FakeTransport:
    """Answers ``/images`` bbox searches over an in-memory point list with the service's rule:
    at most ``limit`` results, truncated arbitrarily when more match; serves z14 tiles."""

    def __init__(self, points: list[dict[str, Any]], *, bad_tile_ids: tuple[Any, ...] = ()):
        self.points = points
        self.bad_tile_ids = bad_tile_ids
        self.searches = 0
        self.stats = {"bytes_received": 0}
        from amly.config import Endpoints

        self.endpoints = Endpoints.local("http://127.0.0.1:1")

    async def graph_get(self, path: str, params: dict[str, str], *, surface: str) -> Any:
        assert path == "images" and surface == "search"
        self.searches += 1
        w, s, e, n = (float(v) for v in params["bbox"].split(","))
        assert e - w < 0.01 and n - s < 0.01, "cell too large for the service"
        lo = _ms(params.get("start_captured_at"), 0)
        hi = _ms(params.get("end_captured_at"), 10**15)
        hits = [
            p
            for p in self.points
            if w <= p["lon"] <= e and s <= p["lat"] <= n and lo <= p["t"] <= hi
        ]
        random.Random(self.searches).shuffle(hits)
        limit = int(params["limit"])
        return {"data": [_entity(p) for p in hits[:limit]]}

    async def request(self, method: str, url: str, **kw: Any) -> bytes:
        z, x, y = (int(v) for v in url.rsplit("/", 3)[1:])
        feats = []
        for p in self.points:
            if tile(p["lon"], p["lat"], z)[:2] == (x, y):
                px, py = pixel(p["lon"], p["lat"], x, y, z)
                feats.append(
                    {
                        "geometry": f"POINT({px} {py})",
                        "properties": {
                            "id": int(p["id"]),
                            "sequence_id": p["seq"],
                            "captured_at": p["t"],
                        },
                    }
                )
        first = self.points[0]
        if tile(first["lon"], first["lat"], z)[:2] == (x, y):
            px, py = pixel(first["lon"], first["lat"], x, y, z)
            for bad in self.bad_tile_ids:  # unsafe ids next to a real image
                feats.append(
                    {"geometry": f"POINT({px} {py})", "properties": {"id": bad, "sequence_id": "s"}}
                )
        if not feats:
            return b""
        return bytes(
            mapbox_vector_tile.encode(
                [{"name": "image", "features": feats}],
                default_options={"extents": 4096, "y_coord_down": True},
            )
        )


def _ms(text: str | None, default: int) -> int:
    if text is None:
        return default
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _entity(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["id"],
        "sequence": p["seq"],
        "captured_at": p["t"],
        "geometry": {"type": "Point", "coordinates": [p["lon"], p["lat"]]},
    }


def _points(n: int, box: tuple[float, float, float, float], seed: int, t0: int = 1.6e12) -> list:
    rnd = random.Random(seed)
    w, s, e, nn = box
    return [
        {
            "id": str(10**15 + seed * 10**6 + i),
            "seq": f"seq{seed}_{i // 100}",
            "lon": rnd.uniform(w, e),
            "lat": rnd.uniform(s, nn),
            "t": int(t0) + i * 1000,
        }
        for i in range(n)
    ]


def _collect(agen: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [c async for c in agen]

    return asyncio.run(run())


BOX = (13.40, 52.50, 13.425, 52.52)


def test_ids_are_checked() -> None:
    assert check_image_id(123) == "123"
    for bad in ("../x", "12/34", "", " 1", "1\n", True, None, 1.5, "a1"):
        with pytest.raises(UnsafeId):
            check_image_id(bad)
    assert check_sequence_id("A-z_09") == "A-z_09"
    for bad in ("../../etc", "a/b", "", "x" * 65, ".", 5, "a b"):
        with pytest.raises(UnsafeId):
            check_sequence_id(bad)


def test_tile_decoding_roundtrip_is_within_a_tile_unit() -> None:
    x, y, z = tile(13.4051, 52.5101, 14)
    w, s, e, n = tile_bounds(x, y, z)
    lon, lat = w + (e - w) * 0.3, s + (n - s) * 0.7
    px, py = pixel(lon, lat, x, y, z)
    pbf = mapbox_vector_tile.encode(
        [
            {
                "name": "image",
                "features": [{"geometry": f"POINT({px} {py})", "properties": {"id": 5}}],
            }
        ],
        default_options={"extents": 4096, "y_coord_down": True},
    )
    [(props, dlon, dlat, edge)] = decode_image_tile(pbf, x, y, z)
    assert props["id"] == 5 and not edge
    assert abs(dlon - lon) <= (e - w) / 4096 and abs(dlat - lat) <= (n - s) / 4096


def test_filters() -> None:
    f = Filters(
        start=datetime(2020, 1, 1, tzinfo=timezone.utc),
        end=datetime(2020, 12, 31, tzinfo=timezone.utc),
        username="bob",
        is_pano=True,
        organization_id="42",
    )
    ok = {"captured_at": 1590000000000, "creator": {"username": "bob"}, "is_pano": True}
    assert f.matches(ok)
    assert not f.matches({**ok, "creator": {"username": "eve"}})
    assert not f.matches({**ok, "is_pano": False})
    assert not f.matches({**ok, "captured_at": 1500000000000})
    assert not f.matches({**ok, "organization_id": 7})
    assert f.matches({"captured_at": 1590000000000, "is_pano": True}, partial=True)
    assert not f.matches({"captured_at": 1590000000000, "is_pano": True})
    assert f.search_params()["creator_username"] == "bob"


def test_search_splits_full_cells_and_finds_everything() -> None:
    # Sparse points everywhere + a dense patch far above the limit inside one small cell.
    pts = _points(600, BOX, 1) + _points(900, (13.4031, 52.5031, 13.4033, 52.5033), 2)
    fake = FakeTransport(pts)
    rep = SearchReport()
    got = _collect(search_candidates(fake, BOX, Filters(), rep, limit=100))  # type: ignore[arg-type]
    ids = [c.id for c in got]
    assert len(ids) == len(set(ids)), "an image came back twice"
    assert set(ids) == {p["id"] for p in pts if in_bbox(p["lon"], p["lat"], BOX)}
    assert rep.splits > 0 and not rep.truncated


def test_minimal_cell_splits_by_time_then_reports() -> None:
    # 300 images on (nearly) one spot: only time splitting can separate them.
    spot = (13.41, 52.51, 13.41000001, 52.51000001)
    pts = _points(300, spot, 3)
    fake = FakeTransport(pts)
    rep = SearchReport()
    got = _collect(search_candidates(fake, BOX, Filters(), rep, limit=50))  # type: ignore[arg-type]
    assert {c.id for c in got} == {p["id"] for p in pts} and len(got) == 300
    assert rep.time_splits > 0 and not rep.truncated
    # Same instant for all: nothing can split them; the cell is reported, not dropped silently.
    same = [dict(p, t=1_600_000_000_000) for p in pts[:120]]
    rep2 = SearchReport()
    got2 = _collect(search_candidates(FakeTransport(same), BOX, Filters(), rep2, limit=50))  # type: ignore[arg-type]
    assert rep2.truncated and 0 < len(got2) < 120


def test_tiles_find_everything_once_and_reject_unsafe_ids() -> None:
    pts = _points(2000, BOX, 4)
    fake = FakeTransport(pts, bad_tile_ids=("../../x", "12ab"))
    rep = SearchReport()
    got = _collect(tile_candidates(fake, BOX, Filters(), rep))  # type: ignore[arg-type]
    ids = [c.id for c in got]
    assert len(ids) == len(set(ids)) == 2000
    assert set(ids) == {p["id"] for p in pts}
    assert len(rep.rejected) == 2
    assert rep.tiles == len(tiles(BOX, 14))


def test_lazy_grids_match_geo() -> None:
    from amly.geo import split_bbox
    from amly.services.mapillary.search import _cell_rows
    from amly.services.mapillary.tiles import _tile_rows

    rnd = random.Random(5)
    boxes = [BOX, (-180.0, -85.0, 180.0, 85.0), (13.4, 52.5, 13.4 + 0.0198, 52.5 + 0.0297)]
    for _ in range(30):
        w, s = rnd.uniform(-179, 170), rnd.uniform(-80, 75)
        boxes.append((w, s, w + rnd.uniform(1e-5, 0.3), s + rnd.uniform(1e-5, 0.3)))
    for b in boxes:
        world = b[2] - b[0] > 100
        side = 1.0 if world else 0.0099
        assert list(_cell_rows(b, side)) == split_bbox(b, side)
        zoom = 2 if world else 14
        assert list(_tile_rows(b, zoom)) == tiles(b, zoom)


def test_fanout_pulls_seeds_lazily_and_splits_depth_first() -> None:
    import itertools

    from amly.net.flow import fanout

    pulled = 0

    def seeds() -> Any:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield (i, 0)

    async def handle(item: tuple[int, int]) -> tuple[list[Any], list[tuple[int, int]]]:
        await asyncio.sleep(0)
        i, depth = item
        if depth < 2:  # every seed splits twice: 1 + 2 + 4 items, 4 results
            return [], [(i, depth + 1), (i, depth + 1)]
        return [item], []

    async def first(n: int) -> list[Any]:
        got = []
        async for r in fanout(seeds(), handle, concurrency=4, buffer=8):
            got.append(r)
            if len(got) == n:
                break
        return got

    got = asyncio.run(first(40))  # an endless seed list: must not hang or grow
    assert len(got) == 40 and pulled < 100

    async def finite() -> list[Any]:
        return [r async for r in fanout([(1, 0), (2, 0), (3, 1)], handle, concurrency=3, buffer=2)]

    assert sorted(asyncio.run(finite())) == [(1, 2)] * 4 + [(2, 2)] * 4 + [(3, 2)] * 2
