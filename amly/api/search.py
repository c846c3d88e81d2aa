"""Enumerate every image in a bounding box, never silently missing one.

Two methods, both streaming (memory stays flat however many images the box holds):

* ``tiles`` (default): the z14 vector tiles' ``image`` layer has no result cap. Each tile
  covering the box is decoded; features near the box are candidates, and the entity
  (``GET /{id}?fields=...``) decides exactly, from its real geometry, whether it is inside.
* ``search``: ``GET /images?bbox=...`` over cells no larger than 0.01 degrees a side. The
  search has no pagination: a response holding ``limit`` results is truncated, so the cell is
  split in four and asked again, down to a minimum side; a minimal cell that is still full is
  split by capture time. A cell that cannot be split further is *reported* (never dropped
  quietly) and its partial results are kept.

Neighbouring cells and tiles share edges, so the same image can come back twice. Only images
near an edge can; they alone go into a small seen-set (:class:`EdgeDedup`), which keeps the
dedup memory proportional to the box perimeter, not its image count.

Identifiers from a server are never trusted as paths: :func:`check_image_id` and
:func:`check_sequence_id` reject anything but the documented alphabets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from datetime import datetime, timezone
from typing import Any, TypeVar, cast

from ..errors import APIError, UsageError
from ..geo import quarter, split_bbox, tile, tile_bounds, tiles, validate_bbox
from ..types import BBox
from ._http import Transport

__all__ = [
    "Candidate",
    "EdgeDedup",
    "Filters",
    "SearchReport",
    "UnsafeId",
    "candidates",
    "check_bbox",
    "check_image_id",
    "check_sequence_id",
    "decode_image_tile",
    "fetch_entity",
    "images",
    "in_bbox",
    "iso_millis",
    "plan_size",
    "search_candidates",
    "tile_candidates",
]

TILE_ZOOM = 14
TILE_PATH = "maps/vtp/mly1_public/2"
SEARCH_LIMIT = 2000
#: The service wants each side of a search box under 0.01 degrees (strictly).
MAX_CELL = 0.0099
MIN_CELL = 0.0001
#: Fields every enumeration asks for: what exact filtering and file naming need.
BASE_FIELDS = ("id", "sequence", "captured_at", "geometry", "is_pano", "creator")

_IMAGE_ID = re.compile(r"^[0-9]{1,40}$")
_SEQUENCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

T = TypeVar("T")
R = TypeVar("R")
#: A search work item: a cell and, once split by time, its capture-time range (ms).
Work = tuple[BBox, "tuple[int, int] | None"]


class UnsafeId(ValueError):
    """An identifier from the server that must not become a file name."""


def check_image_id(value: object) -> str:
    """An image id as a string, if it is decimal digits only; else :class:`UnsafeId`.

    >>> check_image_id(1234), check_image_id("0042")
    ('1234', '0042')
    >>> check_image_id("../../etc/passwd")
    Traceback (most recent call last):
    ...
    amly.api.search.UnsafeId: image id '../../etc/passwd' is not decimal digits
    """
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    if text is None or not _IMAGE_ID.fullmatch(text):
        raise UnsafeId(f"image id {value!r} is not decimal digits")
    return text


def check_sequence_id(value: object) -> str:
    """A sequence id, if it is 1-64 of ``[A-Za-z0-9_-]``; else :class:`UnsafeId`.

    >>> check_sequence_id("aB3_-x")
    'aB3_-x'
    >>> check_sequence_id("..")
    Traceback (most recent call last):
    ...
    amly.api.search.UnsafeId: sequence id '..' is not 1-64 of [A-Za-z0-9_-]
    """
    if not isinstance(value, str) or not _SEQUENCE_ID.fullmatch(value):
        raise UnsafeId(f"sequence id {value!r} is not 1-64 of [A-Za-z0-9_-]")
    return value


def iso_millis(ms: int) -> str:
    """Epoch milliseconds as the ISO 8601 UTC text the Graph API's time filters take.

    >>> iso_millis(1613222681140)
    '2021-02-13T13:24:41.140Z'
    """
    dt = datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _millis(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def check_bbox(bbox: Iterable[float]) -> BBox:
    """The box as floats, or a :class:`UsageError` saying what is wrong (before any work).

    >>> check_bbox([1, 2, 3, 4])
    (1.0, 2.0, 3.0, 4.0)
    """
    try:
        return validate_bbox(tuple(bbox))  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise UsageError(str(e), hint="give the box as WEST,SOUTH,EAST,NORTH in degrees") from None


def in_bbox(lon: float, lat: float, bbox: BBox) -> bool:
    """Whether a position lies in a box, edges included.

    >>> in_bbox(1.0, 1.0, (0, 0, 1, 1)), in_bbox(1.0000001, 0.5, (0, 0, 1, 1))
    (True, False)
    """
    w, s, e, n = bbox
    return w <= lon <= e and s <= lat <= n


def _position(entity: Mapping[str, Any]) -> tuple[float, float] | None:
    geom = entity.get("geometry") or entity.get("computed_geometry")
    try:
        lon, lat = geom["coordinates"][:2]  # type: ignore[index]
        return float(lon), float(lat)
    except (TypeError, KeyError, ValueError, IndexError):
        return None


@dataclasses.dataclass(frozen=True)
class Filters:
    """What to keep besides the box: capture time range, creator, panoramas, organization.

    >>> f = Filters(start=datetime(2020, 1, 1, tzinfo=timezone.utc), is_pano=False)
    >>> f.search_params()
    {'start_captured_at': '2020-01-01T00:00:00.000Z', 'is_pano': 'false'}
    >>> f.matches({"captured_at": 1577836800000, "is_pano": False})
    True
    >>> f.matches({"captured_at": 1577836799999, "is_pano": False})
    False
    """

    start: datetime | None = None
    end: datetime | None = None
    username: str | None = None
    is_pano: bool | None = None
    organization_id: str | None = None

    @property
    def start_ms(self) -> int | None:
        return None if self.start is None else _millis(self.start)

    @property
    def end_ms(self) -> int | None:
        return None if self.end is None else _millis(self.end)

    def search_params(self) -> dict[str, str]:
        """Query parameters for ``/images`` (the server filters; we still check exactly)."""
        p: dict[str, str] = {}
        if self.start_ms is not None:
            p["start_captured_at"] = iso_millis(self.start_ms)
        if self.end_ms is not None:
            p["end_captured_at"] = iso_millis(self.end_ms)
        if self.username:
            p["creator_username"] = self.username
        if self.is_pano is not None:
            p["is_pano"] = "true" if self.is_pano else "false"
        if self.organization_id:
            p["organization_id"] = self.organization_id
        return p

    def matches(self, props: Mapping[str, Any], *, partial: bool = False) -> bool:
        """Whether a tile feature or entity passes. With ``partial`` a missing property does
        not reject (tiles carry no creator; entities may carry no organization)."""
        t = props.get("captured_at")
        if isinstance(t, (int, float)):
            if self.start_ms is not None and t < self.start_ms:
                return False
            if self.end_ms is not None and t > self.end_ms:
                return False
        elif (self.start or self.end) and not partial:
            return False
        if self.is_pano is not None and "is_pano" in props:
            if bool(props["is_pano"]) != self.is_pano:
                return False
        if self.organization_id and props.get("organization_id") is not None:
            if str(props["organization_id"]) != str(self.organization_id):
                return False
        if self.username:
            creator = props.get("creator")
            name = creator.get("username") if isinstance(creator, dict) else None
            if name is None and not partial:
                return False
            if name is not None and name != self.username:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        """A stable description (what a download manifest records about its query)."""
        return {
            "start": None if self.start is None else iso_millis(_millis(self.start)),
            "end": None if self.end is None else iso_millis(_millis(self.end)),
            "username": self.username,
            "is_pano": self.is_pano,
            "organization_id": self.organization_id,
        }


@dataclasses.dataclass
class SearchReport:
    """What the enumeration did and what it could not do: nothing is dropped silently."""

    tiles: int = 0
    #: Tiles a resumed download did not read again (every image of them already on disk).
    tiles_skipped: int = 0
    searches: int = 0
    splits: int = 0
    time_splits: int = 0
    candidates: int = 0
    duplicates: int = 0
    #: ``(cell, start_ms, end_ms)`` of cells still full at the minimum size and time span.
    truncated: list[tuple[BBox, int, int]] = dataclasses.field(default_factory=list)
    #: ``(id, reason)`` of images rejected for an unsafe identifier.
    rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def reject(self, ident: object, reason: str) -> None:
        self.rejected.append((repr(ident)[:80], reason))


@dataclasses.dataclass(frozen=True)
class Candidate:
    """An image the enumeration found: checked id, rough position, and whether the position
    is exact (from an entity or search result) or only tile-quantized."""

    id: str
    sequence_id: str | None
    lon: float
    lat: float
    captured_at: int | None = None
    exact: bool = False
    entity: Mapping[str, Any] | None = None
    #: The z14 tile it came from (tile enumeration): lets a download record finished tiles.
    tile: tuple[int, int, int] | None = None
    #: Near an edge of its tile or cell: another one may report it too.
    edge: bool = False


class EdgeDedup:
    """Drops the second sighting of an image seen from two cells or tiles.

    Only items flagged as lying on (or near) an edge are remembered: an interior item of one
    cell cannot be returned by another, so the set stays as small as the edges' population.

    >>> d = EdgeDedup()
    >>> d.first("1", edge=True), d.first("1", edge=True), d.first("2", edge=False)
    (True, False, True)
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def first(self, ident: str, *, edge: bool) -> bool:
        if not edge:
            return True
        if ident in self._seen:
            return False
        self._seen.add(ident)
        return True

    def admit(
        self, raw_id: object, raw_seq: object, edge: bool, report: SearchReport
    ) -> tuple[str, str | None] | None:
        """The checked ``(image id, sequence id)`` of a first sighting, ``None`` for a repeat
        (counted). An unsafe id is reported once as a rejection and raised as UnsafeId."""
        try:
            ident = check_image_id(raw_id)
            seq = None if raw_seq is None else check_sequence_id(raw_seq)
        except UnsafeId as e:
            if self.first(f"bad:{raw_id!r}", edge=edge):
                report.reject(raw_id, str(e))
            raise
        if not self.first(ident, edge=edge):
            report.duplicates += 1
            return None
        return ident, seq

    def __len__(self) -> int:
        return len(self._seen)


# --- vector tiles -----------------------------------------------------------------------


def _tile_lonlat(x: int, y: int, z: int, px: float, py: float, extent: int) -> tuple[float, float]:
    """Tile-local coordinates (y down from the tile's north edge) to degrees."""
    n = 2**z
    lon = (x + px / extent) / n * 360.0 - 180.0
    merc_y = math.pi * (1 - 2 * (y + py / extent) / n)
    lat = math.degrees(math.atan(math.sinh(merc_y)))
    return lon, lat


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
            lon, lat = _tile_lonlat(x, y, z, px, py, extent)
            out.append((dict(feat.get("properties") or {}), lon, lat, edge))
    return out


def _expand(bbox: BBox, margin: float) -> BBox:
    w, s, e, n = bbox
    return (w - margin, s - margin, e + margin, n + margin)


async def _fanout(
    seeds: Iterable[T],
    handle: Callable[[T], Awaitable[tuple[list[R], list[T]]]],
    *,
    concurrency: int,
    buffer: int,
) -> AsyncIterator[R]:
    """Run ``handle`` over work items with at most ``concurrency`` in flight, streaming the
    results through a bounded queue. A handler returns results and more work (a split cell),
    which goes before the remaining ``seeds``; seeds are pulled lazily, so a box of a million
    cells never becomes a million-item list."""
    seed_iter = iter(seeds)
    seeds_left = True
    spawned: list[T] = []  # depth-first: split cells are finished before new seeds start
    out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=max(1, buffer))
    busy = 0
    cond = asyncio.Condition()

    def next_item() -> tuple[bool, T | None]:
        nonlocal seeds_left
        if spawned:
            return True, spawned.pop()
        if seeds_left:
            for item in seed_iter:
                return True, item
            seeds_left = False
        return False, None

    async def worker() -> None:
        nonlocal busy
        while True:
            async with cond:
                while True:
                    ok, item = next_item()
                    if ok or busy == 0:
                        break
                    await cond.wait()  # a busy worker may still split its cell
                if ok:
                    busy += 1
                else:
                    cond.notify_all()  # the others see it too
            if not ok:
                await out.put(("done", None))
                return
            try:
                results, more = await handle(item)  # type: ignore[arg-type]
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                if isinstance(e, asyncio.CancelledError):
                    raise
                await out.put(("error", e))
                return
            for r in results:
                await out.put(("item", r))
            async with cond:
                spawned.extend(more)
                busy -= 1
                cond.notify_all()

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, concurrency))]
    try:
        async for value in _drain(out):
            yield value
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def plan_size(bbox: BBox, method: str = "tiles") -> int:
    """How many first-level requests an enumeration makes: z14 tiles, or search cells
    (before any split).

    >>> plan_size((13.40, 52.51, 13.41, 52.52)), plan_size((0, 0, 0.02, 0.01), "search")
    (2, 6)
    """
    w, s, e, n = validate_bbox(bbox)
    if method == "search":
        nx = max(1, math.ceil((e - w) / MAX_CELL - 1e-9))
        ny = max(1, math.ceil((n - s) / MAX_CELL - 1e-9))
        return nx * ny
    x0, y0, _ = tile(w, n, TILE_ZOOM)
    x1, y1, _ = tile(e - 1e-9, s + 1e-9, TILE_ZOOM)
    return (x1 - x0 + 1) * (y1 - y0 + 1)


def _tile_rows(box: BBox, z: int) -> Iterator[tuple[int, int, int]]:
    """The tiles covering ``box``, produced one tile row at a time (lazily)."""
    w, s, e, n = box
    y0 = tile(w, n, z)[1]
    y1 = tile(w, s + 1e-9, z)[1]
    for y in range(y0, y1 + 1):
        _, row_s, _, row_n = tile_bounds(0, y, z)
        eps = (row_n - row_s) * 1e-6  # keep the strip strictly inside this row
        yield from tiles((w, max(s, row_s + eps), e, min(n, row_n - eps)), z)


def _cell_rows(box: BBox, max_side: float) -> Iterator[BBox]:
    """The same grid as :func:`amly.geo.split_bbox`, produced one row at a time (lazily)."""
    w, s, e, n = box
    ny = max(1, math.ceil((n - s) / max_side - 1e-9))
    ys = [s + (n - s) * j / ny for j in range(ny)] + [n]
    for j in range(ny):
        yield from split_bbox((w, ys[j], e, ys[j + 1]), max_side)


def _tile_url(transport: Transport, x: int, y: int, z: int) -> str:
    return f"{transport.endpoints.tiles}/{TILE_PATH}/{z}/{x}/{y}"


async def _read_bytes(resp: Any) -> bytes:
    return bytes(await resp.read())


async def fetch_tile(transport: Transport, x: int, y: int, z: int = TILE_ZOOM) -> bytes:
    """One vector tile's bytes (empty for a tile the server has nothing for)."""
    try:
        data = await transport.request(
            "GET", _tile_url(transport, x, y, z), surface="tiles", read=_read_bytes
        )
    except APIError as e:
        if e.status in (204, 404):
            return b""
        raise
    transport.stats["bytes_received"] += len(data)
    return bytes(data)


async def tile_candidates(
    transport: Transport,
    bbox: BBox,
    filters: Filters,
    report: SearchReport,
    *,
    concurrency: int = 16,
    skip_tile: Callable[[tuple[int, int, int]], bool] | None = None,
    on_tile: Callable[[tuple[int, int, int], int, bool], None] | None = None,
    dedup: EdgeDedup | None = None,
) -> AsyncIterator[Candidate]:
    """Candidates from the z14 ``image`` layer of every tile covering ``bbox``.

    Positions are tile-quantized: a candidate within a couple of tile units of the box is
    kept, and the entity's real geometry decides (:func:`images`). ``skip_tile(t)`` true:
    the tile is not fetched (a resumed download has all of it). ``on_tile(t, n, clean)`` is
    told how many candidates tile ``t`` yields before they are, and whether it rejected
    none. ``dedup`` may be shared with the caller (a skipped tile's edge images)."""
    box = validate_bbox(bbox)
    seen = dedup if dedup is not None else EdgeDedup()

    async def handle(t: tuple[int, int, int]) -> tuple[list[Candidate], list[Any]]:
        x, y, z = t
        if skip_tile is not None and skip_tile(t):
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
        if on_tile is not None:
            on_tile(t, len(found), clean)
        return found, []

    async for c in _fanout(
        _tile_rows(box, TILE_ZOOM), handle, concurrency=concurrency, buffer=4 * concurrency
    ):
        report.candidates += 1
        yield c


def page_data(answer: Any) -> list[Any]:
    data = answer.get("data") if isinstance(answer, dict) else None
    return list(data) if isinstance(data, list) else []


def next_page(answer: Any) -> str | None:
    paging = answer.get("paging") if isinstance(answer, dict) else None
    nxt = paging.get("next") if isinstance(paging, dict) else None
    return nxt if isinstance(nxt, str) and nxt else None


def _time_halves(start: int, end: int) -> list[tuple[int, int]]:
    """Two overlapping halves (sharing the midpoint, whatever the server's edge semantics).

    >>> _time_halves(0, 10)
    [(0, 5), (5, 10)]
    """
    mid = (start + end) // 2
    return [(start, mid), (mid, end)]


async def search_candidates(
    transport: Transport,
    bbox: BBox,
    filters: Filters,
    report: SearchReport,
    *,
    fields: Iterable[str] = (),
    limit: int = SEARCH_LIMIT,
    max_cell: float = MAX_CELL,
    min_cell: float = MIN_CELL,
    concurrency: int = 16,
) -> AsyncIterator[Candidate]:
    """Candidates from ``/images?bbox=`` over cells that split whenever a response is full.

    Results carry exact geometry and the requested ``fields`` (``Candidate.entity``)."""
    box = validate_bbox(bbox)
    want = sorted(set(BASE_FIELDS) | set(fields))
    dedup = EdgeDedup()
    base_params = filters.search_params()
    now_ms = _millis(datetime.now(timezone.utc)) + 86_400_000
    full_range = (filters.start_ms or 0, filters.end_ms or now_ms)

    async def handle(item: Work) -> tuple[list[Candidate], list[Work]]:
        cell, trange = item
        w, s, e, n = cell
        params = dict(base_params)
        params.update(bbox=f"{w!r},{s!r},{e!r},{n!r}", fields=",".join(want), limit=str(limit))
        if trange is not None:
            params["start_captured_at"] = iso_millis(trange[0])
            params["end_captured_at"] = iso_millis(trange[1])
        answer = await transport.graph_get("images", params, surface="search")
        report.searches += 1
        data = page_data(answer)
        # A creator search paginates: follow ``paging.next`` verbatim; then nothing is cut.
        nxt = next_page(answer)
        paged = nxt is not None
        while nxt is not None:
            page = await transport.request("GET", nxt, surface="search")
            report.searches += 1
            data += page_data(page)
            nxt = next_page(page)
        if len(data) >= limit and not paged:
            if max(e - w, n - s) > min_cell:
                report.splits += 1
                return [], [(q, trange) for q in quarter(cell)]
            lo, hi = trange or full_range
            if hi - lo > 1:
                report.time_splits += 1
                return [], [(cell, h) for h in _time_halves(lo, hi)]
            report.truncated.append((cell, lo, hi))  # keep what we got; report the rest
        found: list[Candidate] = []
        margin = 1e-9
        inner = (w + margin, s + margin, e - margin, n - margin)
        for ent in data:
            if not isinstance(ent, dict):
                continue
            pos = _position(ent)
            if pos is None or not in_bbox(pos[0], pos[1], box):
                continue
            if not filters.matches(ent, partial=True):
                continue
            edge = trange is not None or not in_bbox(pos[0], pos[1], inner)
            try:
                ids = dedup.admit(ent.get("id"), ent.get("sequence"), edge, report)
            except UnsafeId:
                continue
            if ids is None:
                continue
            ident, seq = ids
            t_ms = ent.get("captured_at")
            found.append(
                Candidate(
                    ident,
                    seq,
                    pos[0],
                    pos[1],
                    t_ms if isinstance(t_ms, int) else None,
                    exact=True,
                    entity=ent,
                )
            )
        return found, []

    seeds: Iterator[Work] = ((c, None) for c in _cell_rows(box, max_cell))
    async for c in _fanout(seeds, handle, concurrency=concurrency, buffer=4 * concurrency):
        report.candidates += 1
        yield c


def candidates(
    transport: Transport,
    bbox: BBox,
    filters: Filters,
    report: SearchReport,
    *,
    method: str = "tiles",
    fields: Iterable[str] = (),
    concurrency: int = 16,
    search_limit: int = SEARCH_LIMIT,
    min_cell: float = MIN_CELL,
    skip_tile: Callable[[tuple[int, int, int]], bool] | None = None,
    on_tile: Callable[[tuple[int, int, int], int, bool], None] | None = None,
    dedup: EdgeDedup | None = None,
) -> AsyncIterator[Candidate]:
    """Candidates by ``method`` (``"tiles"`` or ``"search"``; the tile hooks apply to
    tiles only, see :func:`tile_candidates`)."""
    if method == "tiles":
        return tile_candidates(
            transport,
            bbox,
            filters,
            report,
            concurrency=concurrency,
            skip_tile=skip_tile,
            on_tile=on_tile,
            dedup=dedup,
        )
    if method == "search":
        return search_candidates(
            transport,
            bbox,
            filters,
            report,
            fields=fields,
            limit=search_limit,
            min_cell=min_cell,
            concurrency=concurrency,
        )
    raise ValueError(f"unknown enumeration method {method!r} (tiles or search)")


async def fetch_entity(
    transport: Transport, image_id: str, fields: Iterable[str]
) -> dict[str, Any]:
    """``GET /{id}?fields=...`` on the entity surface. ``image_id`` must be checked."""
    check_image_id(image_id)
    answer = await transport.graph_get(
        image_id, {"fields": ",".join(sorted(set(fields)))}, surface="entity"
    )
    if not isinstance(answer, dict):
        raise APIError(f"image {image_id}: the entity answer is not an object")
    return answer


def accept_entity(
    entity: Mapping[str, Any], bbox: BBox, filters: Filters, report: SearchReport
) -> tuple[str, str, float, float] | None:
    """``(id, sequence id, lon, lat)`` if the entity is safe and exactly inside the query;
    ``None`` otherwise (an unsafe id is also recorded in ``report``)."""
    try:
        ident = check_image_id(entity.get("id"))
        seq = check_sequence_id(entity.get("sequence"))
    except UnsafeId as e:
        report.reject(entity.get("id"), str(e))
        return None
    pos = _position(entity)
    if pos is None or not in_bbox(pos[0], pos[1], bbox):
        return None
    # Strict: an entity must show its time and creator when filtered on (entities carry no
    # organization: that filter was applied by the enumeration).
    if not filters.matches(entity):
        return None
    return ident, seq, pos[0], pos[1]


async def _drain(out: asyncio.Queue[tuple[str, Any]]) -> AsyncIterator[Any]:
    """The consumer side of a worker queue: ``("item", x)`` yields x, ``("error", e)`` raises
    e, ``("done", None)`` ends."""
    while True:
        kind, value = await out.get()
        if kind == "item":
            yield value
        elif kind == "error":
            raise value
        else:
            return


async def bounded_map(
    source: AsyncIterator[T],
    fn: Callable[[T], Awaitable[R]],
    concurrency: int,
) -> AsyncIterator[R]:
    """Apply ``fn`` to a stream with at most ``concurrency`` in flight (results unordered)."""
    sem = asyncio.Semaphore(concurrency)
    out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=concurrency * 2)
    running: set[asyncio.Task[None]] = set()

    async def one(item: T) -> None:
        try:
            await out.put(("item", await fn(item)))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            await out.put(("error", e))
        finally:
            sem.release()

    async def feed() -> None:
        try:
            async for item in source:
                await sem.acquire()
                t = asyncio.ensure_future(one(item))
                running.add(t)
                t.add_done_callback(running.discard)
            for _ in range(concurrency):
                await sem.acquire()  # wait for every job
            await out.put(("done", None))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001
            await out.put(("error", e))
        finally:
            # Close the source now (its own workers stop), not whenever it is collected.
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    feeder = asyncio.ensure_future(feed())
    try:
        async for value in _drain(out):
            yield value
    finally:
        feeder.cancel()
        for t in list(running):
            t.cancel()
        await asyncio.gather(feeder, *running, return_exceptions=True)


async def images(
    transport: Transport,
    bbox: BBox,
    *,
    fields: Iterable[str] = (),
    filters: Filters | None = None,
    method: str = "tiles",
    max_results: int | None = None,
    concurrency: int = 16,
    report: SearchReport | None = None,
    search_limit: int = SEARCH_LIMIT,
) -> AsyncIterator[dict[str, Any]]:
    """Every image exactly inside ``bbox`` that passes ``filters``, as entity dicts holding
    at least ``fields`` plus :data:`BASE_FIELDS`. Unordered; each image once."""
    box = check_bbox(bbox)
    filters = filters or Filters()
    report = report or SearchReport()
    want = set(BASE_FIELDS) | set(fields)
    source = candidates(
        transport,
        box,
        filters,
        report,
        method=method,
        fields=want,
        concurrency=concurrency,
        search_limit=search_limit,
    )

    async def resolve(c: Candidate) -> dict[str, Any] | None:
        if c.entity is not None and want <= set(c.entity):
            ent = dict(c.entity)
        else:
            ent = await fetch_entity(transport, c.id, want)
        return ent if accept_entity(ent, box, filters, report) else None

    count = 0
    gen = cast(AsyncGenerator[Any, None], bounded_map(source, resolve, concurrency))
    try:
        async for ent in gen:
            if ent is None:
                continue
            if max_results is not None and count >= max_results:
                break
            count += 1
            yield ent
            if max_results is not None and count >= max_results:
                break
    finally:
        await gen.aclose()
