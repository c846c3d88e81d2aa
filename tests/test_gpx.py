"""amly.gpx: GPX 1.0/1.1 and NMEA reading, GPX writing and joining (gpxpy as the referee)."""

from __future__ import annotations

import functools
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import gpxpy
import pytest

from amly import gpx
from amly.synth import DrivePlan, drive, gpx_text
from amly.types import Point

UTC = timezone.utc


def t(h: int, m: int, s: int, us: int = 0) -> datetime:
    return datetime(2024, 6, 1, h, m, s, us, tzinfo=UTC)


TWO_SEGMENTS = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
  <metadata><time>2024-06-01T00:00:00Z</time></metadata>
  <wpt lat="1" lon="1"><time>2024-06-01T09:00:00Z</time></wpt>
  <trk><name> morning </name>
    <trkseg>
      <trkpt lat="52.5" lon="13.4"><ele>34.5</ele><time>2024-06-01T10:00:01Z</time></trkpt>
      <trkpt lat="52.4" lon="13.3"><ele>30</ele><time>2024-06-01T10:00:00.250Z</time></trkpt>
      <trkpt lat="52.6" lon="13.5"><ele>31</ele></trkpt>
    </trkseg>
    <trkseg>
      <trkpt lat="-33.9" lon="-151.2"><time>2024-06-01T12:30:00+02:00</time></trkpt>
      <trkpt lat="-33.8" lon="-151.1"><ele> </ele><time>2024-06-01T10:31:00</time></trkpt>
    </trkseg>
    <trkseg><trkpt lat="0" lon="0"/></trkseg>
  </trk>
</gpx>
"""


def test_gpx_two_segments_sorted_time_variants() -> None:
    segs = gpx.parse_gpx_text(TWO_SEGMENTS)
    assert len(segs) == 2  # the third segment has no timed point: dropped
    assert segs[0] == [
        Point(t(10, 0, 0, 250000), 52.4, 13.3, 30.0),
        Point(t(10, 0, 1), 52.5, 13.4, 34.5),
    ]
    assert segs[1] == [Point(t(10, 30, 0), -33.9, -151.2), Point(t(10, 31, 0), -33.8, -151.1)]
    assert all(p.time.tzinfo is not None for s in segs for p in s)
    tracks = gpx.parse_gpx_tracks(TWO_SEGMENTS.encode())
    assert [(tr.name, len(tr.segments)) for tr in tracks] == [("morning", 2)]


def test_gpx_10_and_no_namespace() -> None:
    body = (
        '<trk><trkseg><trkpt lat="1.5" lon="2.5"><ele>3</ele>'
        "<time>2024-06-01T10:00:00Z</time><course>90</course></trkpt></trkseg></trk>"
    )
    v10 = f'<gpx version="1.0" xmlns="http://www.topografix.com/GPX/1/0">{body}</gpx>'
    bare = f'<gpx version="1.1">{body}</gpx>'
    expected = [[Point(t(10, 0, 0), 1.5, 2.5, 3.0)]]
    assert gpx.parse_gpx_text(v10) == expected
    assert gpx.parse_gpx_text(bare) == expected


def test_timed_route_is_a_track() -> None:
    doc = (
        '<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><rte><name>r</name>'
        '<rtept lat="1" lon="2"><time>2024-06-01T10:00:00Z</time></rtept>'
        '<rtept lat="3" lon="4"/></rte><rte><rtept lat="1" lon="2"/></rte></gpx>'
    )
    tracks = gpx.parse_gpx_tracks(doc)
    assert [(tr.name, tr.segments) for tr in tracks] == [
        ("r", [[Point(t(10, 0, 0), 1.0, 2.0)]]),
        (None, []),
    ]


def test_not_gpx_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not a GPX document"):
        gpx.parse_gpx_text("<kml></kml>")
    with pytest.raises(ValueError, match="well-formed"):
        gpx.parse_gpx_text("<gpx><trk>")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-06-01T10:00:00Z", t(10, 0, 0)),
        ("2024-06-01T10:00:00.5Z", t(10, 0, 0, 500000)),
        ("2024-06-01T10:00:00.123456789Z", t(10, 0, 0, 123456)),
        ("2024-06-01T12:00:00+02:00", t(10, 0, 0)),
        ("2024-06-01T05:30:00-0430", t(10, 0, 0)),
        ("2024-06-01T10:00:00", t(10, 0, 0)),
        ("2024-06-01 10:00:00z", t(10, 0, 0)),
        (" 2024-06-01T10:00:00,25Z ", t(10, 0, 0, 250000)),
    ],
)
def test_parse_time_variants(text: str, expected: datetime) -> None:
    assert gpx.parse_time(text) == expected


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        gpx.parse_time("yesterday")


def test_same_points_as_gpxpy(tmp_path: Path) -> None:
    points = drive(DrivePlan(n=500, park_at=200))
    path = tmp_path / "drive.gpx"
    path.write_text(gpx_text(points))
    ours = gpx.read_track(path)
    with open(path) as f:
        ref = gpxpy.parse(f)
    theirs = [
        (p.time, p.latitude, p.longitude, p.elevation)
        for tr in ref.tracks
        for s in tr.segments
        for p in s.points
    ]
    assert [(p.time, p.lat, p.lon, p.alt) for s in ours for p in s] == theirs


# --- NMEA -----------------------------------------------------------------------------------


def nmea(body: str, checksum: str | None = None) -> str:
    """A sentence with its correct checksum (or the given wrong one)."""
    x = functools.reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{checksum or format(x, '02X')}"


NMEA_LOG = "\r\n".join(
    [
        "garbage line",
        nmea("GPGGA,235958.00,4807.0380,N,01131.0000,E,1,08,0.9,545.4,M,46.9,M,,"),
        nmea("GPRMC,235958.00,A,4807.0380,N,01131.0000,E,022.4,084.4,311223,003.1,W"),
        nmea("GPRMC,235959.00,V,4807.0380,N,01131.0000,E,022.4,084.4,311223,003.1,W"),
        nmea("GPRMC,235959.50,A,4807.0390,N,01131.0010,E,022.4,084.4,311223,,", "00"),
        "$GPRMC,235959.60,A,4807.0390,N,01131.0010,E,022.4,084.4,311223,,",  # no checksum
        nmea("GNGGA,000000.00,3351.0000,S,15112.0000,W,2,08,0.9,12.0,M,46.9,M,,"),
        nmea("GNGGA,000001.00,3351.0000,S,15112.0000,W,0,00,,,M,,M,,"),  # no fix
        nmea("GNRMC,000002.00,A,3351.0000,S,15112.0000,W,0.0,0.0,010124,,,A"),
    ]
)


def test_nmea_checksum_date_and_altitude() -> None:
    segs = gpx.parse_nmea_text(NMEA_LOG.encode())
    assert len(segs) == 1
    pts = segs[0]
    assert [p.time for p in pts] == [
        datetime(2023, 12, 31, 23, 59, 58, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC),  # GGA after midnight: next day
        datetime(2024, 1, 1, 0, 0, 2, tzinfo=UTC),
    ]
    assert pts[0].lat == pytest.approx(48 + 7.038 / 60)
    assert pts[0].lon == pytest.approx(11 + 31 / 60)
    assert pts[0].alt == 545.4
    assert (pts[1].lat, pts[1].lon, pts[1].alt) == pytest.approx((-33.85, -151.2, 12.0))
    assert pts[2].alt is None


def test_nmea_bad_checksum_is_skipped() -> None:
    good = nmea("GPRMC,101010,A,4807.038,N,01131.000,E,0,0,010624,,")
    assert len(gpx.parse_nmea_text(good)[0]) == 1
    assert gpx.parse_nmea_text(good[:-2] + "FF") == []
    assert gpx.parse_nmea_text(good[:-3]) == []  # checksum missing
    # Without any RMC there is no date: nothing rather than guessed times.
    assert gpx.parse_nmea_text(nmea("GPGGA,101010,4807.038,N,01131.000,E,1,08,0.9,1,M,,M,,")) == []


def test_read_track_sniffs_nmea(tmp_path: Path) -> None:
    p = tmp_path / "log.txt"
    p.write_text(NMEA_LOG)
    assert gpx.read_track(p) == gpx.read_nmea(p)
    assert len(gpx.read_track(p)[0]) == 3


# --- alignment and writing ------------------------------------------------------------------


def test_offset_to_align() -> None:
    segs = gpx.parse_gpx_text(TWO_SEGMENTS)
    assert gpx.offset_to_align(t(9, 59, 0), segs) == 60.25
    assert gpx.offset_to_align(t(10, 1, 0), segs[1]) == 29 * 60
    with pytest.raises(ValueError):
        gpx.offset_to_align(t(0, 0, 0), [])


def test_track_to_gpx_roundtrip_through_gpxpy() -> None:
    points = [
        Point(t(10, 0, 0), 52.123456789, -13.000000001, 34.25),
        Point(t(10, 0, 1, 500), 1e-7, 0.0, None),
    ]
    doc = gpx.track_to_gpx(points, name="Drive <1>", description="x & y", time=t(9, 0, 0))
    g = gpxpy.parse(doc)
    assert g.version == "1.1" and g.description == "x & y"
    assert g.tracks[0].name == "Drive <1>"
    pts = g.tracks[0].segments[0].points
    assert [(p.latitude, p.longitude, p.elevation) for p in pts] == [
        (52.123456789, -13.000000001, 34.25),
        (1e-7, 0.0, None),
    ]
    assert pts[1].time == t(10, 0, 1, 500)
    assert gpx.parse_gpx_text(doc) == [points]
    # Segments in, segments out.
    assert gpx.parse_gpx_text(gpx.track_to_gpx([points[:1], points[1:]])) == [
        points[:1],
        points[1:],
    ]
    assert "<trkseg>" not in gpx.track_to_gpx([])


def test_join_gpx(tmp_path: Path) -> None:
    a = drive(DrivePlan(n=30))
    b = drive(DrivePlan(n=20, seed=3, start=t(12, 0, 0)))
    (tmp_path / "a.gpx").write_text(gpx.track_to_gpx(a, name="first"))
    (tmp_path / "b.gpx").write_text(TWO_SEGMENTS)
    (tmp_path / "c.gpx").write_text(gpx.track_to_gpx([b[:10], b[10:]]))  # unnamed
    (tmp_path / "d.nmea").write_text(NMEA_LOG)
    out = tmp_path / "out" / "joined.gpx"
    out.parent.mkdir()
    inputs = [tmp_path / n for n in ("a.gpx", "b.gpx", "c.gpx", "d.nmea")]
    assert gpx.join_gpx(inputs, out, name="all") == 4
    assert os.listdir(out.parent) == ["joined.gpx"]  # no temp file left behind
    with open(out) as f:
        g = gpxpy.parse(f)
    assert g.version == "1.1" and g.name == "all"
    assert [tr.name for tr in g.tracks] == ["first", "morning", "c", "d"]
    assert [len(tr.segments) for tr in g.tracks] == [1, 2, 2, 1]
    assert [sum(len(s.points) for s in tr.segments) for tr in g.tracks] == [30, 4, 20, 3]
    assert gpx.read_track(out)[0] == [Point(p.time, p.lat, p.lon, p.alt) for p in a]
    text = out.read_text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert 'xmlns="http://www.topografix.com/GPX/1/1"' in text
    # Joining again replaces the file atomically (same content: deterministic).
    gpx.join_gpx(inputs, out, name="all")
    assert out.read_text() == text


def test_join_gpx_skips_nothing_silently_on_bad_input(tmp_path: Path) -> None:
    (tmp_path / "bad.gpx").write_text("<gpx><trk>")
    with pytest.raises(ValueError):
        gpx.join_gpx([tmp_path / "bad.gpx"], tmp_path / "out.gpx")
    assert not (tmp_path / "out.gpx").exists()


def test_written_times_keep_subseconds() -> None:
    base = t(10, 0, 0)
    pts = [Point(base + timedelta(milliseconds=i * 333), 1.0, 1.0 + i * 1e-5) for i in range(4)]
    assert gpx.parse_gpx_text(gpx.track_to_gpx(pts)) == [pts]
