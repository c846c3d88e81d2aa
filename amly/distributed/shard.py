"""Split a box's z14 tiles into groups, and groups into shards, by a stable hash.

A *tile group* is the block of z14 tiles under one tile of a coarser zoom (z13 by default:
up to 2 x 2 z14 tiles). Groups are the unit of distributed work: one keyed Dask task, or the
share of one ``--shard K/N`` process. Which shard a group goes to depends on nothing but the
group's own coordinates (a BLAKE2 hash), so N processes on N machines agree without talking,
and a rerun assigns every group as before.

>>> spec = ShardSpec.parse("2/3")
>>> spec.index, spec.count, str(spec)
(2, 3, '2/3')
>>> box = (13.38, 52.50, 13.46, 52.54)
>>> groups = list(tile_groups(box))
>>> sum(len(g.tiles) for g in groups) == len(tiles_of(box))
True
>>> sorted(sum((ShardSpec(k, 3).select(groups) for k in (1, 2, 3)), [])) == sorted(groups)
True
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator

from ..errors import UsageError
from ..geo import tile, tile_bounds, validate_bbox
from ..types import BBox

__all__ = [
    "GROUP_ZOOM",
    "TILE_ZOOM",
    "ShardSpec",
    "TileGroup",
    "group_of",
    "stable_hash",
    "tile_groups",
    "tile_key",
    "tiles_of",
]

TILE_ZOOM = 14
#: Groups of up to 2 x 2 z14 tiles (~4 x 2.5 km at 50 degrees north): a city is tens of
#: tasks, a country tens of thousands, each a few minutes of one worker's time.
GROUP_ZOOM = 13

Tile = tuple[int, int, int]


def tile_key(t: Tile) -> str:
    """``z/x/y``: how a tile is named in keys, markers and hashes.

    >>> tile_key((8802, 5373, 14))
    '14/8802/5373'
    """
    x, y, z = t
    return f"{z}/{x}/{y}"


def stable_hash(text: str) -> int:
    """A hash that is the same in every process, on every machine, in every run (Python's
    ``hash`` of a string is salted per process).

    >>> stable_hash("12/2200/1343")
    7281790108420275420
    """
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def group_of(t: Tile, group_zoom: int = GROUP_ZOOM) -> Tile:
    """The group (a tile at ``group_zoom``) a z14 tile belongs to.

    >>> group_of((8802, 5373, 14))
    (4401, 2686, 13)
    """
    x, y, z = t
    shift = z - group_zoom
    if shift < 0:
        raise ValueError(f"group zoom {group_zoom} is finer than the tile zoom {z}")
    return x >> shift, y >> shift, group_zoom


@dataclasses.dataclass(frozen=True)
class TileGroup:
    """One unit of work: a group tile and the z14 tiles under it that touch the box."""

    group: Tile
    tiles: tuple[Tile, ...]

    @property
    def key(self) -> str:
        return tile_key(self.group)

    def __lt__(self, other: TileGroup) -> bool:
        return (self.group[2], self.group[1], self.group[0]) < (
            other.group[2],
            other.group[1],
            other.group[0],
        )


def _tile_range(box: BBox, zoom: int) -> tuple[int, int, int, int]:
    w, s, e, n = box
    x0, y0, _ = tile(w, n, zoom)
    # Nudge the east/south edges inwards: a box ending on a tile border stays out of it.
    x1, y1, _ = tile(e - 1e-9, s + 1e-9, zoom)
    return x0, y0, x1, y1


def tiles_of(bbox: BBox, zoom: int = TILE_ZOOM) -> list[Tile]:
    """Every tile at ``zoom`` touching the box, row by row (no size cap: a country is fine).

    >>> tiles_of((13.40, 52.51, 13.41, 52.52))
    [(8801, 5373, 14), (8802, 5373, 14)]
    """
    x0, y0, x1, y1 = _tile_range(validate_bbox(bbox), zoom)
    return [(x, y, zoom) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def tile_groups(bbox: BBox, group_zoom: int = GROUP_ZOOM) -> Iterator[TileGroup]:
    """The groups covering the box, lazily, each with its z14 tiles that touch the box.

    >>> [(g.key, len(g.tiles)) for g in tile_groups((13.40, 52.51, 13.41, 52.52))]
    [('13/4400/2686', 1), ('13/4401/2686', 1)]
    """
    box = validate_bbox(bbox)
    gx0, gy0, gx1, gy1 = _tile_range(box, group_zoom)
    x0, y0, x1, y1 = _tile_range(box, TILE_ZOOM)
    shift = TILE_ZOOM - group_zoom
    for gy in range(gy0, gy1 + 1):
        for gx in range(gx0, gx1 + 1):
            ts = tuple(
                (x, y, TILE_ZOOM)
                for y in range(max(y0, gy << shift), min(y1, ((gy + 1) << shift) - 1) + 1)
                for x in range(max(x0, gx << shift), min(x1, ((gx + 1) << shift) - 1) + 1)
            )
            if ts:
                yield TileGroup((gx, gy, group_zoom), ts)


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (1-based) of ``count``: the groups whose stable hash falls to it.

    >>> ShardSpec.parse("1/1").owns((2200, 1343, 12))
    True
    >>> [ShardSpec(k, 2).owns((2200, 1343, 12)) for k in (1, 2)].count(True)
    1
    >>> ShardSpec.parse("3/2")
    Traceback (most recent call last):
    ...
    amly.errors.UsageError: bad --shard '3/2': K must be between 1 and N
    """

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        k, sep, n = text.strip().partition("/")
        try:
            spec = cls(int(k), int(n))
        except ValueError:
            raise UsageError(
                f"bad --shard {text!r}: use K/N, e.g. 1/4 for the first of 4 shards"
            ) from None
        if not sep or spec.count < 1 or not 1 <= spec.index <= spec.count:
            raise UsageError(f"bad --shard {text!r}: K must be between 1 and N")
        return spec

    def owns(self, group: Tile) -> bool:
        return stable_hash(tile_key(group)) % self.count == self.index - 1

    def select(self, groups: Iterable[TileGroup]) -> list[TileGroup]:
        return [g for g in groups if self.owns(g.group)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def group_bounds(group: Tile) -> BBox:
    """The group tile's box in degrees."""
    return tile_bounds(*group)
