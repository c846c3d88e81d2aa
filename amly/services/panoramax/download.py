"""Download pictures of a box from Panoramax through its STAC search, into a
:class:`~amly.storage.Sink`, exactly as Mapillary downloads are written.

``GET /api/search?bbox=...&limit=N`` pages are followed by their ``next`` links; each feature's
asset (``hd``: the original, ``sd``: 2048 px wide, ``thumb``: 500 px) is fetched by at most
``concurrency`` workers, its position, capture time, heading and camera written into the EXIF
(:func:`amly.metadata.set_exif_bytes`, the server's own asset may have lost them: SD and thumb
do), and stored as ``<collection>/<picture>.jpg`` atomically, recorded in the same
``.amly/manifest.sqlite3`` as Mapillary downloads: a rerun skips finished pictures whose file is
still there. ``index.geojson`` describes the run's query.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import APIError, AuthError, MetadataError, UsageError
from ...metadata import set_exif_bytes
from ...net.flow import bounded_map
from ...net.transport import read_bytes
from ...storage import Sink, open_sink
from ...types import BBox
from ..mapillary.download import INDEX_FILE, DownloadResult, Manifest, geojson_chunks
from .api import PanoramaxAPI, error_from

SIZES = ("hd", "sd", "thumb")
PAGE_LIMIT = 100


@dataclasses.dataclass(frozen=True)
class Picture:
    """What the download needs of one STAC item."""

    id: str
    collection: str
    lon: float
    lat: float
    time: datetime | None
    heading: float | None
    make: str | None
    model: str | None
    producer: str | None
    href: str

    def rel(self) -> str:
        return f"{self.collection}/{self.id}.jpg"

    def feature(self) -> dict[str, Any]:
        return {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [self.lon, self.lat]},
            "properties": {
                "id": self.id,
                "sequence_id": self.collection,
                "captured_at": self.time.isoformat() if self.time else None,
                "compass_angle": self.heading,
                "creator": self.producer,
                "make": self.make,
                "model": self.model,
                "path": self.rel(),
            },
        }


def picture(item: Mapping[str, Any], size: str) -> Picture | None:
    """A STAC item as a :class:`Picture` (None when it lacks what a download needs).

    >>> p = picture({"id": "p1", "collection": "c1", "geometry": {"coordinates": [2.5, 48.1]},
    ...   "properties": {"datetime": "2024-06-01T10:00:00+00:00", "view:azimuth": 90},
    ...   "assets": {"hd": {"href": "http://x/hd.jpg"}}}, "hd")
    >>> p.rel(), p.heading, p.time.isoformat()
    ('c1/p1.jpg', 90.0, '2024-06-01T10:00:00+00:00')
    """
    try:
        ident, coll = str(item["id"]), str(item["collection"])
        lon, lat = (float(v) for v in item["geometry"]["coordinates"][:2])
        href = str(item["assets"][size]["href"])
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if not _safe(ident) or not _safe(coll):
        return None
    props = item.get("properties") or {}
    try:
        when = datetime.fromisoformat(str(props.get("datetime")).replace("Z", "+00:00"))
    except ValueError:
        when = None
    az = props.get("view:azimuth")
    cam = props.get("pers:interior_orientation") or {}
    providers = item.get("providers") or []
    producer = next((p.get("name") for p in providers if "producer" in p.get("roles", [])), None)
    return Picture(
        ident,
        coll,
        lon,
        lat,
        when,
        float(az) if isinstance(az, (int, float)) else None,
        cam.get("camera_manufacturer"),
        cam.get("camera_model"),
        producer or props.get("geovisio:producer"),
        href,
    )


def _safe(ident: str) -> bool:
    """Ids become file names: only plain ids (uuids) are accepted."""
    return bool(ident) and len(ident) <= 64 and all(c.isalnum() or c in "-_" for c in ident)


async def search(
    api: PanoramaxAPI, bbox: BBox, limit: int = PAGE_LIMIT
) -> AsyncIterator[dict[str, Any]]:
    """Every STAC item of the box, page after page by the ``next`` links."""
    w, s, e, n = bbox
    page = await api.call("GET", "search", params={"bbox": f"{w},{s},{e},{n}", "limit": limit})
    while True:
        for item in (page or {}).get("features") or []:
            yield item
        nxt = [
            link.get("href")
            for link in (page or {}).get("links") or []
            if link.get("rel") == "next"
        ]
        if not nxt or not nxt[0]:
            return
        page = await _get_url(api, str(nxt[0]))


async def _get_url(api: PanoramaxAPI, url: str) -> Any:
    """GET an absolute link of the API (a ``next`` page) under the retry policy."""
    session = api.transport.session_for(url)

    async def attempt(n: int) -> Any:
        async with session.get(url, headers=api.headers()) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise error_from(resp.status, _json(raw), resp.headers)
            return json.loads(raw)

    return await api.transport.retrying(attempt, surface="search", what="search page")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def download_images(
    api: PanoramaxAPI,
    bbox: BBox,
    out: str | Sink,
    *,
    size: str = "hd",
    concurrency: int = 16,
    max_results: int | None = None,
    on_image: Callable[[str, str], None] | None = None,
) -> DownloadResult:
    """Download the box's pictures into ``out`` (a folder or a :class:`Sink`); resumable."""
    if size not in SIZES:
        raise UsageError(f"--size for Panoramax is one of {', '.join(SIZES)}, not {size!r}")
    await api.configuration()
    sink = open_sink(out) if isinstance(out, (str, Path)) else out
    await sink.open()
    res = DownloadResult()
    manifest = Manifest(sink.state_dir)
    query = {"service": "panoramax", "api": api.base, "bbox": list(bbox), "size": size}
    res.query_changed = manifest.start(query)
    part = sink.state_dir / "index.part.jsonl"
    index = await asyncio.to_thread(open, part, "wb")
    taken = {"n": 0}

    async def items() -> AsyncIterator[Picture]:
        seen: set[str] = set()
        async for item in search(api, bbox):
            pic = picture(item, size)
            if pic is None or pic.id in seen:
                continue
            if max_results is not None and taken["n"] >= max_results:
                return
            seen.add(pic.id)
            taken["n"] += 1
            yield pic

    async def one(pic: Picture) -> tuple[Picture, str]:
        rel = pic.rel()
        done = manifest.finished(pic.id)
        if done and done.get("size_kind") == size and await sink.exists(rel):
            return pic, "reused"
        try:
            data = await _fetch(api, pic.href)
        except AuthError:
            raise
        except APIError as e:
            res.fail(pic.id, f"download failed: {e.message}")
            return pic, "failed"

        def exif(raw: bytes) -> bytes:
            return set_exif_bytes(
                raw,
                capture_time=pic.time,
                lat=pic.lat,
                lon=pic.lon,
                heading=pic.heading,
                make=pic.make,
                model=pic.model,
                gps_time=pic.time,
                name=rel,
            )

        def record() -> None:
            manifest.record(pic.id, {"size_kind": size, "rel": rel, **pic.feature()["properties"]})

        try:
            res.bytes += await sink.put(rel, data, before=exif, after=record)
        except MetadataError as e:
            res.fail(pic.id, f"not a JPEG the EXIF writer can edit: {e.message}")
            return pic, "failed"
        return pic, "downloaded"

    try:
        async for pic, status in bounded_map(items(), one, max(1, concurrency)):
            if status == "downloaded":
                res.downloaded += 1
            elif status == "reused":
                res.reused += 1
            if status != "failed":
                index.write(json.dumps(pic.feature(), separators=(",", ":")).encode() + b"\n")
            if on_image is not None:
                on_image(pic.id, status)
        index.close()
        await sink.put_stream(INDEX_FILE, geojson_chunks(part))
        res.index = f"{sink.location.rstrip('/')}/{INDEX_FILE}"
    finally:
        if not index.closed:
            index.close()
        manifest.close()
        await sink.close()
    return res


async def _fetch(api: PanoramaxAPI, url: str) -> bytes:
    session = api.transport.session_for(url)

    async def attempt(n: int) -> bytes:
        async with session.get(url, headers=api.headers()) as resp:
            if resp.status >= 400:
                raise error_from(resp.status, _json(await resp.read()), resp.headers)
            data = await read_bytes(resp)
        api.transport.stats["bytes_received"] += len(data)
        return data

    return await api.transport.retrying(
        attempt, surface="download", what=f"download of {hashlib.md5(url.encode()).hexdigest()[:8]}"
    )
