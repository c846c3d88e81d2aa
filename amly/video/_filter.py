"""The noise filter mapillary_tools applies to GoPro tracks, with its parameters as options.

1. drop points whose fix is known and not in ``fixes`` (default 2D/3D);
2. drop points whose precision (DOP x100) is known and over ``max_dop100`` (default 1000);
3. split the track where consecutive points are farther apart than the upper whisker
   (Q3 + 1.5 IQR) of all steps, but at least twice ``gps_precision`` metres; merge the
   pieces back where the jump between them is no faster than the upper whisker of the
   ground speeds; keep the largest group (the outliers are the small pieces).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..geo import distance
from ._points import TrackPoint
from ._points import steps as _steps


@dataclass(frozen=True)
class NoiseFilter:
    fixes: frozenset[int] = frozenset({2, 3})
    max_dop100: float = 1000.0
    gps_precision: float = 15.0

    def __call__(self, points: Sequence[TrackPoint]) -> list[TrackPoint]:
        pts = [p for p in points if p.fix is None or p.fix in self.fixes]
        pts = [p for p in pts if p.precision is None or p.precision <= self.max_dop100]
        return remove_outliers(pts, self.gps_precision)


def upper_whisker(values: Sequence[float]) -> float:
    """Q3 + 1.5 IQR, quartiles as mapillary_tools computes them.

    >>> upper_whisker([0, 1, 2, 3, 4])
    8.0
    """
    v = sorted(values)
    n = len(v)
    if n < 2:
        raise ValueError("at least 2 values are required")
    mid = n // 2
    q1 = statistics.median(v[:mid])
    q3 = statistics.median(v[mid + 1 :] if n % 2 else v[mid:])
    return q3 + (q3 - q1) * 1.5


def _speed(a: TrackPoint, b: TrackPoint) -> float:
    s = distance(a.lat, a.lon, b.lat, b.lon)
    t = abs(b.time - a.time)
    return s / t if t else float("inf")


def remove_outliers(points: list[TrackPoint], gps_precision: float = 15.0) -> list[TrackPoint]:
    steps = _steps(points)
    if len(steps) < 2:
        return points
    max_step = max(2 * gps_precision, upper_whisker(steps))
    pieces: list[list[TrackPoint]] = []
    for i, p in enumerate(points):
        if pieces and steps[i - 1] <= max_step:
            pieces[-1].append(p)
        else:
            pieces.append([p])
    speeds = [p.speed for p in points if p.speed is not None]
    if len(speeds) < 2:
        return points
    max_speed = upper_whisker(speeds)
    merge_to: dict[int, int] = {}
    for left in range(len(pieces)):
        merge_to.setdefault(left, left)
        for right in range(left + 1, len(pieces)):
            if right in merge_to:
                continue
            if _speed(pieces[left][-1], pieces[right][0]) <= max_speed:
                merge_to[right] = merge_to[left]
                break
    groups: dict[int, list[TrackPoint]] = {}
    for i, piece in enumerate(pieces):
        groups.setdefault(merge_to[i], []).extend(piece)
    return sorted(groups.values(), key=len, reverse=True)[0]


#: The filter with mapillary_tools' defaults.
DEFAULT_FILTER = NoiseFilter()
