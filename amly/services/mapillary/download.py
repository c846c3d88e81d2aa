"""Download images (with EXIF written back) and GPS tracks of sequences from a box.

Images stream through a bounded pipeline (:class:`ImageDownload`): enumeration
(:mod:`.tiles` or :mod:`.search`) feeds at most ``concurrency`` workers. The enumeration's
searches already answer each image's metadata and signed thumbnail URL (tiles: a few bbox
searches per tile, :mod:`.bulk`), so a worker asks for the entity only when no answer
described the image, or when the CDN says the URL expired (URLs are never stored); it
writes EXIF into the bytes (:func:`amly.metadata.set_exif_bytes`) and stores
``<sequence>/<image>.jpg`` atomically in a :class:`~amly.storage.Sink` (a local folder, or
object storage). About one request per image, the image's own included. Memory holds one
image per worker and the metadata of the tiles in flight, whatever the box holds.

Resume: ``.amly/manifest.sqlite3`` (the shared :class:`amly.journal.Journal`) records the
query and every finished image (its size and the entity fields its EXIF came from). A rerun
skips finished images whose file is still there at the same size; a crash loses nothing but
the images in flight. With tiles, a tile all of whose images ended well is recorded too, and
a rerun of the same query does not read it again while its files are all there (the tile
quota, 50,000 a day, is the scarce one). A rerun with another box or filters is a new query:
the images it shares with the old one are reused from disk, the others are downloaded, and files of the
old query that are not in the new one stay on disk but are left out of ``index.geojson``
(which always describes the latest query). A different ``--size`` downloads again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...errors import APIError, AuthError, MetadataError, UsageError
from ...journal import Journal
from ...metadata import set_exif_bytes
from ...net import Transport
from ...net.flow import bounded_map
from ...net.transport import read_bytes
from ...storage import Sink, open_sink
from ...types import BBox, Point
from .bulk import REQUIRED as BULK_REQUIRED
from .query import (
    BASE_FIELDS,
    SEARCH_LIMIT,
    Candidate,
    EdgeDedup,
    Filters,
    SearchReport,
    accept_entity,
    check_bbox,
    check_image_id,
    check_sequence_id,
    fetch_entity,
    search_pages,
)
from .search import candidates
from .tiles import Tile

__all__ = [
    "DownloadResult",
    "GpxResult",
    "ImageDownload",
    "download_gpx",
    "download_images",
    "normalize_size",
    "sequence_track",
]

SIZES = ("256", "1024", "2048", "original")
LEGACY_SIZES = {"320": "256", "640": "1024"}
#: Entity fields the EXIF, the index and the exact filter need.
ENTITY_FIELDS = (
    *BASE_FIELDS,
    "altitude",
    "compass_angle",
    "computed_compass_angle",
    "make",
    "model",
    "width",
    "height",
)
MANIFEST_FILE = "manifest.sqlite3"
INDEX_FILE = "index.geojson"
#: How often an expired (403) thumbnail URL is re-resolved before the image counts as failed.
MAX_RESOLVES = 3


def normalize_size(size: str | int) -> tuple[str, str | None]:
    """The thumbnail size to ask for and a note when a legacy size was mapped.

    >>> normalize_size(1024), normalize_size("640")[0], normalize_size("original")
    (('1024', None), '1024', ('original', None))
    >>> normalize_size(300)
    Traceback (most recent call last):
    ...
    amly.errors.UsageError: unknown image size '300' (choose 256, 1024, 2048 or original)
    """
    text = str(size).strip().lower()
    if text in LEGACY_SIZES:
        new = LEGACY_SIZES[text]
        return new, f"size {text} no longer exists on Mapillary: using {new}"
    if text not in SIZES:
        raise UsageError(f"unknown image size {str(size)!r} (choose 256, 1024, 2048 or original)")
    return text, None


def thumb_field(size: str) -> str:
    """``thumb_<size>_url``.

    >>> thumb_field("2048")
    'thumb_2048_url'
    """
    return f"thumb_{size}_url"


def _capture_time(ms: Any) -> datetime | None:
    if not isinstance(ms, (int, float)):
        return None
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


def _heading(ent: Mapping[str, Any]) -> float | None:
    for key in ("compass_angle", "computed_compass_angle"):
        v = ent.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v) % 360.0
    return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def feature(ent: Mapping[str, Any], path: str, lon: float, lat: float) -> dict[str, Any]:
    """One GeoJSON feature of ``index.geojson``.

    >>> feature({"id": "1", "sequence": "s", "captured_at": 5}, "s/1.jpg", 1.0, 2.0)["geometry"]
    {'type': 'Point', 'coordinates': [1.0, 2.0]}
    """
    creator = ent.get("creator")
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "id": str(ent.get("id")),
            "sequence_id": ent.get("sequence"),
            "captured_at": ent.get("captured_at"),
            "compass_angle": _heading(ent),
            "altitude": _num(ent.get("altitude")),
            "is_pano": ent.get("is_pano"),
            "creator": creator.get("username") if isinstance(creator, dict) else None,
            "make": ent.get("make"),
            "model": ent.get("model"),
            "path": path,
        },
    }


def _slim(ent: Mapping[str, Any]) -> dict[str, Any]:
    """What the manifest keeps of an entity: never a (signed, expiring) URL."""
    return {k: ent[k] for k in ENTITY_FIELDS if k in ent}


@dataclasses.dataclass
class DownloadResult:
    """Counts and failures of a download run."""

    downloaded: int = 0
    reused: int = 0
    failed: int = 0
    bytes: int = 0
    #: Thumbnail URLs resolved again after the CDN refused them (expired).
    resolves: int = 0
    #: Entity requests for images the enumeration's answers did not describe.
    lookups: int = 0
    query_changed: bool = False
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    report: SearchReport = dataclasses.field(default_factory=SearchReport)
    index: str | None = None

    def fail(self, ident: str, message: str, kind: str = "DownloadError") -> None:
        self.failed += 1
        self.failures.append({"file": ident, "type": kind, "error": message})


class Manifest:
    """A download's resume state, in the shared journal format, in the sink's state folder:
    the query, every finished image, and (tiles) every finished tile."""

    def __init__(self, state_dir: Path) -> None:
        self.journal = Journal(state_dir / MANIFEST_FILE)
        self.queries = self.journal.table("download_query")
        self.images = self.journal.table("download_images")
        self.tiles = self.journal.table("download_tiles")

    def start(self, query: dict[str, Any]) -> bool:
        """Record the query; returns whether it differs from the previous run's."""
        old = self.queries.get("query")
        self.queries.put("query", query)
        return old is not None and old != query

    def finished(self, ident: str) -> dict[str, Any] | None:
        entry = self.images.get(ident)
        return entry if isinstance(entry, dict) else None

    def record(self, ident: str, entry: dict[str, Any]) -> None:
        self.images.put(ident, entry)

    def close(self) -> None:
        self.journal.close()


@dataclasses.dataclass
class TileState:
    """A tile whose candidates are still being downloaded: once ``left`` reaches 0 and every
    one ended well (``clean``), the tile is recorded as done with the ids it contributed."""

    left: int
    clean: bool
    ids: list[str] = dataclasses.field(default_factory=list)
    edge_ids: list[str] = dataclasses.field(default_factory=list)


def geojson_chunks(part: Path) -> Iterator[bytes]:
    yield b'{"type":"FeatureCollection","features":[\n'
    first = True
    with open(part, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            yield (b"" if first else b",\n") + line
            first = False
    yield b"\n]}\n"


class ImageDownload:
    """One run of :func:`download_images`: enumeration feeds at most ``concurrency`` image
    jobs; each resolves the entity (a fresh signed URL), fetches the thumbnail, writes EXIF
    into it and stores it in the sink, recording it in the manifest in the same step."""

    def __init__(
        self,
        transport: Transport,
        box: BBox,
        sink: Sink,
        *,
        size: str,
        filters: Filters,
        method: str,
        max_results: int | None,
        concurrency: int,
        search_limit: int,
        on_image: Callable[[str, str], None] | None,
    ) -> None:
        self.transport = transport
        self.box = box
        self.sink = sink
        self.size = size
        self.filters = filters
        self.method = method
        self.max_results = max_results
        self.concurrency = concurrency
        self.search_limit = search_limit
        self.on_image = on_image
        self.result = DownloadResult()
        self.query = {
            "bbox": list(box),
            "filters": filters.to_json(),
            "method": method,
            "size": size,
        }
        self.field = thumb_field(size)
        self.want = set(ENTITY_FIELDS) | {self.field}
        self.accepted = 0  # images taken towards max_results
        self.completed = 0  # of those, the ones that ended (well or not)
        self.stop = asyncio.Event()
        # Tile-level resume (tiles method, no max_results): a tile whose every candidate
        # ended well is recorded with the ids it contributed; a rerun of the same query does
        # not read it again while those files are there (the daily tile quota is scarce).
        self.tile_resume = method == "tiles" and max_results is None
        self.query_key = hashlib.md5(json.dumps(self.query, sort_keys=True).encode()).hexdigest()[
            :16
        ]
        self.open_tiles: dict[Tile, TileState] = {}
        self.dedup = EdgeDedup()  # shared with the enumeration: a skipped tile's edge images
        self.manifest: Manifest
        self.index_file: Any = None

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> DownloadResult:
        await self.sink.open()
        self.manifest = await asyncio.to_thread(Manifest, self.sink.state_dir)
        self.result.query_changed = self.manifest.start(self.query)
        part = self.sink.state_dir / "index.part.jsonl"
        self.index_file = await asyncio.to_thread(open, part, "wb")
        source = candidates(
            self.transport,
            self.box,
            self.filters,
            self.result.report,
            method=self.method,
            # Metadata and the signed thumbnail URL in bulk, from searches: an entity request
            # is made only for an image no answer described.
            fields=(*ENTITY_FIELDS, self.field),
            concurrency=min(16, self.concurrency),
            search_limit=self.search_limit,
            skip_tile=self.skip_tile if self.tile_resume else None,
            on_tile=self.on_tile if self.tile_resume else None,
            dedup=self.dedup,
            bulk=True,
        )
        gen = bounded_map(source, self.one, self.concurrency)
        try:
            if self.max_results != 0:
                async for _ in gen:
                    if self.stop.is_set() and self.completed >= self.accepted:
                        break
            for ident, reason in self.result.report.rejected:
                self.result.fail(ident, reason, "UnsafeIdError")
            self.index_file.close()
            await self.sink.put_stream(INDEX_FILE, geojson_chunks(part))
            self.result.index = f"{self.sink.location.rstrip('/')}/{INDEX_FILE}"
        finally:
            await gen.aclose()  # type: ignore[attr-defined]
            if not self.index_file.closed:
                self.index_file.close()
            self.manifest.close()
            await self.sink.close()
        return self.result

    def note(self, ident: str, status: str) -> None:
        if self.on_image is not None:
            self.on_image(ident, status)

    def index(self, ent: Mapping[str, Any], rel: str, lon: float, lat: float) -> None:
        line = json.dumps(feature(ent, rel, lon, lat), separators=(",", ":"))
        self.index_file.write(line.encode() + b"\n")

    def take(self) -> bool:
        """Count one more image towards ``max_results``; False (and stop) once it is met."""
        if self.max_results is not None and self.accepted >= self.max_results:
            self.stop.set()
            return False
        self.accepted += 1
        return True

    # -- one image ----------------------------------------------------------------------------

    async def one(self, c: Candidate) -> None:
        status, ident = "error", None
        try:
            status, ident = await self._one(c)
        finally:
            self.settle(c, status, ident)

    async def _reuse(self, c: Candidate) -> bool:
        """Whether the manifest and the sink already hold this image for this size (then
        indexed and counted as reused)."""
        prev = self.manifest.finished(c.id)
        if prev is None or prev.get("size") != self.size:
            return False
        rel, ent = str(prev.get("path", "")), prev.get("entity") or {}
        hit = accept_entity(ent, self.box, self.filters, self.result.report)
        if hit is None or not await self.sink.exists(rel):
            return False
        if not self.take():
            return True
        self.index(ent, rel, hit[2], hit[3])
        self.result.reused += 1
        self.completed += 1
        self.note(c.id, "reused")
        return True

    async def _one(self, c: Candidate) -> tuple[str, str | None]:
        if self.stop.is_set():
            return "stopped", None
        # Only an image whose file exists can be reused: asking the sink first spares the
        # (locked) manifest lookup for everything new, which is everything on a first run.
        maybe = c.sequence_id is None or await self.sink.exists(f"{c.sequence_id}/{c.id}.jpg")
        if maybe and await self._reuse(c):
            return ("reused", c.id) if not self.stop.is_set() else ("stopped", None)
        try:
            ent = self.described(c)
            if ent is None:
                self.result.lookups += 1
                ent = await fetch_entity(self.transport, c.id, self.want)
        except AuthError:
            raise
        except APIError as e:
            if e.status is None:
                raise  # the server kept failing: stop the run, a rerun resumes
            self.result.fail(c.id, str(e), "EntityError")
            self.note(c.id, "failed")
            return "failed", None
        hit = accept_entity(ent, self.box, self.filters, self.result.report)
        if hit is None:
            return "skipped", None
        if not self.take():
            return "stopped", None
        ident, seq, lon, lat = hit
        rel = f"{seq}/{ident}.jpg"
        try:
            data = await self.fetch_thumb(ident, ent)
            exif: dict[str, Any] = {
                "capture_time": _capture_time(ent.get("captured_at")),
                "lat": lat,
                "lon": lon,
                "alt": _num(ent.get("altitude")),
                "heading": _heading(ent),
                "make": ent.get("make") if isinstance(ent.get("make"), str) else None,
                "model": ent.get("model") if isinstance(ent.get("model"), str) else None,
            }
            entry = {"size": self.size, "path": rel, "entity": _slim(ent)}
            written = await self.sink.put(
                rel,
                data,
                before=lambda b: set_exif_bytes(b, **exif),
                after=lambda: self.manifest.record(ident, entry),
            )
        except (AuthError, MetadataError, ValueError) as e:
            self.result.fail(ident, str(e), getattr(e, "kind", type(e).__name__))
            self.note(ident, "failed")
            return "failed", None
        except APIError as e:
            if e.status is None:
                raise
            self.result.fail(ident, str(e), "DownloadError")
            self.note(ident, "failed")
            return "failed", None
        else:
            self.result.downloaded += 1
            self.result.bytes += written
            self.index(ent, rel, lon, lat)
            self.note(ident, "downloaded")
            return "downloaded", ident
        finally:
            self.completed += 1

    def described(self, c: Candidate) -> dict[str, Any] | None:
        """The enumeration's answer for ``c`` if it holds all a download needs (then no
        entity request is made for it); its signed URL is fresh enough, and re-resolved if
        the CDN says it expired."""
        ent = c.entity
        if ent is None or self.field not in ent or any(k not in ent for k in BULK_REQUIRED):
            return None
        return dict(ent)

    async def fetch_thumb(self, ident: str, ent: dict[str, Any]) -> bytes:
        """The thumbnail's bytes; an expired signed URL (403) is resolved again."""
        for n in range(MAX_RESOLVES + 1):
            url = ent.get(self.field)
            if not isinstance(url, str) or not url:
                raise APIError(f"no {self.field} for image {ident}", status=404)
            try:
                data = await self.transport.request(
                    "GET", url, surface="download", auth=False, read=read_bytes
                )
                return bytes(data)
            except AuthError:
                # Signed URLs expire: ask the entity for a fresh one (no token goes to a CDN).
                if n == MAX_RESOLVES:
                    raise
                self.result.resolves += 1
                ent = await fetch_entity(self.transport, ident, self.want)
        raise AssertionError("unreachable")

    # -- tiles --------------------------------------------------------------------------------

    def tile_key(self, t: Tile) -> str:
        return f"{self.query_key}:{t[2]}/{t[0]}/{t[1]}"

    def on_tile(self, t: Tile, n: int, clean: bool) -> None:
        if n == 0:
            if clean:
                self.manifest.tiles.put(self.tile_key(t), {"ids": [], "edge": []})
        else:
            self.open_tiles[t] = TileState(n, clean)

    async def skip_tile(self, t: Tile) -> bool:
        """Whether a tile is done already: recorded, and every image it contributed still
        finished and stored (then they are indexed and counted as reused)."""
        done = self.manifest.tiles.get(self.tile_key(t))
        if not isinstance(done, dict):
            return False
        ids, edge = done.get("ids") or [], set(done.get("edge") or [])
        hits = []
        for i in ids:
            prev = self.manifest.finished(str(i))
            if prev is None or prev.get("size") != self.size:
                return False
            rel, ent = str(prev.get("path", "")), prev.get("entity") or {}
            hit = accept_entity(ent, self.box, self.filters, self.result.report)
            if hit is None or not await self.sink.exists(rel):
                return False
            hits.append((ent, rel, hit))
        for ent, rel, hit in hits:
            if not self.dedup.first(hit[0], edge=hit[0] in edge):
                continue  # a neighbouring tile reported it already
            self.index(ent, rel, hit[2], hit[3])
            self.result.reused += 1
            self.note(hit[0], "reused")
        return True

    def settle(self, c: Candidate, status: str, ident: str | None) -> None:
        state = self.open_tiles.get(c.tile) if c.tile is not None else None
        if state is None or c.tile is None:
            return
        state.left -= 1
        state.clean = state.clean and status in ("skipped", "reused", "downloaded")
        if ident is not None:
            state.ids.append(ident)
            if c.edge:
                state.edge_ids.append(ident)
        if state.left == 0:
            del self.open_tiles[c.tile]
            if state.clean:
                entry = {"ids": state.ids, "edge": state.edge_ids}
                self.manifest.tiles.put(self.tile_key(c.tile), entry)


async def download_images(
    transport: Transport,
    bbox: Iterable[float],
    out: str | os.PathLike[str] | Sink,
    *,
    size: str | int = "1024",
    filters: Filters | None = None,
    method: str = "tiles",
    max_results: int | None = None,
    concurrency: int = 32,
    search_limit: int = SEARCH_LIMIT,
    on_image: Callable[[str, str], None] | None = None,
) -> DownloadResult:
    """Download every image of the query into ``out`` (a folder or a :class:`Sink`; see the
    module docstring).

    ``on_image(id, status)`` is told of each image (``downloaded``, ``reused``, ``failed``)
    for progress bars. Raises :class:`UsageError` for a bad box, size or method before any
    work."""
    box = check_bbox(bbox)
    size, _note = normalize_size(size)
    if method not in ("tiles", "search"):
        raise UsageError(f"unknown enumeration method {method!r} (tiles or search)")
    if max_results is not None and max_results < 0:
        raise UsageError("max_results must be >= 0")
    sink = open_sink(out) if isinstance(out, (str, os.PathLike)) else out
    return await ImageDownload(
        transport,
        box,
        sink,
        size=size,
        filters=filters or Filters(),
        method=method,
        max_results=max_results,
        concurrency=concurrency,
        search_limit=search_limit,
        on_image=on_image,
    ).run()


# --- GPS tracks -----------------------------------------------------------------------------

TRACK_FIELDS = ("id", "captured_at", "geometry", "altitude", "compass_angle", "creator")


def _points(entities: Iterable[Mapping[str, Any]]) -> list[Point]:
    pts = []
    for ent in entities:
        t = _capture_time(ent.get("captured_at"))
        geom = ent.get("geometry")
        try:
            lon, lat = float(geom["coordinates"][0]), float(geom["coordinates"][1])  # type: ignore[index]
        except (TypeError, KeyError, ValueError, IndexError):
            continue
        if t is None:
            continue
        pts.append(Point(t, lat, lon, _num(ent.get("altitude")), _heading(ent)))
    pts.sort(key=lambda p: p.time)
    return pts


async def sequence_entities(
    transport: Transport,
    sequence_id: str,
    fields: Iterable[str] = TRACK_FIELDS,
    report: SearchReport | None = None,
) -> list[dict[str, Any]]:
    """Every image entity of a sequence: one ``/images?sequence_id=`` search (its pages
    followed), or, if that is full (truncated), ``/image_ids?sequence_id=`` plus one entity
    request per image."""
    check_sequence_id(sequence_id)
    want = sorted(set(fields) | {"id"})
    params = {"sequence_id": sequence_id, "fields": ",".join(want), "limit": str(SEARCH_LIMIT)}
    data, paged = await search_pages(transport, params, report or SearchReport())
    if paged or len(data) < SEARCH_LIMIT:
        return [d for d in data if isinstance(d, dict)]
    ids_answer = await transport.graph_get(
        "image_ids", {"sequence_id": sequence_id}, surface="search"
    )
    ids = [check_image_id(d.get("id")) for d in ids_answer.get("data", [])]

    async def ids_source() -> AsyncIterator[str]:
        for i in ids:
            yield i

    return [
        e async for e in bounded_map(ids_source(), lambda i: fetch_entity(transport, i, want), 16)
    ]


async def sequence_track(transport: Transport, sequence_id: str) -> list[Point]:
    """The time-ordered positions (with altitude and heading when known) of a sequence."""
    return _points(await sequence_entities(transport, sequence_id))


@dataclasses.dataclass
class GpxResult:
    written: int = 0
    skipped_user: int = 0
    empty: int = 0
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    report: SearchReport = dataclasses.field(default_factory=SearchReport)


async def download_gpx(
    transport: Transport,
    bbox: Iterable[float],
    out: str | os.PathLike[str] | Sink,
    *,
    username: str | None = None,
    max_results: int | None = None,
    concurrency: int = 16,
    method: str = "tiles",
) -> GpxResult:
    """One GPX 1.1 file per sequence with images in ``bbox`` (``OUT/<sequence id>.gpx``),
    built from the whole sequence's images. ``max_results`` bounds the number of files;
    ``username`` keeps only that creator's sequences."""
    from ...gpx import track_to_gpx

    box = check_bbox(bbox)
    sink = open_sink(out) if isinstance(out, (str, os.PathLike)) else out
    await sink.open()
    result = GpxResult()
    filters = Filters(username=username)
    seen: set[str] = set()  # sequences, not images: small
    started = 0
    reserved = 0

    async def sequences() -> AsyncIterator[str]:
        nonlocal started
        async for c in candidates(
            transport, box, filters, result.report, method=method, concurrency=concurrency
        ):
            seq = c.sequence_id
            if seq is None:
                ent = await fetch_entity(transport, c.id, ("id", "sequence", "geometry"))
                seq = check_sequence_id(ent.get("sequence"))
            if seq in seen:
                continue
            seen.add(seq)
            if max_results is not None and started >= max_results and username is None:
                return
            started += 1
            yield seq

    async def one(seq: str) -> None:
        ents = await sequence_entities(transport, seq)
        if username is not None:
            names = {
                e["creator"].get("username") for e in ents if isinstance(e.get("creator"), dict)
            }
            if username not in names:
                result.skipped_user += 1
                return
        points = _points(ents)
        if not points:
            result.empty += 1
            return
        nonlocal reserved
        if max_results is not None and reserved >= max_results:
            return
        reserved += 1  # counted before the write, so the run stops only once it is on disk
        text = track_to_gpx(points, name=seq)
        data = text.encode() if isinstance(text, str) else text
        await sink.put(f"{seq}.gpx", data)
        result.written += 1

    gen = bounded_map(sequences(), one, concurrency)
    try:
        async for _ in gen:
            if max_results is not None and result.written >= max_results:
                break
    finally:
        await gen.aclose()  # type: ignore[attr-defined]
        await sink.close()
    for ident, reason in result.report.rejected:
        result.failures.append({"file": ident, "type": "UnsafeIdError", "error": reason})
    return result
