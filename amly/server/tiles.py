"""Mapillary-style vector tiles (Mapbox Vector Tile, extent 4096) of the server's images.

``GET /tiles/maps/vtp/{mly1_public|mly1_computed_public}/2/{z}/{x}/{y}`` with layers:

- ``overview`` (z0-5): one point per sequence (its first image).
- ``sequence`` (z6-14): one line per sequence through the tile (pieces where it leaves and
  re-enters), properties ``id`` (sequence id), ``image_id``, ``captured_at``,
  ``organization_id`` (when set), ``is_pano``, ``creator_id``.
- ``image`` (z14 only): every image of the tile, no cap (properties ``id``, ``sequence_id``,
  ``captured_at``, ``compass_angle``, ``organization_id`` when set, ``is_pano``,
  ``creator_id``). An image belongs to exactly the tile :func:`amly.geo.tile` names, so a
  client enumerating tiles sees each image once.

``mly1_computed_public`` places features at computed (corrected) positions and angles.
Tiles accept ``Authorization: OAuth`` or ``?access_token=`` (the auth middleware's rule).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from typing import Any

import mapbox_vector_tile
from aiohttp import web

from ..geo import mercator, tile, tile_bounds
from ..types import BBox
from .auth import STORE_KEY
from .responses import graph_error

__all__ = ["EXTENT", "TILESETS", "add_routes", "pixel", "render_tile", "stride", "tile_rows"]

EXTENT = 4096
TILESETS = ("mly1_public", "mly1_computed_public")
MAX_ZOOM = 14
#: Lines are drawn from images up to this fraction of a tile outside it (then clipped by
#: the renderer), so a road crossing the tile between two photos still shows.
BUFFER = 1 / 16
#: Computed positions differ from the indexed ones by metres: widen the index query by this.
COMPUTED_MARGIN = 0.001


def pixel(lon: float, lat: float, x: int, y: int, z: int) -> tuple[float, float]:
    """Web-mercator position inside tile ``(x, y, z)`` in tile pixels (y down, 0..EXTENT).

    >>> pixel(0.0, 0.0, 0, 0, 0)
    (2048.0, 2048.0)
    >>> pixel(-180.0, 0.0, 1, 1, 1)
    (-4096.0, 0.0)
    """
    wx, wy = mercator(lon, lat, z)
    return (wx - x) * EXTENT, (wy - y) * EXTENT


_COLS = (
    "i.id, i.sequence_id, i.seq_index, i.user_id, i.organization_id, i.captured_at, i.is_pano,"
    " COALESCE(c.lon, i.lon) AS c_lon, COALESCE(c.lat, i.lat) AS c_lat, i.lon, i.lat,"
    " i.compass_angle, COALESCE(c.compass_angle, i.compass_angle) AS c_compass_angle"
)


def stride(z: int) -> int:
    """Every how many images a sequence line keeps at zoom ``z``: photos ~15 m apart are
    below a pixel apart from z8 down, so low zooms draw lines through a sample.

    >>> [stride(z) for z in (14, 12, 10, 8, 6)]
    [1, 1, 4, 16, 64]
    """
    return 2 ** max(0, 12 - z)


def tile_rows(db: sqlite3.Connection, bbox: BBox, *, every: int = 1) -> list[sqlite3.Row]:
    """Images whose indexed position is inside ``bbox`` (R*Tree; bounds re-checked by callers),
    by sequence and capture order; only every ``every``-th image of a sequence."""
    w, s, e, n = bbox
    return db.execute(
        f"SELECT {_COLS} FROM images_rtree r JOIN images i ON i.id = CAST(r.rid AS TEXT)"
        " LEFT JOIN images_computed c ON c.id = i.id"
        " WHERE r.max_lon >= ? AND r.min_lon <= ? AND r.max_lat >= ? AND r.min_lat <= ?"
        " AND i.seq_index % ? = 0 ORDER BY i.sequence_id, i.seq_index",
        (w, e, s, n, every),
    ).fetchall()


def _first_images(db: sqlite3.Connection) -> list[sqlite3.Row]:
    return db.execute(
        f"SELECT {_COLS} FROM images i"
        " JOIN (SELECT sequence_id, MIN(seq_index) AS m FROM images GROUP BY sequence_id) f"
        " ON f.sequence_id = i.sequence_id AND f.m = i.seq_index"
        " LEFT JOIN images_computed c ON c.id = i.id"
    ).fetchall()


def _props(r: sqlite3.Row, **extra: Any) -> dict[str, Any]:
    p = {**extra, "captured_at": r["captured_at"], "is_pano": bool(r["is_pano"])}
    if r["organization_id"] is not None:
        p["organization_id"] = int(r["organization_id"])
    p["creator_id"] = int(r["user_id"]) if str(r["user_id"]).isdigit() else r["user_id"]
    return p


def _lines(
    rows: Iterable[sqlite3.Row], x: int, y: int, z: int, computed: bool, every: int = 1
) -> list[Any]:
    """One feature per sequence: runs of consecutive images, duplicate pixels dropped."""
    from shapely.geometry import LineString, MultiLineString

    by_seq: dict[str, list[sqlite3.Row]] = {}
    for r in rows:
        by_seq.setdefault(r["sequence_id"], []).append(r)
    feats = []
    lon_k, lat_k = ("c_lon", "c_lat") if computed else ("lon", "lat")
    for sid, seq in by_seq.items():
        runs: list[list[tuple[int, int]]] = []
        prev_index = None
        for r in seq:
            px, py = pixel(r[lon_k], r[lat_k], x, y, z)
            pt = (round(px), round(py))
            if prev_index is None or r["seq_index"] != prev_index + every:
                runs.append([pt])
            elif runs[-1][-1] != pt:
                runs[-1].append(pt)
            prev_index = r["seq_index"]
        parts = [run for run in runs if len(run) >= 2]
        if not parts:
            continue
        geom = LineString(parts[0]) if len(parts) == 1 else MultiLineString(parts)
        feats.append(
            {"geometry": geom, "properties": _props(seq[0], id=sid, image_id=int(seq[0]["id"]))}
        )
    return feats


def render_tile(db: sqlite3.Connection, tileset: str, z: int, x: int, y: int) -> bytes:
    """The encoded tile (blocking: run it off the event loop for low zooms)."""
    from shapely.geometry import Point

    computed = tileset == "mly1_computed_public"
    lon_k, lat_k = ("c_lon", "c_lat") if computed else ("lon", "lat")
    layers = []
    if z <= 5:
        feats = []
        for r in _first_images(db):
            if tile(r[lon_k], r[lat_k], z)[:2] == (x, y):
                geom = Point(pixel(r[lon_k], r[lat_k], x, y, z))
                props = _props(r, id=int(r["id"]), sequence_id=r["sequence_id"])
                feats.append({"geometry": geom, "properties": props})
        layers.append({"name": "overview", "features": feats})
    else:
        w, s, e, n = tile_bounds(x, y, z)
        bw, bh = (e - w) * BUFFER, (n - s) * BUFFER
        margin = COMPUTED_MARGIN if computed else 0.0
        box = (w - bw - margin, s - bh - margin, e + bw + margin, n + bh + margin)
        k = stride(z)
        rows = tile_rows(db, box, every=k)
        layers.append({"name": "sequence", "features": _lines(rows, x, y, z, computed, k)})
        if z == MAX_ZOOM:
            ang_k = "c_compass_angle" if computed else "compass_angle"
            feats = []
            for r in rows:
                if tile(r[lon_k], r[lat_k], z)[:2] != (x, y):
                    continue
                props = _props(r, id=int(r["id"]), sequence_id=r["sequence_id"])
                if r[ang_k] is not None:
                    props["compass_angle"] = r[ang_k]
                geom = Point(pixel(r[lon_k], r[lat_k], x, y, z))
                feats.append({"geometry": geom, "properties": props})
            layers.append({"name": "image", "features": feats})
    layers = [layer for layer in layers if layer["features"]]
    if not layers:
        return b""
    return bytes(
        mapbox_vector_tile.encode(layers, default_options={"extents": EXTENT, "y_coord_down": True})
    )


async def tile_view(request: web.Request) -> web.StreamResponse:
    """``GET /tiles/maps/vtp/{tileset}/2/{z}/{x}/{y}``."""
    m = request.match_info
    tileset, z, x, y = m["tileset"], int(m["z"]), int(m["x"]), int(m["y"])
    if tileset not in TILESETS:
        return graph_error(404, f"unknown tileset {tileset!r}", code=100)
    if z > MAX_ZOOM or x >= 2**z or y >= 2**z:
        return graph_error(404, f"no tile {z}/{x}/{y} (zoom 0-{MAX_ZOOM})", code=100)
    db = request.app[STORE_KEY].db
    if z < 12:  # big areas: keep the event loop responsive
        body = await asyncio.get_running_loop().run_in_executor(
            None, render_tile, db, tileset, z, x, y
        )
    else:
        body = render_tile(db, tileset, z, x, y)
    return web.Response(body=body, content_type="application/x-protobuf")


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/tiles/maps/vtp/{tileset}/2/{z:\d+}/{x:\d+}/{y:\d+}", tile_view)
