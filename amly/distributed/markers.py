"""Per-tile completion markers, kept in the job's sink beside the images.

A tile's marker is stored once every image the tile owns is stored, and holds those images'
index features. A worker that finds a tile's marker does not read the tile again; a worker
that re-runs a tile without one (the previous attempt was killed) finds the images already
stored (:meth:`Sink.exists`) and does not store them again. The job's ``index.geojson`` is
the markers' features, tile by tile: each image once, because each image is owned by exactly
one tile (the z14 tile of its exact position).

Markers live under ``.amly/tiles/<query>/<z>/<x>/<y>.json`` in the sink: ``<query>`` is a
digest of the box, filters and size, so another query in the same output starts its own
markers (and reuses the images both share). Reading a marker back needs a sink that can read
(:func:`read`): a local or shared folder can.

>>> import asyncio, tempfile
>>> from amly.storage import LocalFolder
>>> m = TileMarkers(LocalFolder(tempfile.mkdtemp()), query_key({"bbox": [1, 2, 3, 4]}))
>>> asyncio.run(m.get((1, 2, 14))) is None
True
>>> asyncio.run(m.put((1, 2, 14), [{"type": "Feature", "properties": {"id": "7"}}]))
>>> [f["properties"]["id"] for f in asyncio.run(m.get((1, 2, 14)))["features"]]
['7']
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..storage import Sink
from .shard import Tile, tile_key

__all__ = ["TileMarkers", "query_key", "read"]


async def read(sink: Sink, rel: str) -> bytes | None:
    """The bytes stored under ``rel`` (None when there are none): a sink's own ``read`` when
    it has one, else the file under a local folder's root."""
    reader = getattr(sink, "read", None)
    if reader is not None:
        return await reader(rel)
    root = getattr(sink, "root", None)
    if not isinstance(root, Path):
        raise UsageError(
            f"{sink.location}: this storage cannot read back completion markers",
            hint="use a folder every worker sees for --dask and --shard",
        )
    try:
        return await asyncio.to_thread((root / rel).read_bytes)
    except FileNotFoundError:
        return None


def query_key(query: dict[str, Any]) -> str:
    """A short digest naming a query (box, filters, size) in marker paths.

    >>> query_key({"bbox": [1, 2, 3, 4]}) == query_key({"bbox": [1, 2, 3, 4]})
    True
    """
    text = json.dumps(query, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TileMarkers:
    """The markers of one query in one sink."""

    def __init__(self, sink: Sink, query: str) -> None:
        self.sink = sink
        self.query = query

    def rel(self, t: Tile) -> str:
        return f".amly/tiles/{self.query}/{tile_key(t)}.json"

    async def get(self, t: Tile) -> dict[str, Any] | None:
        raw = await read(self.sink, self.rel(t))
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return None  # cannot happen with atomic writes; treat as not done
        return entry if isinstance(entry, dict) and entry.get("tile") == tile_key(t) else None

    async def put(self, t: Tile, features: list[dict[str, Any]], **info: Any) -> None:
        entry = {"tile": tile_key(t), "features": features, **info}
        await self.sink.put(self.rel(t), json.dumps(entry, separators=(",", ":")).encode())
