"""Enumeration by vector tiles: the z14 ``image`` layer has no result cap, so every image of
a box is found. Each tile covering the box is decoded; features near the box are candidates,
and the entity (or a search answer) decides exactly, from its real geometry, whether it is
inside. Images near a tile's border may be reported by two tiles: they go through the
:class:`~amly.services.mapillary.query.EdgeDedup`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from ...errors import APIError
from ...geo import tile, tile_bounds, tiles, unmercator, validate_bbox
from ...net import Transport
from ...net.flow import fanout
from ...net.transport import read_bytes
from ...types import BBox
from .bulk import describe
from .query import SEARCH_LIMIT, Candidate, EdgeDedup, Filters, SearchReport, UnsafeId, in_bbox

TILE_ZOOM = 14
TILE_PATH = "maps/vtp/mly1_public/2"
Tile = tuple[int, int, int]


def decode_image_tile(
    data: bytes, x: int, y: int, z: int = TILE_ZOOM, *, band: float = 2.0
) -> list[tuple[dict[str, Any], float, float, bool]]:
    """Decode the ``image`` layer of a vector tile into ``(properties, lon, lat, edge)``.

    Features lying more than ``band`` tile units outside the tile (the tile's buffer) belong
    to a neighbour, which will report them as its own, and are skipped. Features within
    ``band`` units of the tile's border are flagged ``edge``: a neighbour may report them too.

    >>> import mapbox_vector_tile as mvt
    >>> pbf = mvt.encode([{"name": "image", "features": [
    ...     {"geometry": "POINT(2048 2048)", "properties": {"id": 7, "sequence_id": "s"}},
    ...     {"geometry": "POINT(4097 10)", "properties": {"id": 8, "sequence_id": "s"}},
    ...     {"geometry": "POINT(5000 10)", "properties": {"id": 9, "sequence_id": "s"}}]}],
    ...     default_options={"y_coord_down": True})
    >>> [(p["id"], round(lon, 4), round(lat, 4), e) for p, lon, lat, e in
    ...  decode_image_tile(pbf, 0, 0, 1)]
    [(7, -90.0, 66.5133, False), (8, 0.0439, 85.0131, True)]
    """
    import mapbox_vector_tile

    if not data:
        return []
    layers = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
    layer = layers.get("image")
    if not layer:
        return []
    extent = int(layer.get("extent") or 4096)
    out: list[tuple[dict[str, Any], float, float, bool]] = []
    lo, hi = band, extent - band
    for feat in layer.get("features", []):
        geom = feat.get("geometry") or {}
        coords = geom.get("coordinates")
        points: list[Any]
        if geom.get("type") == "Point":
            points = [coords]
        elif geom.get("type") == "MultiPoint":
            points = list(coords or [])
        else:
            continue
        for pt in points:
            try:
                px, py = float(pt[0]), float(pt[1])
            except (TypeError, ValueError, IndexError):
                continue
            if px < -band or py < -band or px > extent + band or py > extent + band:
                continue  # a neighbour's feature in this tile's buffer
            edge = not (lo < px < hi and lo < py < hi)
            lon, lat = unmercator(x + px / extent, y + py / extent, z)
            out.append((dict(feat.get("properties") or {}), lon, lat, edge))
    return out


def _expand(bbox: BBox, margin: float) -> BBox:
    w, s, e, n = bbox
    return (w - margin, s - margin, e + margin, n + margin)


def _tile_rows(box: BBox, z: int) -> Iterator[tuple[int, int, int]]:
    """The tiles covering ``box``, produced one tile row at a time (lazily)."""
    w, s, e, n = box
    y0 = tile(w, n, z)[1]
    y1 = tile(w, s + 1e-9, z)[1]
    for y in range(y0, y1 + 1):
        _, row_s, _, row_n = tile_bounds(0, y, z)
        eps = (row_n - row_s) * 1e-6  # keep the strip strictly inside this row
        yield from tiles((w, max(s, row_s + eps), e, min(n, row_n - eps)), z)


def _tile_url(transport: Transport, x: int, y: int, z: int) -> str:
    return f"{transport.endpoints.tiles}/{TILE_PATH}/{z}/{x}/{y}"


async def fetch_tile(transport: Transport, x: int, y: int, z: int = TILE_ZOOM) -> bytes:
    """One vector tile's bytes (empty for a tile the server has nothing for)."""
    try:
        data = await transport.request(
            "GET", _tile_url(transport, x, y, z), surface="tiles", read=read_bytes
        )
    except APIError as e:
        if e.status in (204, 404):
            return b""
        raise
    return bytes(data)


async def tile_candidates(
    transport: Transport,
    bbox: BBox,
    filters: Filters,
    report: SearchReport,
    *,
    concurrency: int = 16,
    skip_tile: Callable[[Tile], Awaitable[bool]] | None = None,
    on_tile: Callable[[Tile, int, bool], None] | None = None,
    dedup: EdgeDedup | None = None,
    bulk_fields: Iterable[str] = (),
    search_limit: int = SEARCH_LIMIT,
) -> AsyncIterator[Candidate]:
    """Candidates from the z14 ``image`` layer of every tile covering ``bbox``.

    With ``bulk_fields`` (which must name a ``thumb_*_url``), each tile's candidates come
    with those fields in ``Candidate.entity``, from a few bbox searches per tile
    (:func:`amly.services.mapillary.bulk.describe`); a candidate no answer described comes
    without, and its entity is the caller's to fetch.

    Positions are tile-quantized: a candidate within a couple of tile units of the box is
    kept, and the entity's real geometry decides (:func:`images`). ``skip_tile(t)`` true:
    the tile is not fetched (a resumed download has all of it). ``on_tile(t, n, clean)`` is
    told how many candidates tile ``t`` yields before they are, and whether it rejected
    none. ``dedup`` may be shared with the caller (a skipped tile's edge images)."""
    box = validate_bbox(bbox)
    seen = dedup if dedup is not None else EdgeDedup()

    async def handle(t: tuple[int, int, int]) -> tuple[list[Candidate], list[Any]]:
        x, y, z = t
        if skip_tile is not None and await skip_tile(t):
            report.tiles_skipped += 1
            return [], []
        data = await fetch_tile(transport, x, y, z)
        clean = True
        report.tiles += 1
        tw, ts, te, tn = tile_bounds(x, y, z)
        margin = 4 * max(te - tw, tn - ts) / 4096
        near = _expand(box, margin)
        found: list[Candidate] = []
        for props, lon, lat, edge in decode_image_tile(data, x, y, z):
            if not in_bbox(lon, lat, near):
                continue
            if not filters.matches(props, partial=True):
                continue
            # Tiles carry organization_id whenever an image has one: absent means "none".
            org = filters.organization_id
            if org and str(props.get("organization_id")) != str(org):
                continue
            try:
                ids = seen.admit(props.get("id"), props.get("sequence_id"), edge, report)
            except UnsafeId:
                clean = False
                continue
            if ids is None:
                continue
            ident, seq = ids
            t_ms = props.get("captured_at")
            t_ms = t_ms if isinstance(t_ms, int) else None
            found.append(Candidate(ident, seq, lon, lat, t_ms, tile=t, edge=edge))
        if bulk and found:
            found = await _described(found, margin / 2)
        if on_tile is not None:
            on_tile(t, len(found), clean)
        return found, []

    bulk = tuple(bulk_fields)
    thumb = next((f for f in bulk if f.startswith("thumb_")), "thumb_1024_url")

    async def _described(found: list[Candidate], margin: float) -> list[Candidate]:
        answer = await describe(
            transport,
            {c.id: (c.lon, c.lat) for c in found},
            filters,
            bulk,
            report,
            margin=margin,
            limit=search_limit,
        )
        out = []
        for c in found:
            ent = answer.entity(c.id, thumb)
            if ent is not None:
                c = dataclasses.replace(c, entity=ent)
            elif c.id not in answer.found and filters.username and answer.complete_at(c.lon, c.lat):
                continue  # another creator's: the filtered, complete answers left it out
            out.append(c)
        return out

    async for c in fanout(
        _tile_rows(box, TILE_ZOOM), handle, concurrency=concurrency, buffer=4 * concurrency
    ):
        report.candidates += 1
        yield c


def tile_count(bbox: BBox) -> int:
    """How many z14 tiles cover ``bbox`` (the tile enumeration's first-level requests).

    >>> tile_count((13.40, 52.51, 13.41, 52.52))
    2
    """
    w, s, e, n = validate_bbox(bbox)
    x0, y0, _ = tile(w, n, TILE_ZOOM)
    x1, y1, _ = tile(e - 1e-9, s + 1e-9, TILE_ZOOM)
    return (x1 - x0 + 1) * (y1 - y0 + 1)
