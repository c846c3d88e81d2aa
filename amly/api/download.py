"""Download images (with EXIF written back) and GPS tracks of sequences from a box.

Images stream through a bounded pipeline: enumeration (:mod:`amly.api.search`) feeds at most
``concurrency`` workers; each worker fetches the entity with its signed thumbnail URL right
before it downloads (URLs expire: they are never stored), writes EXIF into the bytes
(:func:`amly.metadata.set_exif_bytes`) and writes ``OUT/<sequence>/<image>.jpg`` atomically.
Memory holds one image per worker, whatever the box holds.

Resume: ``OUT/.amly/manifest.sqlite3`` (the shared :class:`amly.journal.Journal`) records the
query and every finished image (its size and the entity fields its EXIF came from). A rerun
skips finished images whose file is still there at the same size; a crash loses nothing but
the images in flight. With tiles, a tile all of whose images ended well is recorded too, and
a rerun of the same query does not read it again while its files are all there (the tile
quota, 50,000 a day, is the scarce one). A rerun with another box or filters is a new query: the images it
shares with the old one are reused from disk, the others are downloaded, and files of the
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

from .._atomic import atomic_write
from ..errors import APIError, AuthError, MetadataError, UsageError
from ..journal import Journal
from ..types import Point
from ._http import Transport
from .search import (
    BASE_FIELDS,
    SEARCH_LIMIT,
    Candidate,
    EdgeDedup,
    Filters,
    SearchReport,
    accept_entity,
    bounded_map,
    candidates,
    check_bbox,
    check_image_id,
    check_sequence_id,
    fetch_entity,
    next_page,
    page_data,
)

__all__ = [
    "DownloadResult",
    "check_token",
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
MANIFEST = ".amly/manifest.sqlite3"
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


async def check_token(transport: Transport) -> dict[str, Any]:
    """``GET /me``: fail fast with :class:`AuthError` on a missing, invalid or expired token."""
    me = await transport.graph_get("me", {"fields": "id,username"})
    if not isinstance(me, dict) or "id" not in me:
        raise AuthError("the server did not confirm the token (/me answered no id)")
    return me


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
    query_changed: bool = False
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    report: SearchReport = dataclasses.field(default_factory=SearchReport)
    index: str | None = None

    def fail(self, ident: str, message: str, kind: str = "DownloadError") -> None:
        self.failed += 1
        self.failures.append({"file": ident, "type": kind, "error": message})


class _Manifest:
    """The download's resume state, in the shared journal format, kept inside ``OUT``."""

    def __init__(self, out: Path) -> None:
        self.journal = Journal(out / MANIFEST)
        self.queries = self.journal.table("download_query")
        self.images = self.journal.table("download_images")

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


def _open_manifest(out: Path, query: dict[str, Any]) -> tuple[_Manifest, bool]:
    out.mkdir(parents=True, exist_ok=True)
    # A killed run can leave atomic_write's temp files behind: never a visible half image,
    # but litter. Remove them (the manifest never points at them).
    for tmp in out.glob("*/.amly-*.tmp"):
        tmp.unlink(missing_ok=True)
    manifest = _Manifest(out)
    return manifest, manifest.start(query)


def _write_image(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def _geojson_chunks(part: Path) -> Iterator[bytes]:
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


async def _read_bytes(resp: Any) -> bytes:
    return bytes(await resp.read())


async def download_images(
    transport: Transport,
    bbox: Iterable[float],
    out: str | os.PathLike[str],
    *,
    size: str | int = "1024",
    filters: Filters | None = None,
    method: str = "tiles",
    max_results: int | None = None,
    concurrency: int = 32,
    search_limit: int = SEARCH_LIMIT,
    check_auth: bool = True,
    on_image: Callable[[str, str], None] | None = None,
) -> DownloadResult:
    """Download every image of the query into ``out`` (see the module docstring).

    ``on_image(id, status)`` is told of each image (``downloaded``, ``reused``, ``failed``)
    for progress bars. Raises :class:`UsageError` / :class:`AuthError` before any work for a
    bad box or size or a bad token."""
    box = check_bbox(bbox)
    size, _note = normalize_size(size)
    if method not in ("tiles", "search"):
        raise UsageError(f"unknown method {method!r} (tiles or search)")
    if max_results is not None and max_results < 0:
        raise UsageError("--max-results must be >= 0")
    filters = filters or Filters()
    if check_auth:
        await check_token(transport)
    from ..metadata import set_exif_bytes  # the metadata engineer's in-memory EXIF writer

    out_dir = Path(out)
    result = DownloadResult()
    query = {"bbox": list(box), "filters": filters.to_json(), "method": method, "size": size}
    manifest, result.query_changed = await asyncio.to_thread(_open_manifest, out_dir, query)
    part = out_dir / ".amly" / "index.part.jsonl"
    index_file = await asyncio.to_thread(open, part, "wb")
    field = thumb_field(size)
    want = set(ENTITY_FIELDS) | {field}
    accepted = 0
    completed = 0
    stop = asyncio.Event()

    def note(ident: str, status: str) -> None:
        if on_image is not None:
            on_image(ident, status)

    def index(ent: Mapping[str, Any], rel: str, lon: float, lat: float) -> None:
        line = json.dumps(feature(ent, rel, lon, lat), separators=(",", ":"))
        index_file.write(line.encode() + b"\n")

    async def resolve(ident: str) -> dict[str, Any]:
        return await fetch_entity(transport, ident, want)

    async def fetch_thumb(ident: str, ent: dict[str, Any]) -> bytes:
        for n in range(MAX_RESOLVES + 1):
            url = ent.get(field)
            if not isinstance(url, str) or not url:
                raise APIError(f"no {field} for image {ident}", status=404)
            try:
                data = await transport.request(
                    "GET", url, surface="download", auth=False, read=_read_bytes
                )
                return bytes(data)
            except AuthError:
                # Signed URLs expire: ask the entity for a fresh one (no token is sent to a CDN).
                if n == MAX_RESOLVES:
                    raise
                result.resolves += 1
                ent = await resolve(ident)
        raise AssertionError("unreachable")

    async def _one(c: Candidate) -> tuple[str, str | None]:
        nonlocal accepted, completed
        if stop.is_set():
            return "stopped", None
        # Only an image whose file exists can be reused: a stat spares the (locked) manifest
        # lookup for everything new, which is everything on a first run.
        maybe = c.sequence_id is None or (out_dir / c.sequence_id / f"{c.id}.jpg").exists()
        prev = manifest.finished(c.id) if maybe else None
        if prev is not None and prev.get("size") == size:
            rel = str(prev.get("path", ""))
            ent = prev.get("entity") or {}
            path = out_dir / rel
            hit = accept_entity(ent, box, filters, result.report)
            if hit is not None and path.is_file():
                if max_results is not None and accepted >= max_results:
                    stop.set()
                    return "stopped", None
                accepted += 1
                index(ent, rel, hit[2], hit[3])
                result.reused += 1
                completed += 1
                note(c.id, "reused")
                return "reused", c.id
        try:
            ent = await resolve(c.id)
        except AuthError:
            raise
        except APIError as e:
            if e.status is None:
                raise  # the server kept failing: stop the run, a rerun resumes
            result.fail(c.id, str(e), "EntityError")
            note(c.id, "failed")
            return "failed", None
        hit = accept_entity(ent, box, filters, result.report)
        if hit is None:
            return "skipped", None
        if max_results is not None and accepted >= max_results:
            stop.set()
            return "stopped", None
        accepted += 1
        ident, seq, lon, lat = hit
        rel = f"{seq}/{ident}.jpg"
        try:
            data = await fetch_thumb(ident, ent)
            exif: dict[str, Any] = {
                "capture_time": _capture_time(ent.get("captured_at")),
                "lat": lat,
                "lon": lon,
                "alt": _num(ent.get("altitude")),
                "heading": _heading(ent),
                "make": ent.get("make") if isinstance(ent.get("make"), str) else None,
                "model": ent.get("model") if isinstance(ent.get("model"), str) else None,
            }

            def finish(data: bytes = data) -> int:
                # EXIF, file and manifest in one thread hop: the event loop keeps transferring.
                data = set_exif_bytes(data, **exif)
                _write_image(out_dir / rel, data)
                manifest.record(ident, {"size": size, "path": rel, "entity": _slim(ent)})
                return len(data)

            written = await asyncio.to_thread(finish)
        except (AuthError, MetadataError, ValueError) as e:
            result.fail(ident, str(e), getattr(e, "kind", type(e).__name__))
            note(ident, "failed")
            return "failed", None
        except APIError as e:
            if e.status is None:
                raise
            result.fail(ident, str(e), "DownloadError")
            note(ident, "failed")
            return "failed", None
        else:
            result.downloaded += 1
            result.bytes += written
            index(ent, rel, lon, lat)
            note(ident, "downloaded")
            return "downloaded", ident
        finally:
            completed += 1

    # Tile-level resume (tiles method, no --max-results): a tile whose every candidate ended
    # well is recorded with the ids it contributed; a rerun of the same query does not read
    # it again if all those files are still there (the daily tile quota is the scarce one).
    query_key = hashlib.md5(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]
    tile_resume = method == "tiles" and max_results is None
    tiles_done = manifest.journal.table("download_tiles")
    open_tiles: dict[tuple[int, int, int], list[Any]] = {}  # tile -> [left, ok, ids, edge ids]
    dedup = EdgeDedup()  # shared with the enumeration: a skipped tile's edge images count

    def tile_key(t: tuple[int, int, int]) -> str:
        return f"{query_key}:{t[2]}/{t[0]}/{t[1]}"

    def on_tile(t: tuple[int, int, int], n: int, clean: bool) -> None:
        if n == 0:
            if clean:
                tiles_done.put(tile_key(t), {"ids": [], "edge": []})
        else:
            open_tiles[t] = [n, clean, [], []]

    def skip_tile(t: tuple[int, int, int]) -> bool:
        done = tiles_done.get(tile_key(t))
        if not isinstance(done, dict):
            return False
        ids, edge = done.get("ids") or [], set(done.get("edge") or [])
        hits = []
        for i in ids:
            prev = manifest.finished(str(i))
            if prev is None or prev.get("size") != size:
                return False
            rel, ent = str(prev.get("path", "")), prev.get("entity") or {}
            hit = accept_entity(ent, box, filters, result.report)
            if hit is None or not (out_dir / rel).is_file():
                return False
            hits.append((ent, rel, hit))
        for ent, rel, hit in hits:
            if not dedup.first(hit[0], edge=hit[0] in edge):
                continue  # a neighbouring tile reported it already
            index(ent, rel, hit[2], hit[3])
            result.reused += 1
            note(hit[0], "reused")
        return True

    def settle(c: Candidate, status: str, ident: str | None) -> None:
        state = open_tiles.get(c.tile) if c.tile is not None else None
        if state is None:
            return
        state[0] -= 1
        state[1] = state[1] and status in ("skipped", "reused", "downloaded")
        if ident is not None:
            state[2].append(ident)
            if c.edge:
                state[3].append(ident)
        if state[0] == 0:
            del open_tiles[c.tile]  # type: ignore[arg-type]
            if state[1]:
                entry = {"ids": state[2], "edge": state[3]}
                tiles_done.put(tile_key(c.tile), entry)  # type: ignore[arg-type]

    async def one(c: Candidate) -> None:
        status, ident = "error", None
        try:
            status, ident = await _one(c)
        finally:
            settle(c, status, ident)

    source = candidates(
        transport,
        box,
        filters,
        result.report,
        method=method,
        fields=ENTITY_FIELDS,
        concurrency=min(16, concurrency),
        search_limit=search_limit,
        skip_tile=skip_tile if tile_resume else None,
        on_tile=on_tile if tile_resume else None,
        dedup=dedup,
    )
    gen = bounded_map(source, one, concurrency)
    try:
        if max_results != 0:
            async for _ in gen:
                if stop.is_set() and completed >= accepted:
                    break
        for ident, reason in result.report.rejected:
            result.fail(ident, reason, "UnsafeIdError")
        index_file.close()
        index_path = out_dir / "index.geojson"
        await asyncio.to_thread(atomic_write, index_path, _geojson_chunks(part))
        result.index = str(index_path)
    finally:
        await gen.aclose()  # type: ignore[attr-defined]
        if not index_file.closed:
            index_file.close()
        manifest.close()
    return result


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
    transport: Transport, sequence_id: str, fields: Iterable[str] = TRACK_FIELDS
) -> list[dict[str, Any]]:
    """Every image entity of a sequence: one ``/images?sequence_id=`` search, or, if that is
    full (truncated), ``/image_ids?sequence_id=`` plus one entity request per image."""
    check_sequence_id(sequence_id)
    want = sorted(set(fields) | {"id"})
    answer = await transport.graph_get(
        "images",
        {"sequence_id": sequence_id, "fields": ",".join(want), "limit": str(SEARCH_LIMIT)},
        surface="search",
    )
    data = page_data(answer)
    nxt = next_page(answer)
    if nxt is not None:  # a paginating server: follow ``paging.next`` verbatim
        while nxt is not None:
            page = await transport.request("GET", nxt, surface="search")
            data += page_data(page)
            nxt = next_page(page)
        return [d for d in data if isinstance(d, dict)]
    if len(data) < SEARCH_LIMIT:
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
    out: str | os.PathLike[str],
    *,
    username: str | None = None,
    max_results: int | None = None,
    concurrency: int = 16,
    method: str = "tiles",
    check_auth: bool = True,
) -> GpxResult:
    """One GPX 1.1 file per sequence with images in ``bbox`` (``OUT/<sequence id>.gpx``),
    built from the whole sequence's images. ``max_results`` bounds the number of files;
    ``username`` keeps only that creator's sequences."""
    from ..gpx import track_to_gpx  # the geo engineer's writer

    box = check_bbox(bbox)
    if check_auth:
        await check_token(transport)
    out_dir = Path(out)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
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
        await asyncio.to_thread(atomic_write, out_dir / f"{seq}.gpx", data)
        result.written += 1

    gen = bounded_map(sequences(), one, concurrency)
    try:
        async for _ in gen:
            if max_results is not None and result.written >= max_results:
                break
    finally:
        await gen.aclose()  # type: ignore[attr-defined]
    for ident, reason in result.report.rejected:
        result.failures.append({"file": ident, "type": "UnsafeIdError", "error": reason})
    return result
