"""amly.geo: exact small cases for distances, bearings, interpolation, boxes and tiles."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from amly import geo
from amly.types import Point

T0 = datetime(2024, 6, 1, 10, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_one_degree_of_latitude_is_111195_m() -> None:
    expected = geo.EARTH_RADIUS * math.pi / 180  # 111,195.08 m
    assert geo.distance(0, 0, 1, 0) == pytest.approx(expected, abs=1e-6)
    assert geo.distance(52, 13, 53, 13) == pytest.approx(expected, abs=1e-6)
    assert round(expected) == 111195


def test_longitude_degree_shrinks_with_cos_lat() -> None:
    d = geo.distance(60, 0, 60, 1)
    # On a sphere the great circle is a bit shorter than the parallel arc (cos 60 = 0.5).
    assert 0.4999 * 111195.08 < d < 0.5 * 111195.08


def test_distance_symmetric_and_zero() -> None:
    assert geo.distance(52.52, 13.405, 48.137, 11.575) == pytest.approx(
        geo.distance(48.137, 11.575, 52.52, 13.405)
    )
    assert geo.distance(10, 20, 10, 20) == 0.0
    # Antipodes: half the circumference, no domain error from rounding.
    assert geo.distance(0, 0, 0, 180) == pytest.approx(math.pi * geo.EARTH_RADIUS)


def test_distance_agrees_with_mapillary_tools_within_half_percent() -> None:
    from mapillary_tools import geo as mgeo

    for a, b in [((52.52, 13.405), (52.53, 13.41)), ((-33.9, 151.2), (-33.8, 151.3))]:
        ours = geo.distance(*a, *b)
        theirs = mgeo.gps_distance(a, b)
        assert abs(ours - theirs) / theirs < 0.005


@pytest.mark.parametrize(
    "to, expected", [((1, 0), 0.0), ((0, 1), 90.0), ((-1, 0), 180.0), ((0, -1), 270.0)]
)
def test_cardinal_bearings(to: tuple[float, float], expected: float) -> None:
    assert geo.bearing(0, 0, *to) == pytest.approx(expected, abs=1e-9)


def test_bearing_range_and_antimeridian() -> None:
    assert geo.bearing(0, 179.9, 0, -179.9) == pytest.approx(90)
    assert geo.bearing(0, -179.9, 0, 179.9) == pytest.approx(270)
    assert 0 <= geo.bearing(0, 0, -1, -1e-12) < 360
    assert geo.bearing(52, 13, 52, 13) == 0.0  # no direction: upstream convention


def test_bearing_matches_mapillary_tools() -> None:
    from mapillary_tools import geo as mgeo

    a, b = (52.52, 13.405), (52.51, 13.39)
    assert geo.bearing(*a, *b) == pytest.approx(mgeo.compute_bearing(a, b), abs=1e-9)


def test_angle_diff() -> None:
    assert geo.angle_diff(359, 1) == 2
    assert geo.angle_diff(1, 359) == 2
    assert geo.angle_diff(0, 180) == 180
    assert geo.angle_diff(-90, 270) == 0
    assert geo.angle_diff(720 + 10, 20) == 10


TRACK = [
    Point(at(0), 52.0, 13.0, 100.0),
    Point(at(10), 52.0, 13.001, 110.0),
    Point(at(20), 52.001, 13.001, None),
    Point(at(200), 52.002, 13.001, 130.0),  # 180 s hole before this fix
]


def test_interpolate_midpoint() -> None:
    p = geo.interpolate(TRACK, at(5), max_gap=60)
    assert (p.time, p.lat, p.alt) == (at(5), 52.0, 105.0)
    assert p.lon == pytest.approx(13.0005, abs=1e-12)
    assert p.heading == pytest.approx(90, abs=0.01)


def test_interpolate_exact_fix_and_ends() -> None:
    assert geo.interpolate(TRACK, at(10), max_gap=1).lon == 13.001  # on a fix: no gap check
    assert geo.interpolate(TRACK, at(0), max_gap=1).lat == 52.0
    last = geo.interpolate(TRACK, at(200), max_gap=1)
    assert (last.lat, last.alt) == (52.002, 130.0)


def test_interpolate_missing_alt_gives_none() -> None:
    assert geo.interpolate(TRACK, at(15), max_gap=60).alt is None


def test_interpolate_outside_never_extrapolates() -> None:
    with pytest.raises(geo.OutsideTrack, match="before"):
        geo.interpolate(TRACK, at(-0.001), max_gap=60)
    with pytest.raises(geo.OutsideTrack, match="after"):
        geo.interpolate(TRACK, at(200.5), max_gap=None)
    # Within the tolerance the END fix is used, not an extrapolation of the last leg.
    p = geo.interpolate(TRACK, at(201), max_gap=None, tolerance=2)
    assert (p.time, p.lat, p.lon) == (at(201), 52.002, 13.001)
    with pytest.raises(geo.OutsideTrack):
        geo.interpolate([], at(0), max_gap=None)
    assert issubclass(geo.OutsideTrack, ValueError) and issubclass(geo.InGap, ValueError)


def test_interpolate_gap() -> None:
    with pytest.raises(geo.InGap, match="180 s apart"):
        geo.interpolate(TRACK, at(100), max_gap=60)
    p = geo.interpolate(TRACK, at(110), max_gap=180)  # exactly max_gap: allowed
    assert p.lat == pytest.approx(52.0015)
    assert geo.interpolate(TRACK, at(100), max_gap=None).lat == pytest.approx(52.0014444, abs=1e-6)


def test_locate_respects_segments() -> None:
    seg_a = [Point(at(0), 0.0, 0.0), Point(at(10), 0.0, 0.01)]
    seg_b = [Point(at(20), 0.0, 0.02), Point(at(30), 0.0, 0.03)]
    # Given in any order.
    segs = [seg_b, seg_a]
    assert geo.locate(segs, at(5), max_gap=60).lon == pytest.approx(0.005)
    assert geo.locate(segs, at(25), max_gap=60).lon == pytest.approx(0.025)
    assert geo.locate(segs, at(10), max_gap=60).lon == 0.01  # end of a segment
    assert geo.locate(segs, at(20), max_gap=60).lon == 0.02  # start of the next
    with pytest.raises(geo.InGap, match="between two track segments"):
        geo.locate(segs, at(15), max_gap=3600)  # would be fine if the segments were joined
    with pytest.raises(geo.OutsideTrack):
        geo.locate(segs, at(-1), max_gap=60)
    with pytest.raises(geo.OutsideTrack):
        geo.locate(segs, at(31), max_gap=60)
    with pytest.raises(geo.OutsideTrack):
        geo.locate([[], []], at(0), max_gap=60)
    # Tolerance at a segment border stays inside the segment.
    assert geo.locate(segs, at(10.5), max_gap=60, tolerance=1).lon == 0.01
    assert geo.locate(segs, at(19.5), max_gap=60, tolerance=1).lon == 0.02


def test_validate_bbox_messages() -> None:
    assert geo.validate_bbox((1, 2, 3, 4)) == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="inverted: west"):
        geo.validate_bbox((3, 2, 1, 4))
    with pytest.raises(ValueError, match="inverted: south"):
        geo.validate_bbox((1, 4, 3, 2))
    with pytest.raises(ValueError, match="outside -90..90"):
        geo.validate_bbox((1, -91, 3, 4))
    with pytest.raises(ValueError, match="outside -180..180"):
        geo.validate_bbox((1, 2, 181, 4))
    with pytest.raises(ValueError, match="zero area"):
        geo.validate_bbox((1, 2, 1, 4))
    with pytest.raises(ValueError, match="4 numbers"):
        geo.validate_bbox((1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-finite"):
        geo.validate_bbox((1, 2, float("nan"), 4))


def test_split_bbox_tiles_exactly() -> None:
    box = (13.30, 52.50, 13.335, 52.52)
    cells = geo.split_bbox(box, max_side=0.01)
    assert len(cells) == 4 * 2
    for w, s, e, n in cells:
        assert e - w <= 0.01 + 1e-12 and n - s <= 0.01 + 1e-12
    assert min(c[0] for c in cells) == 13.30 and max(c[2] for c in cells) == 13.335
    assert min(c[1] for c in cells) == 52.50 and max(c[3] for c in cells) == 52.52
    area = sum((e - w) * (n - s) for w, s, e, n in cells)
    assert area == pytest.approx((13.335 - 13.30) * (52.52 - 52.50))
    # No sliver from float noise: 0.07 / 0.01 is 7.000000000000001.
    assert len(geo.split_bbox((0, 0, 0.07, 0.01))) == 7
    assert geo.split_bbox((0, 0, 0.005, 0.005)) == [(0.0, 0.0, 0.005, 0.005)]
    with pytest.raises(ValueError):
        geo.split_bbox((0, 0, 1, 1), max_side=0)
    with pytest.raises(ValueError, match="use a smaller box"):
        geo.split_bbox((-180, -90, 180, 90))  # 648 million cells


def test_quarter() -> None:
    q = geo.quarter((10, 50, 12, 52))
    assert q == [(10, 50, 11, 51), (11, 50, 12, 51), (10, 51, 11, 52), (11, 51, 12, 52)]


def test_tiles_roundtrip() -> None:
    x, y, z = geo.tile(13.405, 52.52, 16)
    w, s, e, n = geo.tile_bounds(x, y, z)
    assert w <= 13.405 < e and s <= 52.52 < n
    assert geo.tiles((w + 1e-7, s + 1e-7, e - 1e-7, n - 1e-7), z) == [(x, y, z)]
    assert len(geo.tiles((-180, -85, 180, 85), 2)) == 16
    with pytest.raises(ValueError, match="tiles"):
        geo.tiles((-180, -85, 180, 85), 14)
