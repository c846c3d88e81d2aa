"""Per-tile completion markers, kept in the job's output beside the images.

A tile's marker is written once every image the tile owns is stored, and holds those images'
index features. A worker that finds a tile's marker does not read the tile again; a worker
that re-runs a tile without one (the previous attempt was killed) finds the images already
stored and does not store them again. The job's ``index.geojson`` is the markers' features,
tile by tile: each image once, because each image is owned by exactly one tile (the z14 tile
of its exact position).

Markers live under ``.amly/tiles/<query>/<z>/<x>/<y>.json``: ``<query>`` is a digest of the
box, filters and size, so another query in the same folder starts its own markers (and reuses
the images both share, found by :meth:`OutputStore.exists`).

>>> import tempfile
>>> store = LocalStore(tempfile.mkdtemp())
>>> m = TileMarkers(store, query_key({"bbox": [1, 2, 3, 4]}))
>>> m.get((1, 2, 14)) is None
True
>>> m.put((1, 2, 14), [{"type": "Feature", "properties": {"id": "7"}}])
>>> [f["properties"]["id"] for f in m.get((1, 2, 14))["features"]]
['7']
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from .._atomic import atomic_write
from .shard import Tile, tile_key

__all__ = ["LocalStore", "OutputStore", "TileMarkers", "index_chunks", "query_key"]


class OutputStore(Protocol):
    """Where a job's output goes, by paths relative to the output's root."""

    def exists(self, rel: str) -> bool: ...

    def read(self, rel: str) -> bytes | None: ...

    def write(self, rel: str, data: bytes | Iterable[bytes]) -> None: ...


class LocalStore:
    """A folder (local or a shared filesystem mounted on every worker); writes are atomic."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise ValueError(f"{rel!r} leaves the output folder")
        return p

    def exists(self, rel: str) -> bool:
        try:
            return self._path(rel).stat().st_size > 0
        except FileNotFoundError:
            return False

    def read(self, rel: str) -> bytes | None:
        try:
            return self._path(rel).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes | Iterable[bytes]) -> None:
        p = self._path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, data)


def query_key(query: dict[str, Any]) -> str:
    """A short digest naming a query (box, filters, size) in marker paths.

    >>> query_key({"bbox": [1, 2, 3, 4]}) == query_key({"bbox": [1, 2, 3, 4]})
    True
    """
    text = json.dumps(query, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TileMarkers:
    """The markers of one query in one output."""

    def __init__(self, store: OutputStore, query: str) -> None:
        self.store = store
        self.query = query

    def rel(self, t: Tile) -> str:
        return f".amly/tiles/{self.query}/{tile_key(t)}.json"

    def get(self, t: Tile) -> dict[str, Any] | None:
        raw = self.store.read(self.rel(t))
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return None  # cannot happen with atomic writes; treat as not done
        return entry if isinstance(entry, dict) and entry.get("tile") == tile_key(t) else None

    def put(self, t: Tile, features: list[dict[str, Any]], **info: Any) -> None:
        entry = {"tile": tile_key(t), "features": features, **info}
        self.store.write(self.rel(t), json.dumps(entry, separators=(",", ":")).encode())


def index_chunks(markers: TileMarkers, tiles: Iterable[Tile]) -> Iterator[bytes]:
    """``index.geojson`` of ``tiles`` from their markers, streamed (a tile without a marker
    contributes nothing: the caller checks every tile finished)."""
    yield b'{"type":"FeatureCollection","features":[\n'
    first = True
    for t in tiles:
        entry = markers.get(t)
        for feat in (entry or {}).get("features", []):
            yield (b"" if first else b",\n") + json.dumps(feat, separators=(",", ":")).encode()
            first = False
    yield b"\n]}\n"
