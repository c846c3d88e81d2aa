"""The track point of a video: a position at a time on the video's clock."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..geo import EARTH_RADIUS


@dataclass(slots=True)
class TrackPoint:
    """One GPS point of a video.

    ``time`` is seconds from the start of the video (its presentation clock); ``epoch`` the
    GPS (UTC) time in seconds since 1970 when the telemetry carries it; ``fix`` 0/2/3 when
    known; ``precision`` DOP x100 when known; ``speed`` ground speed in m/s when known.
    """

    time: float
    lat: float
    lon: float
    alt: float | None = None
    epoch: float | None = None
    fix: int | None = None
    precision: float | None = None
    speed: float | None = None
    angle: float | None = None

    def with_epoch(self, epoch: float) -> TrackPoint:
        return dataclasses.replace(self, epoch=epoch)

    def with_time(self, time: float) -> TrackPoint:
        return dataclasses.replace(self, time=time)


def steps(points: Sequence[TrackPoint]) -> list[float]:
    """Distances in metres between consecutive points (haversine, as :func:`amly.geo.distance`,
    with each point's radians and cosine computed once: tracks have 100,000s of points).

    >>> from amly.geo import distance
    >>> pts = [TrackPoint(0, 52.5, 13.4), TrackPoint(1, 52.6, 13.5), TrackPoint(2, 52.6, 13.5)]
    >>> [round(d, 6) for d in steps(pts)] == [round(distance(52.5, 13.4, 52.6, 13.5), 6), 0.0]
    True
    """
    if len(points) < 2:
        return []
    rad, sin, cos, asin, sqrt = math.radians, math.sin, math.cos, math.asin, math.sqrt
    lat = [rad(p.lat) for p in points]
    lon = [rad(p.lon) for p in points]
    c = [cos(x) for x in lat]
    out = []
    two_r = 2 * EARTH_RADIUS
    for i in range(1, len(points)):
        a = (
            sin((lat[i] - lat[i - 1]) / 2) ** 2
            + c[i] * c[i - 1] * sin((lon[i] - lon[i - 1]) / 2) ** 2
        )
        out.append(two_r * asin(min(1.0, sqrt(a))))
    return out
