"""Small pure geodesy functions: distances, bearings, track interpolation, bounding boxes, tiles.

No I/O. Distances use the haversine formula on a sphere of the IUGG mean Earth radius
(6,371,008.8 m): within 0.6 % of the ellipsoid everywhere, far below GPS noise, and it makes
"1 degree of latitude" a fixed 111,195 m that tests can check exactly. Angles are degrees;
bearings are clockwise from true north in ``[0, 360)``.

Interpolation never extrapolates: an image taken before the first fix, after the last, or
inside a hole in the track raises :class:`OutsideTrack` / :class:`InGap` (both ``ValueError``)
so the caller can turn them into per-file :class:`~amly.errors.OutsideTrackError`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from .types import BBox, Point

EARTH_RADIUS = 6_371_008.8
"""Mean Earth radius in metres (IUGG), the sphere :func:`distance` works on."""

__all__ = [
    "EARTH_RADIUS",
    "MAX_CELLS",
    "InGap",
    "OutsideTrack",
    "angle_diff",
    "bearing",
    "distance",
    "interpolate",
    "locate",
    "quarter",
    "split_bbox",
    "tile",
    "tile_bounds",
    "tiles",
    "validate_bbox",
]


# --- distances and angles -------------------------------------------------------------------


def distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two positions (haversine).

    >>> round(distance(0, 0, 1, 0), 1)   # one degree of latitude
    111195.1
    >>> round(distance(52.52, 13.405, 52.52, 13.405), 6)
    0.0
    >>> round(distance(0, 179.5, 0, -179.5))  # across the antimeridian
    111195
    """
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(a)))


def bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing in degrees ``[0, 360)`` from the first position towards the second.

    Identical positions have no direction; by convention that is 0 (as in mapillary_tools).

    >>> [round(bearing(0, 0, *p)) for p in [(1, 0), (0, 1), (-1, 0), (0, -1)]]
    [0, 90, 180, 270]
    >>> round(bearing(0, 179.5, 0, -179.5))  # east across the antimeridian
    90
    """
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def angle_diff(a: float, b: float) -> float:
    """Smallest absolute difference between two directions, in ``[0, 180]``.

    >>> angle_diff(350, 10), angle_diff(10, 350), angle_diff(0, 180), angle_diff(90, 90)
    (20.0, 20.0, 180.0, 0.0)
    """
    d = abs(a - b) % 360.0
    return 360.0 - d if d > 180.0 else d


# --- track interpolation --------------------------------------------------------------------


class OutsideTrack(ValueError):
    """The time lies before the first fix or after the last fix of the track."""


class InGap(ValueError):
    """The time lies between two fixes (or segments) further apart than ``max_gap`` seconds."""


def _between(a: Point, b: Point, t: datetime) -> Point:
    span = (b.time - a.time).total_seconds()
    w = 0.0 if span <= 0 else (t - a.time).total_seconds() / span
    alt = None if a.alt is None or b.alt is None else a.alt + (b.alt - a.alt) * w
    if a.lat == b.lat and a.lon == b.lon:
        heading = a.heading  # standing still: no direction of travel
    else:
        heading = bearing(a.lat, a.lon, b.lat, b.lon)
    return Point(t, a.lat + (b.lat - a.lat) * w, a.lon + (b.lon - a.lon) * w, alt, heading)


def interpolate(
    track: Sequence[Point],
    t: datetime,
    *,
    max_gap: float | None,
    tolerance: float = 0.0,
) -> Point:
    """Position at time ``t`` along ``track`` (time-sorted fixes of ONE segment).

    Linear in lat/lon/alt with time. The heading is the direction of travel between the two
    enclosing fixes (as mapillary_tools does). Raises :class:`OutsideTrack` when ``t`` is more
    than ``tolerance`` seconds before the first or after the last fix (within the tolerance
    the end fix itself is used: no extrapolation), and :class:`InGap` when the enclosing fixes
    are more than ``max_gap`` seconds apart (``None``: no limit).

    >>> from datetime import datetime, timezone, timedelta
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> trk = [Point(t0, 0.0, 0.0, 10.0), Point(t0 + timedelta(seconds=10), 0.0, 1.0, 20.0)]
    >>> p = interpolate(trk, t0 + timedelta(seconds=5), max_gap=60)
    >>> p.lat, p.lon, p.alt, p.heading
    (0.0, 0.5, 15.0, 90.0)
    >>> interpolate(trk, t0 + timedelta(seconds=5), max_gap=9)
    Traceback (most recent call last):
    ...
    amly.geo.InGap: fixes 10 s apart around 2024-01-01T00:00:05+00:00 (max gap 9 s)
    >>> interpolate(trk, t0 - timedelta(seconds=1), max_gap=60)
    Traceback (most recent call last):
    ...
    amly.geo.OutsideTrack: 1 s before the track starts (2024-01-01T00:00:00+00:00)
    """
    if not track:
        raise OutsideTrack("the track is empty")
    first, last = track[0], track[-1]
    if t < first.time:
        before = (first.time - t).total_seconds()
        if before > tolerance:
            raise OutsideTrack(f"{before:g} s before the track starts ({first.time.isoformat()})")
        return _between(first, first, t)
    if t > last.time:
        after = (t - last.time).total_seconds()
        if after > tolerance:
            raise OutsideTrack(f"{after:g} s after the track ends ({last.time.isoformat()})")
        return _between(last, last, t)
    i = bisect.bisect_left(track, t, key=_time)  # first fix with time >= t
    b = track[i]
    if b.time == t:
        # On a fix: its own values, no gap question; heading from the neighbouring fixes.
        if i + 1 < len(track):
            heading = _between(b, track[i + 1], t).heading
        else:
            heading = _between(track[i - 1], b, t).heading if i > 0 else b.heading
        return Point(t, b.lat, b.lon, b.alt, heading)
    a = track[i - 1]
    gap = (b.time - a.time).total_seconds()
    if max_gap is not None and gap > max_gap:
        raise InGap(f"fixes {gap:g} s apart around {t.isoformat()} (max gap {max_gap:g} s)")
    return _between(a, b, t)


def _time(p: Point) -> datetime:
    return p.time


def locate(
    segments: Sequence[Sequence[Point]],
    t: datetime,
    *,
    max_gap: float | None,
    tolerance: float = 0.0,
) -> Point:
    """Position at ``t`` over several track segments, never bridging two segments.

    Segments are time-sorted lists of fixes (as :func:`amly.gpx.read_track` returns them) and
    may come in any order. A time between two segments is in a gap (:class:`InGap`), a time
    before all or after all of them is :class:`OutsideTrack`.

    >>> from datetime import datetime, timezone, timedelta
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> s = lambda *secs: [Point(t0 + timedelta(seconds=x), 0.0, x / 100) for x in secs]
    >>> locate([s(0, 10), s(20, 30)], t0 + timedelta(seconds=25), max_gap=60).lon
    0.25
    >>> locate([s(0, 10), s(20, 30)], t0 + timedelta(seconds=15), max_gap=60)
    Traceback (most recent call last):
    ...
    amly.geo.InGap: 2024-01-01T00:00:15+00:00 falls between two track segments
    """
    segs = sorted((s for s in segments if s), key=lambda s: s[0].time)
    if not segs:
        raise OutsideTrack("the track is empty")
    tol = timedelta(seconds=tolerance)
    starts = [s[0].time for s in segs]
    # Last segment starting at or before t (+tolerance): the only one that can contain t.
    k = bisect.bisect_right(starts, t + tol) - 1
    if k < 0:
        return interpolate(segs[0], t, max_gap=max_gap, tolerance=tolerance)  # raises
    if t <= segs[k][-1].time + tol:
        return interpolate(segs[k], t, max_gap=max_gap, tolerance=tolerance)
    if k == len(segs) - 1:
        return interpolate(segs[k], t, max_gap=max_gap, tolerance=tolerance)  # raises
    raise InGap(f"{t.isoformat()} falls between two track segments")


# --- bounding boxes -------------------------------------------------------------------------


def validate_bbox(bbox: BBox) -> BBox:
    """Check a ``(west, south, east, north)`` box; return it as floats or raise ``ValueError``.

    >>> validate_bbox((13.3, 52.5, 13.4, 52.6))
    (13.3, 52.5, 13.4, 52.6)
    >>> validate_bbox((13.4, 52.5, 13.3, 52.6))
    Traceback (most recent call last):
    ...
    ValueError: bbox (13.4, 52.5, 13.3, 52.6) is inverted: west 13.4 > east 13.3 (order is west,south,east,north)
    """
    if len(bbox) != 4:
        raise ValueError(f"bbox needs 4 numbers west,south,east,north, got {len(bbox)}")
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ValueError(f"bbox {bbox!r} must hold 4 numbers west,south,east,north") from None
    box = (w, s, e, n)
    if any(not math.isfinite(v) for v in box):
        raise ValueError(f"bbox {box} has a non-finite value")
    for name, v in (("west", w), ("east", e)):
        if not -180.0 <= v <= 180.0:
            raise ValueError(f"bbox {box}: {name} {v} is outside -180..180 (longitude)")
    for name, v in (("south", s), ("north", n)):
        if not -90.0 <= v <= 90.0:
            raise ValueError(f"bbox {box}: {name} {v} is outside -90..90 (latitude)")
    if w > e:
        raise ValueError(
            f"bbox {box} is inverted: west {w} > east {e} (order is west,south,east,north)"
        )
    if s > n:
        raise ValueError(
            f"bbox {box} is inverted: south {s} > north {n} (order is west,south,east,north)"
        )
    if w == e or s == n:
        raise ValueError(f"bbox {box} has zero area")
    return box


MAX_CELLS = 10_000_000
"""Refuse to list more cells/tiles than this: a typo'd bbox must fail, not eat the RAM."""


def _check_count(count: int, what: str, bbox: BBox) -> None:
    if count > MAX_CELLS:
        raise ValueError(
            f"bbox {bbox} needs {count:,} {what} (more than {MAX_CELLS:,}): use a smaller box"
        )


def split_bbox(bbox: BBox, max_side: float = 0.01) -> list[BBox]:
    """Cut a box into a grid of equal cells no wider or taller than ``max_side`` degrees.

    Cells are listed row by row from the south-west; they tile the box exactly (shared
    edges, outer edges identical to the input's). More than :data:`MAX_CELLS` cells is a
    ``ValueError``.

    >>> split_bbox((0, 0, 0.02, 0.01))
    [(0.0, 0.0, 0.01, 0.01), (0.01, 0.0, 0.02, 0.01)]
    >>> len(split_bbox((13.3, 52.5, 13.35, 52.53)))
    15
    """
    w, s, e, n = validate_bbox(bbox)
    if not max_side > 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    # The epsilon keeps float noise (0.07 / 0.01 = 7.000000000000001) from adding a sliver row.
    nx = max(1, math.ceil((e - w) / max_side - 1e-9))
    ny = max(1, math.ceil((n - s) / max_side - 1e-9))
    _check_count(nx * ny, "cells", (w, s, e, n))
    xs = [w + (e - w) * i / nx for i in range(nx)] + [e]
    ys = [s + (n - s) * j / ny for j in range(ny)] + [n]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(ny) for i in range(nx)]


def quarter(bbox: BBox) -> list[BBox]:
    """The four quarters of a box: south-west, south-east, north-west, north-east.

    Used to subdivide a search area whose result count hit the server's limit.

    >>> quarter((0, 0, 2, 2))
    [(0.0, 0.0, 1.0, 1.0), (1.0, 0.0, 2.0, 1.0), (0.0, 1.0, 1.0, 2.0), (1.0, 1.0, 2.0, 2.0)]
    """
    w, s, e, n = validate_bbox(bbox)
    mx, my = (w + e) / 2, (s + n) / 2
    return [(w, s, mx, my), (mx, s, e, my), (w, my, mx, n), (mx, my, e, n)]


# --- web-mercator tiles (mercantile-style) --------------------------------------------------

_MAX_LAT = 85.0511287798066


def mercator(lon: float, lat: float, zoom: int) -> tuple[float, float]:
    """Fractional web-mercator tile coordinates ``(x, y)`` of a position at ``zoom`` (y grows
    southwards; latitudes beyond the projection's edge are clamped). The one implementation
    every tile computation uses (enumeration, the server's tiles, decoding).

    >>> mercator(0.0, 0.0, 1)
    (1.0, 1.0)
    """
    lat = max(-_MAX_LAT, min(_MAX_LAT, lat))
    n = 2**zoom
    r = math.radians(lat)
    return (lon + 180.0) / 360.0 * n, (1.0 - math.asinh(math.tan(r)) / math.pi) / 2.0 * n


def unmercator(x: float, y: float, zoom: int) -> tuple[float, float]:
    """``(lon, lat)`` of fractional tile coordinates: the inverse of :func:`mercator`.

    >>> [round(v, 6) for v in unmercator(*mercator(13.405, 52.52, 14), 14)]
    [13.405, 52.52]
    """
    n = 2**zoom
    return x / n * 360.0 - 180.0, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))


def tile(lon: float, lat: float, zoom: int) -> tuple[int, int, int]:
    """The ``(x, y, z)`` web-mercator tile containing a position.

    >>> tile(0.0, 0.0, 1)
    (1, 1, 1)
    >>> tile(13.405, 52.52, 14)
    (8802, 5373, 14)
    """
    n = 2**zoom
    x, y = mercator(lon, lat, zoom)
    return min(n - 1, max(0, int(x))), min(n - 1, max(0, int(y))), zoom


def tile_bounds(x: int, y: int, zoom: int) -> BBox:
    """``(west, south, east, north)`` of a tile in degrees.

    >>> tile_bounds(0, 0, 0) == (-180.0, -_MAX_LAT, 180.0, _MAX_LAT)
    True
    """
    w, n = unmercator(x, y, zoom)
    e, s = unmercator(x + 1, y + 1, zoom)
    return (w, s, e, n)


def tiles(bbox: BBox, zoom: int) -> list[tuple[int, int, int]]:
    """Every tile at ``zoom`` that intersects ``bbox``, row by row from the north-west.

    More than :data:`MAX_CELLS` tiles is a ``ValueError``.

    >>> tiles((13.40, 52.51, 13.41, 52.52), 14)
    [(8801, 5373, 14), (8802, 5373, 14)]
    >>> tiles((-180, -85, 180, 85), 1)  # edges on tile borders do not spill over
    [(0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)]
    """
    w, s, e, n = validate_bbox(bbox)
    x0, y0, _ = tile(w, n, zoom)
    # Nudge the east/south edges inwards so a box ending on a tile border stays out of it.
    x1, y1, _ = tile(e - 1e-9, s + 1e-9, zoom)
    _check_count((x1 - x0 + 1) * (y1 - y0 + 1), "tiles", (w, s, e, n))
    return [(x, y, zoom) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
