"""Metadata in bulk: describe the images a tile lists with a few bbox searches instead of one
entity request each.

A z14 tile's ``image`` layer lists every image id of the tile (no cap) at tile-quantized
positions. :func:`describe` asks ``/images?bbox=`` over the part of the tile where those
images are (cells under 0.01 degrees a side) for the metadata *and* the signed thumbnail URL:
one answer describes up to 2,000 images. A full answer is truncated (bbox searches do not
paginate): its cell is split in four and only quarters holding images no answer described
yet are asked again, down to :data:`MIN_SPLIT`. An image no answer describes is left to the
caller, which asks for its entity: a search only ever saves requests, the tile's list decides
which images there are.

What this relies on (docs/mapillary-api.md): bbox searches take ``fields``, thumbnail URLs
included, and answer them in the same response; an answer with fewer than ``limit`` results
holds every matching image of its box; answers never page (except with
``creator_username``, whose ``paging.next`` is followed). It does not rely on whether box
edges are inclusive (cells overlap by ~1 cm) nor on the search placing an image exactly
where the tile does (cells reach :data:`SEARCH_MARGIN` beyond the tile's positions).

>>> cells_for({"1": (13.4001, 52.5001), "2": (13.4002, 52.5002)}, 1e-5)
[(13.4, 52.5, 13.4003, 52.5003)]
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ...geo import quarter, split_bbox
from ...net import Transport
from ...types import BBox
from .query import MAX_CELL, SEARCH_LIMIT, Filters, SearchReport, search_pages

__all__ = ["CELL_OVERLAP", "MIN_SPLIT", "SEARCH_MARGIN", "Described", "cells_for", "describe"]

#: Search cells reach this far (degrees, ~10 m) beyond the tile's positions of its images.
SEARCH_MARGIN = 1e-4
#: Neighbouring cells overlap by this much (degrees), whatever the server's edge semantics.
CELL_OVERLAP = 1e-7
#: A full cell is split in four down to this side; below, what is missing is looked up.
MIN_SPLIT = 0.0005
#: Fields an answer must hold for an image to need no entity request.
REQUIRED = ("id", "sequence", "geometry", "captured_at")

Positions = Mapping[str, "tuple[float, float]"]


def _in(lon: float, lat: float, cell: BBox, margin: float = 0.0) -> bool:
    w, s, e, n = cell
    return w - margin <= lon <= e + margin and s - margin <= lat <= n + margin


def cells_for(positions: Positions, margin: float) -> list[BBox]:
    """The first cells to search: the positions' extent (plus ``margin``, at least
    :data:`SEARCH_MARGIN`) split under the size rule, keeping cells that hold a position."""
    if not positions:
        return []
    m = max(margin, SEARCH_MARGIN)
    lons = [p[0] for p in positions.values()]
    lats = [p[1] for p in positions.values()]
    area = (min(lons) - m, min(lats) - m, max(lons) + m, max(lats) + m)
    area = tuple(round(v, 9) for v in area)  # type: ignore[assignment]
    return [
        c
        for c in split_bbox(area, MAX_CELL)
        if any(_in(lon, lat, c, m) for lon, lat in positions.values())
    ]


@dataclasses.dataclass
class Described:
    """What the searches answered: entities by id (only ids that were asked about), the cells
    whose answers were complete, and the margin positions were taken with."""

    found: dict[str, dict[str, Any]]
    complete: list[BBox]
    margin: float

    def complete_at(self, lon: float, lat: float) -> bool:
        """Whether complete answers cover a position, with its margin all round: an image
        there that no answer holds does not match the searches' filters."""
        m = self.margin
        corners = [(lon + dx, lat + dy) for dx in (-m, m) for dy in (-m, m)]
        return all(any(_in(x, y, c) for c in self.complete) for x, y in corners)

    def entity(self, ident: str, field: str) -> dict[str, Any] | None:
        """The answer for ``ident`` if it holds everything a download needs (``field``: the
        thumbnail URL), else None (the caller asks for the entity)."""
        ent = self.found.get(ident)
        if ent is None or field not in ent or any(k not in ent for k in REQUIRED):
            return None
        return ent


async def _search(
    transport: Transport,
    cell: BBox,
    filters: Filters,
    fields: str,
    limit: int,
    report: SearchReport,
) -> tuple[list[Any], bool]:
    """One cell's answer (pages followed) and whether it was full (truncated)."""
    w, s, e, n = cell
    o = CELL_OVERLAP
    params = filters.search_params()
    params.update(bbox=f"{w - o!r},{s - o!r},{e + o!r},{n + o!r}", fields=fields, limit=str(limit))
    data, paged = await search_pages(transport, params, report)
    return data, len(data) >= limit and not paged


async def describe(
    transport: Transport,
    positions: Positions,
    filters: Filters,
    fields: Iterable[str],
    report: SearchReport,
    *,
    margin: float = 0.0,
    limit: int = SEARCH_LIMIT,
) -> Described:
    """Search the cells around ``positions`` (id -> approximate lon, lat) for ``fields``;
    see the module docstring. ``margin``: how far off a position may be (tile quantization)."""
    m = max(margin, SEARCH_MARGIN)
    want = ",".join(sorted(set(fields) | set(REQUIRED)))
    out = Described({}, [], m)

    def pending(cell: BBox) -> bool:
        return any(
            _in(lon, lat, cell, m) and i not in out.found for i, (lon, lat) in positions.items()
        )

    work = cells_for(positions, m)
    while work:
        answers = await asyncio.gather(
            *(_search(transport, c, filters, want, limit, report) for c in work)
        )
        more: list[BBox] = []
        for cell, (items, full) in zip(work, answers, strict=True):
            for ent in items:
                if isinstance(ent, dict) and str(ent.get("id")) in positions:
                    out.found.setdefault(str(ent["id"]), ent)
            if not full:
                out.complete.append(cell)
            elif max(cell[2] - cell[0], cell[3] - cell[1]) > MIN_SPLIT:
                report.splits += 1
                more += [c for c in quarter(cell) if pending(c)]
        work = more
    return out
