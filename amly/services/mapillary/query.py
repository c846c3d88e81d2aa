"""What the Mapillary queries share: identifier checks (ids from a server never become paths
unchecked), filters, the report of what an enumeration did, candidates, the edge dedup, Graph
paging, and the entity lookup that decides exactly whether an image is in a box.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from ...errors import APIError, UsageError
from ...geo import validate_bbox
from ...net import Transport
from ...types import BBox

SEARCH_LIMIT = 2000
#: The service wants each side of a search box under 0.01 degrees (strictly).
MAX_CELL = 0.0099
#: Fields every enumeration asks for: what exact filtering and file naming need.
BASE_FIELDS = ("id", "sequence", "captured_at", "geometry", "is_pano", "creator")

_IMAGE_ID = re.compile(r"^[0-9]{1,40}$")
_SEQUENCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class UnsafeId(ValueError):
    """An identifier from the server that must not become a file name."""


def check_image_id(value: object) -> str:
    """An image id as a string, if it is decimal digits only; else :class:`UnsafeId`.

    >>> check_image_id(1234), check_image_id("0042")
    ('1234', '0042')
    >>> check_image_id("../../etc/passwd")
    Traceback (most recent call last):
    ...
    amly.services.mapillary.query.UnsafeId: image id '../../etc/passwd' is not decimal digits
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
    amly.services.mapillary.query.UnsafeId: sequence id '..' is not 1-64 of [A-Za-z0-9_-]
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


def millis(dt: datetime) -> int:
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


def position(entity: Mapping[str, Any]) -> tuple[float, float] | None:
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
    #: One Mapillary sequence only (``amly transfer`` moves a box sequence by sequence).
    sequence_id: str | None = None

    @property
    def start_ms(self) -> int | None:
        return None if self.start is None else millis(self.start)

    @property
    def end_ms(self) -> int | None:
        return None if self.end is None else millis(self.end)

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
        if self.sequence_id:
            seq = props.get("sequence", props.get("sequence_id"))
            if seq is None and not partial:
                return False
            if seq is not None and str(seq) != self.sequence_id:
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
            "start": None if self.start is None else iso_millis(millis(self.start)),
            "end": None if self.end is None else iso_millis(millis(self.end)),
            "username": self.username,
            "is_pano": self.is_pano,
            "organization_id": self.organization_id,
            **({"sequence_id": self.sequence_id} if self.sequence_id else {}),
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


def page_data(answer: Any) -> list[Any]:
    data = answer.get("data") if isinstance(answer, dict) else None
    return list(data) if isinstance(data, list) else []


def next_page(answer: Any) -> str | None:
    paging = answer.get("paging") if isinstance(answer, dict) else None
    nxt = paging.get("next") if isinstance(paging, dict) else None
    return nxt if isinstance(nxt, str) and nxt else None


async def search_pages(
    transport: Transport, params: Mapping[str, Any], report: SearchReport
) -> tuple[list[Any], bool]:
    """One ``/images`` search and every page after it (a creator search paginates: its
    ``paging.next`` is followed verbatim): the results, and whether it paginated (then
    nothing was cut; an answer of ``limit`` results without pages is truncated)."""
    answer = await transport.graph_get("images", params, surface="search")
    report.searches += 1
    data = page_data(answer)
    nxt = next_page(answer)
    paged = nxt is not None
    while nxt is not None:
        page = await transport.request("GET", nxt, surface="search")
        report.searches += 1
        data += page_data(page)
        nxt = next_page(page)
    return data, paged


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
    pos = position(entity)
    if pos is None or not in_bbox(pos[0], pos[1], bbox):
        return None
    # Strict: an entity must show its time and creator when filtered on (entities carry no
    # organization: that filter was applied by the enumeration).
    if not filters.matches(entity):
        return None
    return ident, seq, pos[0], pos[1]
