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

Tile enumeration is in :mod:`.tiles`; what both share (ids, filters, the report, the
entity check) in :mod:`.query`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, cast

from ...geo import quarter, split_bbox, validate_bbox
from ...net import Transport
from ...net.flow import bounded_map, fanout
from ...types import BBox
from .query import (
    BASE_FIELDS,
    MAX_CELL,
    SEARCH_LIMIT,
    Candidate,
    EdgeDedup,
    Filters,
    SearchReport,
    UnsafeId,
    accept_entity,
    check_bbox,
    fetch_entity,
    in_bbox,
    iso_millis,
    millis,
    position,
    search_pages,
)
from .tiles import Tile, tile_candidates, tile_count

MIN_CELL = 0.0001
#: A search work item: a cell and, once split by time, its capture-time range (ms).
Work = tuple[BBox, "tuple[int, int] | None"]


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
    return tile_count((w, s, e, n))


def _cell_rows(box: BBox, max_side: float) -> Iterator[BBox]:
    """The same grid as :func:`amly.geo.split_bbox`, produced one row at a time (lazily)."""
    w, s, e, n = box
    ny = max(1, math.ceil((n - s) / max_side - 1e-9))
    ys = [s + (n - s) * j / ny for j in range(ny)] + [n]
    for j in range(ny):
        yield from split_bbox((w, ys[j], e, ys[j + 1]), max_side)


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
    now_ms = millis(datetime.now(timezone.utc)) + 86_400_000
    full_range = (filters.start_ms or 0, filters.end_ms or now_ms)

    async def handle(item: Work) -> tuple[list[Candidate], list[Work]]:
        cell, trange = item
        w, s, e, n = cell
        params = dict(base_params)
        params.update(bbox=f"{w!r},{s!r},{e!r},{n!r}", fields=",".join(want), limit=str(limit))
        if trange is not None:
            params["start_captured_at"] = iso_millis(trange[0])
            params["end_captured_at"] = iso_millis(trange[1])
        data, paged = await search_pages(transport, params, report)
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
            pos = position(ent)
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
    async for c in fanout(seeds, handle, concurrency=concurrency, buffer=4 * concurrency):
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
    skip_tile: Callable[[Tile], Awaitable[bool]] | None = None,
    on_tile: Callable[[Tile, int, bool], None] | None = None,
    dedup: EdgeDedup | None = None,
    bulk: bool = False,
) -> AsyncIterator[Candidate]:
    """Candidates by ``method`` (``"tiles"`` or ``"search"``; the tile hooks apply to
    tiles only, see :func:`tile_candidates`). Search candidates always carry ``fields``;
    tile candidates do with ``bulk`` (a few searches per tile describe its images)."""
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
            bulk_fields=fields if bulk else (),
            search_limit=search_limit,
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
