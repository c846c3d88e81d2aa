"""The read side of the local server: Graph image search and entities, tiles, thumbnails.

Routes (see :func:`add_routes`):

- ``GET /images``: search by ``bbox`` (each side < 0.01 deg, area < 0.01 sq deg), filters
  ``start_captured_at``/``end_captured_at``/``sequence_id``/``organization_id``/``is_pano``/
  ``creator_username``; ``limit`` <= 2000. Bbox searches do not paginate: when more images
  match than ``limit``, exactly ``limit`` come back, chosen towards the box's edges as the real
  service's are (so a client must split the box, not trust a full page). Searches by
  ``creator_username`` paginate with ``paging.next``.
- ``GET /image_ids?sequence_id=S``: ids of a sequence in capture order.
- ``GET /{id}?fields=``: one image, or one organization (fields ``slug``, ``name``,
  ``description``: what the official uploader asks before ``--organization_key``); digits
  only, an unknown id is a Graph 404.
- tiles and ``/cdn`` thumbnails: :mod:`amly.server.tiles`, :mod:`amly.server.thumbs`.

The query logic (:func:`parse_search`, :func:`search`, :func:`render`) is plain functions over
the :class:`~amly.server.store.Store`, testable without a server. Spatial queries use the
``images_rtree`` R*Tree that triggers keep in sync with ``images``.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from aiohttp import web

from ..types import BBox
from . import thumbs, tiles
from .auth import STORE_KEY
from .faults import maybe_search_timeout
from .responses import graph_error
from .store import Store

__all__ = [
    "FIELDS",
    "MAX_AREA",
    "MAX_LIMIT",
    "MAX_SIDE",
    "ORGANIZATION_FIELDS",
    "BadRequest",
    "Search",
    "add_routes",
    "parse_bbox",
    "parse_fields",
    "parse_search",
    "parse_time",
    "render",
    "search",
    "sync_index",
]

MAX_LIMIT = 2000
#: The 2026 bbox rule: each side < MAX_SIDE degrees and the area < MAX_AREA square degrees.
MAX_SIDE = 0.01
MAX_AREA = 0.01
FIELDS = frozenset(
    {
        "id", "captured_at", "compass_angle", "computed_compass_angle", "geometry",
        "computed_geometry", "altitude", "computed_altitude", "sequence", "creator", "make",
        "model", "width", "height", "camera_type", "is_pano",
        *(f"thumb_{s}_url" for s in thumbs.SIZES),
    }
)  # fmt: skip
ORGANIZATION_FIELDS = frozenset({"id", "slug", "name", "description"})


class BadRequest(ValueError):
    """A request the Graph API refuses with 400 (message says why)."""


@dataclasses.dataclass(frozen=True)
class Search:
    """A parsed ``/images`` query."""

    bbox: BBox | None = None
    limit: int = MAX_LIMIT
    fields: tuple[str, ...] = ("id",)
    start_ms: int | None = None
    end_ms: int | None = None
    sequence_ids: tuple[str, ...] = ()
    organization_id: str | None = None
    is_pano: bool | None = None
    creator_username: str | None = None
    after: tuple[int, str] | None = None  # creator_username paging cursor


def parse_bbox(text: str) -> BBox:
    """``minLon,minLat,maxLon,maxLat`` under the size rule, or :class:`BadRequest`.

    >>> parse_bbox("13.40,52.50,13.405,52.509")
    (13.4, 52.5, 13.405, 52.509)
    >>> parse_bbox("13.40,52.50,13.41,52.505")
    Traceback (most recent call last):
    ...
    amly.server.read.BadRequest: bbox is too large: 0.01 x 0.005 degrees; each side must be smaller than 0.01 degrees and the area smaller than 0.01 square degrees: split it into smaller boxes
    """
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise BadRequest(
            f"bbox must be 4 numbers minLon,minLat,maxLon,maxLat, got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise BadRequest("bbox has a non-finite value")
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise BadRequest(f"bbox {text} is out of range (lon -180..180, lat -90..90)")
    if w > e or s > n:
        raise BadRequest(f"bbox {text} is inverted: the order is minLon,minLat,maxLon,maxLat")
    # Sizes from the decimal text, so "13.40,..,13.41" is exactly 0.01 wide (floats say less).
    dw, ds, de, dn = (Decimal(v.strip()) for v in text.split(","))
    dx, dy = de - dw, dn - ds
    if (
        dx >= Decimal(str(MAX_SIDE))
        or dy >= Decimal(str(MAX_SIDE))
        or dx * dy >= Decimal(str(MAX_AREA))
    ):
        raise BadRequest(
            f"bbox is too large: {dx:.6g} x {dy:.6g} degrees; each side must be smaller than "
            f"{MAX_SIDE} degrees and the area smaller than {MAX_AREA} square degrees: "
            "split it into smaller boxes"
        )
    return (w, s, e, n)


def parse_fields(
    text: str | None, known: frozenset[str] = FIELDS, node: str = "Image"
) -> tuple[str, ...]:
    """The requested fields of a ``node`` type, ``id`` first and always present; names not in
    ``known`` are refused.

    >>> parse_fields("geometry,captured_at,geometry")
    ('id', 'geometry', 'captured_at')
    >>> parse_fields("id,thumb_640_url")
    Traceback (most recent call last):
    ...
    amly.server.read.BadRequest: (#100) Tried accessing nonexisting field (thumb_640_url) on node type (Image)
    >>> parse_fields("name,slug", ORGANIZATION_FIELDS, "Organization")
    ('id', 'name', 'slug')
    """
    out = ["id"]
    for f in (text or "").split(","):
        f = f.strip()
        if not f or f in out:
            continue
        if f not in known:
            raise BadRequest(
                f"(#100) Tried accessing nonexisting field ({f}) on node type ({node})"
            )
        out.append(f)
    return tuple(out)


def parse_time(text: str) -> int:
    """An ISO 8601 time (naive = UTC) as epoch milliseconds.

    >>> parse_time("2024-06-01T10:00:00Z"), parse_time("2024-06-01")
    (1717236000000, 1717200000000)
    """
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"not an ISO 8601 time: {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return round(t.timestamp() * 1000)


def _bool(name: str, text: str) -> bool:
    v = text.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false, got {text!r}")


def _cursor(captured_at: int, image_id: str) -> str:
    return base64.urlsafe_b64encode(f"{captured_at}:{image_id}".encode()).decode().rstrip("=")


def _uncursor(text: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        t, i = raw.split(":")
        if not i.isdigit():
            raise ValueError
        return int(t), i
    except ValueError:
        raise BadRequest("invalid paging cursor 'after'") from None


def parse_search(params: Mapping[str, str]) -> Search:
    """Validate ``/images`` query parameters.

    >>> parse_search({"sequence_id": "abc", "limit": "10"}).limit
    10
    >>> parse_search({"fields": "id"})
    Traceback (most recent call last):
    ...
    amly.server.read.BadRequest: one of bbox, sequence_id, creator_username or organization_id is required
    """
    try:
        limit = int(params.get("limit", MAX_LIMIT))
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {params.get('limit')!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    seqs = tuple(s for s in params.get("sequence_id", "").split(",") if s)
    q = Search(
        bbox=parse_bbox(params["bbox"]) if params.get("bbox") else None,
        limit=limit,
        fields=parse_fields(params.get("fields")),
        start_ms=parse_time(params["start_captured_at"]) if params.get("start_captured_at") else None,
        end_ms=parse_time(params["end_captured_at"]) if params.get("end_captured_at") else None,
        sequence_ids=seqs,
        organization_id=params.get("organization_id") or None,
        is_pano=_bool("is_pano", params["is_pano"]) if params.get("is_pano") else None,
        creator_username=params.get("creator_username") or None,
        after=_uncursor(params["after"]) if params.get("after") else None,
    )  # fmt: skip
    if not (q.bbox or q.sequence_ids or q.creator_username or q.organization_id):
        raise BadRequest(
            "one of bbox, sequence_id, creator_username or organization_id is required"
        )
    return q


_COLUMNS = (
    "i.id, i.sequence_id, i.user_id, i.organization_id, i.captured_at, i.lon, i.lat,"
    " i.altitude, i.compass_angle, i.make, i.model, i.width, i.height, i.is_pano,"
    " i.camera_type, i.path, c.lon AS c_lon, c.lat AS c_lat, c.altitude AS c_altitude,"
    " c.compass_angle AS c_compass_angle, u.username"
)
_JOINS = " LEFT JOIN images_computed c ON c.id = i.id LEFT JOIN users u ON u.id = i.user_id"


def _bbox_from(bbox: BBox) -> tuple[str, list[Any]]:
    """FROM clause driven by the R*Tree (float32 boxes: exact bounds are re-checked)."""
    w, s, e, n = bbox
    sql = (
        " FROM images_rtree r JOIN images i ON i.id = CAST(r.rid AS TEXT)"
        " AND r.max_lon >= ? AND r.min_lon <= ? AND r.max_lat >= ? AND r.min_lat <= ?"
    )
    return sql, [w, e, s, n]


def select_images(
    db: sqlite3.Connection,
    where: list[str],
    params: list[Any],
    *,
    bbox: BBox | None = None,
    tail: str = "",
) -> list[sqlite3.Row]:
    """Rows of images (with computed values and creator) matching ``where`` (and'ed)."""
    if bbox is not None:
        frm, p = _bbox_from(bbox)
        w, s, e, n = bbox
        where = [*where, "i.lon BETWEEN ? AND ?", "i.lat BETWEEN ? AND ?"]
        params = [*p, *params, w, e, s, n]
    else:
        frm = " FROM images i"
    sql = f"SELECT {_COLUMNS}{frm}{_JOINS}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return db.execute(sql + tail, params).fetchall()


def search(store: Store, q: Search) -> tuple[list[sqlite3.Row], tuple[int, str] | None]:
    """Images matching ``q`` and the paging cursor of the next page (creator searches only)."""
    where: list[str] = []
    params: list[Any] = []
    if q.start_ms is not None:
        where.append("i.captured_at >= ?")
        params.append(q.start_ms)
    if q.end_ms is not None:
        where.append("i.captured_at <= ?")
        params.append(q.end_ms)
    if q.sequence_ids:
        where.append(f"i.sequence_id IN ({','.join('?' * len(q.sequence_ids))})")
        params += q.sequence_ids
    if q.organization_id:
        where.append("i.organization_id = ?")
        params.append(q.organization_id)
    if q.is_pano is not None:
        where.append("i.is_pano = ?")
        params.append(int(q.is_pano))
    if q.creator_username:
        user = store.db.execute(
            "SELECT id FROM users WHERE username = ?", (q.creator_username,)
        ).fetchone()
        if user is None:
            return [], None
        where.append("i.user_id = ?")
        params.append(user["id"])
        if q.after is not None:
            where.append("(i.captured_at > ? OR (i.captured_at = ? AND i.id > ?))")
            params += [q.after[0], q.after[0], q.after[1]]
        rows = select_images(
            store.db, where, params, bbox=q.bbox,
            tail=f" ORDER BY i.captured_at, i.id LIMIT {q.limit + 1}",
        )  # fmt: skip
        if len(rows) > q.limit:
            last = rows[q.limit - 1]
            return rows[: q.limit], (last["captured_at"], last["id"])
        return rows, None
    if q.bbox is None:
        order = "i.captured_at, i.seq_index" if q.sequence_ids else "i.captured_at DESC, i.id"
        tail = f" ORDER BY {order} LIMIT {q.limit}"
        return select_images(store.db, where, params, tail=tail), None
    rows = select_images(store.db, where, params, bbox=q.bbox)
    if len(rows) <= q.limit:
        rows.sort(key=lambda r: (r["captured_at"], r["id"]))
        return rows, None
    return _edge_biased(rows, q.bbox, q.limit), None


def _edge_biased(rows: list[sqlite3.Row], bbox: BBox, limit: int) -> list[sqlite3.Row]:
    """``limit`` of ``rows``, those nearest the box's edges first (deterministic), as the
    real service's truncated answers are: the middle of a dense box goes missing."""
    w, s, e, n = bbox
    cx, cy, hx, hy = (w + e) / 2, (s + n) / 2, (e - w) / 2 or 1.0, (n - s) / 2 or 1.0

    def key(r: sqlite3.Row) -> tuple[float, str]:
        return (-max(abs(r["lon"] - cx) / hx, abs(r["lat"] - cy) / hy), r["id"])

    return sorted(rows, key=key)[:limit]


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def render(
    row: sqlite3.Row, fields: tuple[str, ...], thumb_url: Callable[[str, str], str]
) -> dict[str, Any]:
    """The Graph JSON object of one image with exactly ``fields``."""
    out: dict[str, Any] = {}
    for f in fields:
        if f == "id":
            out["id"] = row["id"]
        elif f == "captured_at":
            out[f] = row["captured_at"]
        elif f == "geometry":
            out[f] = _point(row["lon"], row["lat"])
        elif f == "computed_geometry":
            lon, lat = row["c_lon"], row["c_lat"]
            out[f] = _point(row["lon"], row["lat"]) if lon is None else _point(lon, lat)
        elif f in ("altitude", "compass_angle"):
            if row[f] is not None:
                out[f] = row[f]
        elif f in ("computed_altitude", "computed_compass_angle"):
            base = f.removeprefix("computed_")
            v = row[f"c_{base}"] if row[f"c_{base}"] is not None else row[base]
            if v is not None:
                out[f] = v
        elif f == "sequence":
            out[f] = row["sequence_id"]
        elif f == "creator":
            out[f] = {"username": row["username"], "id": row["user_id"]}
        elif f == "is_pano":
            out[f] = bool(row["is_pano"])
        elif f.startswith("thumb_"):
            out[f] = thumb_url(row["id"], f[len("thumb_") : -len("_url")])
        elif row[f] is not None:  # make, model, width, height, camera_type
            out[f] = row[f]
    return out


# -- routes -----------------------------------------------------------------------------------


def _base(request: web.Request) -> str:
    return str(request.url.origin())


def _thumb_url(request: web.Request) -> Callable[[str, str], str]:
    signer, base = request.app[thumbs.SIGNER_KEY], _base(request)
    return lambda image_id, size: signer.url(base, image_id, size)


async def images(request: web.Request) -> web.Response:
    """``GET /images``."""
    try:
        q = parse_search(request.query)
    except BadRequest as e:
        return graph_error(400, str(e), code=100)
    timeout = maybe_search_timeout(request)
    if timeout is not None:
        return timeout
    rows, nxt = search(request.app[STORE_KEY], q)
    url = _thumb_url(request)
    body: dict[str, Any] = {"data": [render(r, q.fields, url) for r in rows]}
    if q.creator_username:
        paging: dict[str, Any] = {}
        if nxt is not None:
            cursor = _cursor(*nxt)
            paging["cursors"] = {"after": cursor}
            paging["next"] = str(request.url.update_query(after=cursor))
        body["paging"] = paging
    return web.json_response(body)


async def image_ids(request: web.Request) -> web.Response:
    """``GET /image_ids?sequence_id=S`` -> ``{"data": [{"id": ...}, ...]}`` in capture order."""
    sid = request.query.get("sequence_id")
    if not sid:
        return graph_error(400, "sequence_id is required", code=100)
    timeout = maybe_search_timeout(request)
    if timeout is not None:
        return timeout
    rows = request.app[STORE_KEY].db.execute(
        "SELECT id FROM images WHERE sequence_id = ? ORDER BY captured_at, seq_index", (sid,)
    )
    return web.json_response({"data": [{"id": r["id"]} for r in rows]})


def _not_found(what: str) -> web.Response:
    return graph_error(
        404,
        f"Unsupported get request. Object with ID '{what}' does not exist, cannot be loaded "
        "due to missing permissions, or does not support this operation",
        code=100,
        subcode=33,
        type="GraphMethodException",
    )


async def entity(request: web.Request) -> web.Response:
    """``GET /{id}?fields=``: one image or one organization."""
    image_id = request.match_info["id"]
    if not image_id.isdigit():
        return _not_found(image_id)
    store = request.app[STORE_KEY]
    # Look the id up before checking fields: an unknown id is a 404 whatever it asks for, and
    # the fields an id may ask for depend on its node type.
    rows = select_images(store.db, ["i.id = ?"], [image_id])
    org = store.organization(image_id) if not rows else None
    if not rows and org is None:
        return _not_found(image_id)
    try:
        if org is not None:
            fields = parse_fields(request.query.get("fields"), ORGANIZATION_FIELDS, "Organization")
            return web.json_response({f: org[f] for f in fields})
        fields = parse_fields(request.query.get("fields"))
    except BadRequest as e:
        return graph_error(400, str(e), code=100)
    return web.json_response(render(rows[0], fields, _thumb_url(request)))


def sync_index(store: Store) -> int:
    """Index images that a store made before the R*Tree existed (triggers keep it in sync
    afterwards); returns how many were added."""
    db = store.db
    n_images = db.execute("SELECT count(*) FROM images").fetchone()[0]
    if db.execute("SELECT count(*) FROM images_rtree").fetchone()[0] == n_images:
        return 0
    cur = db.execute(
        "INSERT OR REPLACE INTO images_rtree SELECT CAST(id AS INTEGER), lon, lon, lat, lat"
        " FROM images WHERE CAST(id AS INTEGER) NOT IN (SELECT rid FROM images_rtree)"
    )
    return cur.rowcount


def add_routes(app: web.Application) -> None:
    """Register the read side on ``app`` (after the fixed routes: ``/{id}`` catches all)."""
    sync_index(app[STORE_KEY])
    thumbs.add_routes(app)
    tiles.add_routes(app)
    app.router.add_get("/images", images)
    app.router.add_get("/image_ids", image_ids)
    app.router.add_get("/{id}", entity)
