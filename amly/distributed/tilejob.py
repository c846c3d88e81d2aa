"""One tile's images, downloaded with about one request per image, by the tile that owns them.

For a z14 tile: one vector-tile request (the ``image`` layer lists every image id, no cap);
a few bbox searches that describe those images, thumbnail URLs included
(:func:`amly.services.mapillary.bulk.describe`); an entity request only for an image no
answer described; then the images themselves.

Each image is *owned* by the z14 tile of its exact position, so tiles processed by different
workers never store the same image twice, even where a tile's buffer shows a neighbour's
images; :class:`~amly.distributed.markers.TileMarkers` records finished tiles.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from ..errors import APIError, AuthError, MetadataError
from ..geo import tile, tile_bounds, validate_bbox
from ..metadata import set_exif_bytes
from ..net import Transport
from ..net.transport import read_bytes
from ..services.mapillary.bulk import describe
from ..services.mapillary.download import ENTITY_FIELDS, feature, thumb_field
from ..services.mapillary.query import (
    SEARCH_LIMIT,
    Filters,
    SearchReport,
    UnsafeId,
    accept_entity,
    check_image_id,
    fetch_entity,
)
from ..services.mapillary.search import search_candidates
from ..services.mapillary.tiles import decode_image_tile, fetch_tile
from ..storage import Sink
from ..types import BBox
from .markers import TileMarkers
from .shard import Tile, tile_key

__all__ = ["TileQuery", "TileStats", "run_tiles", "tile_entities"]

#: Re-resolutions of an expired signed URL before the image counts as failed.
MAX_RESOLVES = 3


@dataclasses.dataclass(frozen=True)
class TileQuery:
    """What every tile of a job downloads: box, filters, thumbnail size."""

    bbox: BBox
    filters: Filters = Filters()
    size: str = "1024"
    search_limit: int = SEARCH_LIMIT
    #: ``tiles`` (each tile's id list, then a few searches for metadata) or ``search`` (cell
    #: searches over each group only: no tile quota spent, which binds first on a country).
    method: str = "tiles"

    @property
    def field(self) -> str:
        return thumb_field(self.size)

    @property
    def fields(self) -> tuple[str, ...]:
        return (*ENTITY_FIELDS, self.field)

    def to_json(self) -> dict[str, Any]:
        # Not the method: both store the same images, and a rerun may switch.
        return {"bbox": list(self.bbox), "filters": self.filters.to_json(), "size": self.size}


@dataclasses.dataclass
class TileStats:
    """What a run of tiles did; :meth:`add` sums the runs of many workers."""

    tiles: int = 0
    tiles_reused: int = 0
    searches: int = 0
    splits: int = 0
    lookups: int = 0
    downloaded: int = 0
    reused: int = 0
    failed: int = 0
    bytes: int = 0
    resolves: int = 0
    requests: int = 0
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    unfinished: list[str] = dataclasses.field(default_factory=list)

    def fail(self, ident: str, message: str, kind: str) -> None:
        self.failed += 1
        self.failures.append({"file": ident, "type": kind, "error": message})

    def add(self, other: TileStats) -> None:
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, a + b)

    @property
    def images(self) -> int:
        return self.downloaded + self.reused


def _near(lon: float, lat: float, box: BBox, margin: float) -> bool:
    w, s, e, n = box
    return w - margin <= lon <= e + margin and s - margin <= lat <= n + margin


async def tile_entities(
    transport: Transport,
    t: Tile,
    q: TileQuery,
    stats: TileStats,
    report: SearchReport,
) -> list[tuple[dict[str, Any], tuple[str, str, float, float]]]:
    """The images tile ``t`` owns inside the query, as ``(entity, (id, sequence, lon, lat))``
    with the thumbnail URL in the entity (see the module docstring for the requests)."""
    x, y, z = t
    data = await fetch_tile(transport, x, y, z)
    stats.tiles += 1
    tw, ts, te, tn = tile_bounds(x, y, z)
    unit = max(te - tw, tn - ts) / 4096
    cands: dict[str, tuple[float, float]] = {}
    for props, lon, lat, _edge in decode_image_tile(data, x, y, z):
        if not _near(lon, lat, q.bbox, 4 * unit) or not q.filters.matches(props, partial=True):
            continue
        org = q.filters.organization_id
        if org and str(props.get("organization_id")) != str(org):
            continue
        try:
            cands[check_image_id(props.get("id"))] = (lon, lat)
        except UnsafeId as e:
            report.reject(props.get("id"), str(e))
    if not cands:
        return []
    searches, splits = report.searches, report.splits
    answer = await describe(
        transport, cands, q.filters, q.fields, report, margin=2 * unit, limit=q.search_limit
    )
    stats.searches += report.searches - searches
    stats.splits += report.splits - splits

    async def lookup(ident: str) -> dict[str, Any] | None:
        stats.lookups += 1
        try:
            return await fetch_entity(transport, ident, q.fields)
        except APIError as e:
            if e.status is None:
                raise
            stats.fail(ident, str(e), "EntityError")
            return None

    described: list[dict[str, Any]] = []
    missing: list[str] = []
    for ident, (lon, lat) in cands.items():
        ent = answer.entity(ident, q.field)
        if ent is not None:
            described.append(ent)
        elif ident not in answer.found and q.filters.username and answer.complete_at(lon, lat):
            continue  # another creator's: the filtered, complete answers left it out
        else:
            missing.append(ident)
    looked = await asyncio.gather(*(lookup(i) for i in missing))
    out = []
    for ent in described + [e for e in looked if e is not None]:
        hit = accept_entity(ent, q.bbox, q.filters, report)
        if hit is None or tile(hit[2], hit[3], z)[:2] != (x, y):
            continue  # outside the query, or a neighbour's (it is in that tile's list)
        out.append((ent, hit))
    return out


def _capture_time(ms: Any) -> datetime | None:
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return None
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _heading(ent: dict[str, Any]) -> float | None:
    for key in ("compass_angle", "computed_compass_angle"):
        v = _num(ent.get(key))
        if v is not None:
            return v % 360.0
    return None


async def _store_image(
    transport: Transport,
    sink: Sink,
    ent: dict[str, Any],
    hit: tuple[str, str, float, float],
    q: TileQuery,
    stats: TileStats,
) -> dict[str, Any] | None:
    """Download one image (unless already stored) and return its index feature."""
    ident, seq, lon, lat = hit
    rel = f"{seq}/{ident}.jpg"
    feat = feature(ent, rel, lon, lat)
    if await sink.exists(rel):
        stats.reused += 1
        return feat
    try:
        for n in range(MAX_RESOLVES + 1):
            url = ent.get(q.field)
            if not isinstance(url, str) or not url:
                raise APIError(f"no {q.field} for image {ident}", status=404)
            try:
                raw = await transport.request(
                    "GET", url, surface="download", auth=False, read=read_bytes
                )
                break
            except AuthError:
                # Signed URLs expire (an answer's may have aged): ask for a fresh one.
                if n == MAX_RESOLVES:
                    raise
                stats.resolves += 1
                ent = await fetch_entity(transport, ident, q.fields)

        exif: dict[str, Any] = {
            "capture_time": _capture_time(ent.get("captured_at")),
            "lat": lat,
            "lon": lon,
            "alt": _num(ent.get("altitude")),
            "heading": _heading(ent),
            "make": ent.get("make") if isinstance(ent.get("make"), str) else None,
            "model": ent.get("model") if isinstance(ent.get("model"), str) else None,
            "name": rel,
        }
        stats.bytes += await sink.put(rel, raw, before=lambda b: set_exif_bytes(b, **exif))
    except (AuthError, MetadataError, ValueError) as e:
        stats.fail(ident, str(e), getattr(e, "kind", type(e).__name__))
        return None
    except APIError as e:
        if e.status is None:
            raise  # the server kept failing: stop; a rerun resumes
        stats.fail(ident, str(e), "DownloadError")
        return None
    stats.downloaded += 1
    return feat


def _group_area(tiles: list[Tile], box: BBox) -> BBox | None:
    """The part of ``box`` the tiles cover (they form a rectangle: a group's)."""
    bounds = [tile_bounds(*t) for t in tiles]
    w = max(min(b[0] for b in bounds), box[0])
    s = max(min(b[1] for b in bounds), box[1])
    e = min(max(b[2] for b in bounds), box[2])
    n = min(max(b[3] for b in bounds), box[3])
    if w > e or s > n:
        return None
    return validate_bbox((w, s, e, n))


async def group_entities(
    transport: Transport,
    tiles: list[Tile],
    q: TileQuery,
    stats: TileStats,
    report: SearchReport,
) -> dict[Tile, list[tuple[dict[str, Any], tuple[str, str, float, float]]]] | None:
    """The images of a group's ``tiles`` found by cell searches alone (no tile requests), by
    owning tile; None when some cell stayed full at the minimum size and time span (the
    group is then not marked finished, and the failure is reported)."""
    owned: dict[Tile, list[Any]] = {t: [] for t in tiles}
    area = _group_area(tiles, q.bbox)
    if area is None:
        return owned
    truncated = len(report.truncated)
    searches, splits = report.searches, report.splits
    async for c in search_candidates(
        transport, area, q.filters, report, fields=q.fields, limit=q.search_limit
    ):
        ent = dict(c.entity or {})
        if q.field not in ent:
            stats.lookups += 1
            ent = await fetch_entity(transport, c.id, q.fields)
        hit = accept_entity(ent, q.bbox, q.filters, report)
        if hit is None:
            continue
        t = tile(hit[2], hit[3], tiles[0][2])
        if t in owned:  # a neighbouring group's otherwise (a point on the shared edge)
            owned[t].append((ent, hit))
    stats.searches += report.searches - searches
    stats.splits += report.splits - splits
    if len(report.truncated) > truncated:
        for cell, _lo, _hi in report.truncated[truncated:]:
            stats.fail(
                ",".join(f"{v:.6f}" for v in cell),
                "a search cell was still full at the minimum size and time span: images "
                "there may be missing (use --method tiles for this box)",
                "TruncatedSearch",
            )
        return None
    return owned


async def run_tiles(
    transport: Transport,
    sink: Sink,
    markers: TileMarkers,
    tiles: Iterable[Tile],
    q: TileQuery,
    *,
    concurrency: int = 32,
    tile_concurrency: int = 4,
    on_image: Callable[[str], None] | None = None,
) -> TileStats:
    """Download the images of ``tiles``: up to ``tile_concurrency`` tiles and ``concurrency``
    images at a time. A tile already marked is not read again; a tile whose every image
    ended well gets its marker; one with failures stays unmarked (a rerun retries it)."""
    stats = TileStats()
    report = SearchReport()
    images = asyncio.Semaphore(concurrency)
    todo = iter(tiles)  # pulled lazily: a shard of a country is never one list
    start_requests = transport.stats["requests"]

    async def one_image(t: Tile, ent: dict[str, Any], hit: Any) -> dict[str, Any] | None:
        async with images:
            feat = await _store_image(transport, sink, ent, hit, q, stats)
        if feat is not None and on_image is not None:
            on_image(tile_key(t))
        return feat

    async def one_tile(t: Tile) -> None:
        entry = await markers.get(t)
        if entry is not None:
            stats.tiles_reused += 1
            n = len(entry.get("features", []))
            stats.reused += n
            if on_image is not None:
                for _ in range(n):
                    on_image(tile_key(t))
            return
        failed = stats.failed
        owned = await tile_entities(transport, t, q, stats, report)
        feats = await asyncio.gather(*(one_image(t, e, h) for e, h in owned))
        if stats.failed == failed and all(f is not None for f in feats):
            done = sorted((f for f in feats if f is not None), key=lambda f: f["properties"]["id"])
            await markers.put(t, done)
        else:
            stats.unfinished.append(tile_key(t))

    async def by_search(tiles: list[Tile]) -> None:
        """``q.method == "search"``: the given tiles are one group, searched as a whole."""
        entries = await asyncio.gather(*(markers.get(t) for t in tiles))
        if all(e is not None for e in entries):
            for t, e in zip(tiles, entries, strict=True):
                stats.tiles_reused += 1
                stats.reused += len((e or {}).get("features", []))
                if on_image is not None:
                    for _ in (e or {}).get("features", []):
                        on_image(tile_key(t))
            return
        failed = stats.failed
        owned = await group_entities(transport, tiles, q, stats, report)
        if owned is None:
            stats.unfinished += [tile_key(t) for t in tiles]
            return
        for t, items in owned.items():
            feats = await asyncio.gather(*(one_image(t, e, h) for e, h in items))
            if stats.failed == failed and all(f is not None for f in feats):
                done = sorted(
                    (f for f in feats if f is not None), key=lambda f: f["properties"]["id"]
                )
                await markers.put(t, done)
            else:
                stats.unfinished.append(tile_key(t))

    try:
        if q.method == "search":
            await by_search(list(todo))
        else:

            async def puller() -> None:
                for t in todo:
                    await one_tile(t)

            await asyncio.gather(*(puller() for _ in range(max(1, tile_concurrency))))
    finally:
        for ident, reason in report.rejected:
            stats.fail(ident, reason, "UnsafeIdError")
        stats.requests += transport.stats["requests"] - start_requests
    return stats
