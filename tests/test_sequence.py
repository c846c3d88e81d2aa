"""amly.sequence: grouping, splitting, dedup, headings, checks, and the composed process()."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from amly import geo
from amly import sequence as sq
from amly.errors import DuplicateError, GeotagError, NullIslandError, SpeedTooFastError
from amly.synth import DrivePlan, drive
from amly.types import ImageMeta, Point

T0 = datetime(2024, 6, 1, 10, 0, 0, tzinfo=timezone.utc)
M_PER_DEG = geo.EARTH_RADIUS * 3.141592653589793 / 180  # metres per degree of latitude


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def img(name: str, s: float, north_m: float = 0.0, heading: float | None = None, **kw) -> ImageMeta:  # type: ignore[no-untyped-def]
    """An image ``north_m`` metres north of (52, 13), ``s`` seconds after T0."""
    return ImageMeta(name, at(s), 52.0 + north_m / M_PER_DEG, 13.0, heading=heading, **kw)


def from_points(points: list[Point], folder: str = "d", heading: bool = True) -> list[ImageMeta]:
    return [
        ImageMeta(
            f"{folder}/IMG_{i:04}.jpg",
            p.time,
            p.lat,
            p.lon,
            p.alt,
            p.heading if heading else None,
            make="Cam",
            model="One",
            filesize=1000,
        )
        for i, p in enumerate(points)
    ]


def _official(i: ImageMeta):  # type: ignore[no-untyped-def]
    """The same image as mapillary_tools' record (under a fake root /x)."""
    from mapillary_tools import types as mtypes

    assert i.capture_time is not None and i.lat is not None and i.lon is not None
    return mtypes.ImageMetadata(
        time=i.capture_time.timestamp(),
        lat=i.lat,
        lon=i.lon,
        alt=i.alt,
        angle=i.heading,
        filename=Path("/x") / i.path,
        filesize=i.filesize,
        width=i.width,
        height=i.height,
        MAPDeviceMake=i.make,
        MAPDeviceModel=i.model,
    )


# --- grouping -------------------------------------------------------------------------------


def test_group_by_folder_and_camera_sorted_by_time_then_name() -> None:
    images = [
        img("a/3.jpg", 5),
        img("a/2.jpg", 5),  # same time: file name decides
        img("a/1.jpg", 9),
        img("b/1.jpg", 0),
        img("a/x.jpg", 1, make="Other"),
        img("a/y.jpg", 2, serial="SN2"),
    ]
    groups = sq.group_images(images)
    paths = [[i.path for i in g] for g in groups]
    assert paths == [["a/2.jpg", "a/3.jpg", "a/1.jpg"], ["a/y.jpg"], ["a/x.jpg"], ["b/1.jpg"]]
    # Input order does not matter.
    for seed in range(5):
        shuffled = images[:]
        random.Random(seed).shuffle(shuffled)
        assert [[i.path for i in g] for g in sq.group_images(shuffled)] == paths


# --- splitting ------------------------------------------------------------------------------


def test_split_by_time_is_strictly_greater_than_cutoff() -> None:
    images = [img("0", 0), img("1", 60), img("2", 120.001), img("3", 121)]
    assert [[i.path for i in s] for s in sq.split_sequences(images)] == [["0", "1"], ["2", "3"]]
    assert len(sq.split_sequences(images, cutoff_time=None)) == 1


def test_split_by_distance() -> None:
    images = [img("0", 0, 0), img("1", 1, 100), img("2", 2, 200.5), img("3", 3, 210)]
    assert [len(s) for s in sq.split_sequences(images)] == [2, 2]
    assert [len(s) for s in sq.split_sequences(images, cutoff_distance=None)] == [4]


def test_split_by_max_images_and_filesize() -> None:
    images = [img(str(i), i, i, filesize=10) for i in range(7)]
    assert [len(s) for s in sq.split_sequences(images, max_images=3)] == [3, 3, 1]
    assert [len(s) for s in sq.split_sequences(images, max_sequence_filesize=25)] == [2, 2, 2, 1]
    assert sq.split_sequences([]) == []


def test_split_by_pixels_like_upstream() -> None:
    # 12 MP photos: upstream's 6 GP budget means 500 per sequence, before the 1000 limit.
    images = [img(f"{i:04}", i, i * 2.0, width=4000, height=3000) for i in range(1001)]
    assert [len(s.images) for s in sq.process(images).sequences] == [500, 500, 1]
    # Unknown sizes count as 1024 x 1024.
    small = [img(str(i), i, i * 2.0) for i in range(5)]
    assert [len(s) for s in sq.split_sequences(small, max_sequence_pixels=2 * 1024**2)] == [
        2,
        2,
        1,
    ]


# --- cutoff estimation ----------------------------------------------------------------------


def test_estimate_cutoff_time_on_a_realistic_day() -> None:
    # A 2 s timelapse with clock jitter and slow writes, two coffee breaks and a lunch.
    rnd = random.Random(3)
    gaps = [rnd.uniform(1.9, 2.1) for _ in range(600)] + [3.5, 4.2, 5.0, 6.1]
    rnd.shuffle(gaps)
    gaps[150], gaps[300], gaps[450] = 240.0, 300.0, 2700.0
    times = [0.0]
    for g in gaps:
        times.append(times[-1] + g)
    images = [img(f"{i:04}.jpg", s) for i, s in enumerate(times)]
    cutoff = sq.estimate_cutoff_time(images)
    assert 6.1 < cutoff < 240.0
    assert cutoff == pytest.approx((6.1 * 240.0) ** 0.5)
    assert [len(s) for s in sq.split_sequences(images, cutoff_time=cutoff)] == [151, 150, 150, 154]


def test_estimate_cutoff_time_without_breaks_returns_default() -> None:
    images = [img(str(i), i * 1.5) for i in range(50)]
    assert sq.estimate_cutoff_time(images) == sq.CUTOFF_TIME
    assert sq.estimate_cutoff_time(images[:2]) == sq.CUTOFF_TIME
    assert sq.estimate_cutoff_time([]) == sq.CUTOFF_TIME


def test_estimate_cutoff_ignores_gaps_between_cameras() -> None:
    # Two cameras in the same folder, interleaved: per-camera gaps are 1 s, no pause.
    a = [img(f"a{i}", i, make="A") for i in range(20)]
    b = [img(f"b{i}", i + 1000, make="B") for i in range(20)]
    assert sq.estimate_cutoff_time(a + b) == sq.CUTOFF_TIME


# --- duplicates -----------------------------------------------------------------------------


def test_duplicate_needs_distance_and_angle() -> None:
    seq = [
        img("a", 0, 0.0, 90.0),
        img("b", 1, 0.05, 93.0),  # close, same direction: duplicate
        img("c", 2, 0.05, 100.0),  # close, but turned by 10 degrees: kept
        img("d", 3, 5.0, 100.0),  # same direction, but 5 m further: kept
    ]
    kept, dups = sq.find_duplicates(seq)
    assert [i.path for i in kept] == ["a", "c", "d"]
    assert [d.path for d in dups] == ["b"]
    assert isinstance(dups[0], DuplicateError)
    assert dups[0].kind == "MapillaryDuplicationError"
    assert dups[0].vars["duplicate_of"] == "a"


def test_duplicate_without_headings_is_distance_alone() -> None:
    seq = [img("a", 0, 0.0), img("b", 1, 0.05, 180.0), img("c", 2, 0.2)]
    kept, dups = sq.find_duplicates(seq)
    assert [i.path for i in kept] == ["a", "c"] and [d.path for d in dups] == ["b"]


def test_duplicates_compare_with_last_kept_and_match_mapillary_tools() -> None:
    from mapillary_tools import process_sequence_properties as psp

    # A slow creep, 4 cm per photo: comparing with the PREVIOUS image would keep them all.
    seq = [img(str(i), i, i * 0.04) for i in range(10)]
    kept, dups = sq.find_duplicates(seq, 0.1, 5)
    assert [i.path for i in kept] == ["0", "3", "6", "9"]

    theirs, _ = psp.duplication_check(
        [_official(im) for im in seq],
        max_duplicate_distance=0.1,
        max_duplicate_angle=5,
    )
    assert [p.filename.name for p in theirs] == ["0", "3", "6", "9"]


def test_red_light_stop_collapses() -> None:
    points = drive(DrivePlan(n=80, stop_at=30, stop_photos=12))
    kept, dups = sq.find_duplicates(from_points(points))
    assert len(dups) == 12
    assert len(kept) == 68
    # The stop photos are the ones dropped; the first photo at the light is kept.
    assert {d.path for d in dups} == {f"d/IMG_{i:04}.jpg" for i in range(31, 43)}


# --- headings -------------------------------------------------------------------------------


def test_headings_follow_travel_with_offset() -> None:
    seq = [img("0", 0, 0), img("1", 1, 10), img("2", 2, 10), img("3", 3, 20)]
    out = sq.interpolate_headings(seq)
    assert [round(i.heading or 0, 6) for i in out] == [0, 0, 0, 0]
    out = sq.interpolate_headings(seq, offset_angle=90)
    assert [round(i.heading or 0, 6) for i in out] == [90, 90, 90, 90]
    assert seq[0].heading is None  # inputs untouched

    # Eastwards, then the stop at the end: last images take the previous heading.
    east = [ImageMeta(str(i), at(i), 0.0, x) for i, x in enumerate([0, 0.001, 0.002, 0.002])]
    assert [round(i.heading or 0) for i in sq.interpolate_headings(east, -100)] == [350] * 4


def test_headings_skip_same_position_to_next_distinct() -> None:
    pos = [(0.0, 0.0), (0.0, 0.0), (0.001, 0.0)]  # first two at the same spot, then north
    seq = [ImageMeta(str(i), at(i), lat, lon) for i, (lat, lon) in enumerate(pos)]
    headings = [i.heading for i in sq.interpolate_headings(seq)]
    assert headings == pytest.approx([0.0, 0.0, 0.0])
    pos = [(0.0, 0.0), (0.0, 0.0), (0.0, 0.001)]  # then east: both first images point east
    seq = [ImageMeta(str(i), at(i), lat, lon) for i, (lat, lon) in enumerate(pos)]
    assert [round(i.heading or 0) for i in sq.interpolate_headings(seq)] == [90, 90, 90]


def test_headings_only_missing_and_degenerate() -> None:
    seq = [img("0", 0, 0, heading=45.0), img("1", 1, 10)]
    out = sq.interpolate_headings(seq, only_missing=True)
    assert [i.heading for i in out] == [45.0, 0.0]
    assert [i.heading for i in sq.interpolate_headings([img("0", 0)])] == [0.0]
    assert [i.heading for i in sq.interpolate_headings([img("0", 0, heading=12.0)], 3)] == [15.0]


# --- null island and speed ------------------------------------------------------------------


def test_null_island() -> None:
    err = sq.check_null_island(ImageMeta("z.jpg", at(0), 0.0, 0.0))
    assert isinstance(err, NullIslandError) and err.path == "z.jpg"
    assert sq.check_null_island(ImageMeta("z.jpg", at(0), 0.0, 0.01)) is None
    assert sq.check_null_island(ImageMeta("z.jpg", at(0), None, None)) is None


def _eastward(lons: list[float]) -> list[ImageMeta]:
    return [ImageMeta(f"{i}.jpg", at(i), 1.0, x) for i, x in enumerate(lons)]  # off (0, 0)


def test_speed_single_outlier_flags_only_the_outlier() -> None:
    step = 10 / M_PER_DEG  # 10 m per second along the equator
    lons = [i * step for i in range(10)]
    lons[5] = 0.3  # 33 km away for one photo
    kept, errors = sq.check_speed(_eastward(lons), 400)
    assert [e.path for e in errors] == ["5.jpg"]
    assert isinstance(errors[0], SpeedTooFastError) and errors[0].vars["speed_kmh"] > 400
    assert len(kept) == 9
    # mapillary_tools' rule (average speed of the whole sequence) rejects all ten photos.
    from mapillary_tools import process_sequence_properties as psp

    seq = [_official(i) for i in _eastward(lons)]
    ok, errs = psp._check_sequences_by_limits([seq], max_capture_speed_kmh=400)
    assert ok == [] and len(errs) == 10


def test_speed_two_photo_spike_first_and_last() -> None:
    step = 10 / M_PER_DEG
    lons = [i * step for i in range(10)]
    lons[4] = lons[5] = 0.3
    assert [e.path for e in sq.check_speed(_eastward(lons), 400)[1]] == ["4.jpg", "5.jpg"]
    lons = [i * step for i in range(10)]
    lons[0] = -0.3
    kept, errors = sq.check_speed(_eastward(lons), 400)
    assert [e.path for e in errors] == ["0.jpg"] and kept[0].path == "1.jpg"
    lons = [i * step for i in range(10)]
    lons[-1] = 0.3
    assert [e.path for e in sq.check_speed(_eastward(lons), 400)[1]] == ["9.jpg"]


def test_speed_check_does_not_fire_at_sequence_borders() -> None:
    # Two drives 50 km apart, two minutes between them: separate sequences.
    a = [img(f"a{i}", i, i * 10.0) for i in range(20)]
    b = [img(f"b{i}", 140 + i, 50_000 + i * 10.0) for i in range(20)]
    res = sq.process(a + b)
    assert [len(s.images) for s in res.sequences] == [20, 20]
    assert res.errors == []
    # A lone photo after the jump, checked across the border, WOULD be flagged...
    assert [e.path for e in sq.check_speed(a + b[:1], 400)[1]] == ["b0"]
    # ...but process() only compares within a sequence, so it is kept as its own sequence.
    res = sq.process(a + b[:1])
    assert [len(s.images) for s in res.sequences] == [20, 1] and res.errors == []
    # Two cameras driving at the same time far apart are never compared either.
    c = [img(f"c/{i}", i, 30_000 + i * 10.0, make="Other") for i in range(20)]
    assert sq.process(a + c).errors == []


def test_speed_persistent_jump_is_not_an_outlier() -> None:
    step = 10 / M_PER_DEG
    lons = [i * step for i in range(5)] + [0.5 + i * step for i in range(5)]
    kept, errors = sq.check_speed(_eastward(lons), 400)
    assert errors == [] and len(kept) == 10
    # process() splits there by distance instead.
    res = sq.process(_eastward(lons))
    assert [len(s.images) for s in res.sequences] == [5, 5]


def test_zigzag_matches_mapillary_tools() -> None:
    from mapillary_tools import process_sequence_properties as psp

    rnd = random.Random(11)
    points = drive(DrivePlan(n=300, seed=11))
    images = from_points(points, heading=False)
    for k in rnd.sample(range(10, 290), 6):  # glitches of 40..100 m, some two photos long
        for m in range(k, k + rnd.choice([1, 2])):
            p = images[m]
            assert p.lat is not None
            images[m] = dataclasses.replace(p, lat=p.lat + rnd.uniform(40, 100) / M_PER_DEG)
    kept, errors = sq.check_zigzag(images)
    theirs, t_errors = psp._check_sequences_zigzag(
        [[_official(i) for i in images]], window_size=5, deviation_threshold=0.8, min_distance=30
    )
    assert len(errors) >= 3  # upstream's rule misses glitches along the direction of travel
    assert [e.path for e in errors] == [str(e.filename.relative_to("/x")) for e in t_errors]
    assert [i.path for i in kept] == [str(m.filename.relative_to("/x")) for m in theirs[0]]
    assert all(e.kind == "MapillaryZigZagError" for e in errors)
    # A straight drive has none; process() can switch the check off.
    assert sq.check_zigzag(from_points(points))[1] == []
    res = sq.process(images, sq.ProcessOptions(check_zigzag=False, cutoff_distance=None))
    assert res.errors == []


def test_apply_time_offset() -> None:
    images = [img("a", 0), ImageMeta("b")]
    out = sq.apply_time_offset(images, 3600.25)
    assert out[0].capture_time == at(3600.25) and out[1].capture_time is None
    assert images[0].capture_time == at(0)
    assert sq.apply_offset is sq.apply_time_offset


# --- process --------------------------------------------------------------------------------


def test_process_accounts_for_every_image_with_deterministic_uuids() -> None:
    first = from_points(drive(DrivePlan(n=120, stop_at=40, stop_photos=10, park_at=80)), "x")
    second = from_points(drive(DrivePlan(n=30, start_lat=48.1, start_lon=11.5, seed=2)), "y")
    broken = [
        ImageMeta("x/no_gps.jpg", at(5)),
        ImageMeta("x/no_time.jpg", None, 52.0, 13.0),
        ImageMeta("x/null.jpg", at(6), 0.0, 0.0),
    ]
    images = first + second + broken
    res = sq.process(images)
    # 120 = 40 kept before the light + 1 at it + 39 after, 10 dups; park splits at 80.
    assert [(s.uuid, len(s.images)) for s in res.sequences] == [("0", 70), ("1", 40), ("2", 30)]
    kinds = sorted(type(e).__name__ for e in res.errors)
    assert kinds == ["DuplicateError"] * 10 + ["GeotagError"] * 2 + ["NullIslandError"]
    assert all(e.path.startswith("x/") for e in res.errors)
    seen = [i.path for i in res.images] + [e.path for e in res.errors]
    assert sorted(seen) == sorted(i.path for i in images)
    assert all(i.heading is not None for i in res.images)
    shuffled = images[:]
    random.Random(1).shuffle(shuffled)
    again = sq.process(shuffled)
    assert [[i.path for i in s.images] for s in again.sequences] == [
        [i.path for i in s.images] for s in res.sequences
    ]
    assert any(isinstance(e, GeotagError) for e in res.errors)


def test_process_max_images_offsets_and_interpolate_directions() -> None:
    images = from_points(drive(DrivePlan(n=25)), heading=True)
    opts = sq.ProcessOptions(max_images=10, offset_angle=90, interpolate_directions=True)
    res = sq.process(images, opts)
    assert [len(s.images) for s in res.sequences] == [10, 10, 5]
    # Recomputed from travel (+90), not the EXIF ones: image 0 looks right of the road.
    h0 = res.sequences[0].images[0].heading
    a, b = images[0], images[1]
    assert a.lat is not None and a.lon is not None and b.lat is not None and b.lon is not None
    assert h0 == pytest.approx((geo.bearing(a.lat, a.lon, b.lat, b.lon) + 90) % 360)
    res = sq.process(images, sq.ProcessOptions(time_offset=-10, offset_angle=10))
    assert res.images[0].capture_time == images[0].capture_time - timedelta(seconds=10)
    assert res.images[0].heading == pytest.approx(((images[0].heading or 0) + 10) % 360)


def test_process_estimates_cutoff_time_when_none() -> None:
    points = drive(DrivePlan(n=60, interval=2.0, park_at=30, park_seconds=45))
    images = from_points(points)
    assert len(sq.process(images).sequences) == 1  # 45 s pause < 60 s default
    res = sq.process(images, sq.ProcessOptions(cutoff_time=None))
    assert res.cutoff_time is not None and 2 < res.cutoff_time < 47
    assert [len(s.images) for s in res.sequences] == [30, 30]


def test_process_equal_timestamps_get_spread() -> None:
    # 3 photos per whole second (EXIF without sub-seconds), moving 4 m per photo.
    images = [img(f"{i:02}.jpg", i // 3, i * 4.0) for i in range(9)]
    res = sq.process(images)
    times = [i.capture_time for i in res.images]
    assert len(set(times)) == 9 and times == sorted(times)
    assert times[1] - times[0] == timedelta(microseconds=333333)


def test_process_matches_mapillary_tools() -> None:
    """Same photos through both tools: same sequences, same duplicates, same headings."""
    from mapillary_tools import process_sequence_properties as psp
    from mapillary_tools import types as mtypes

    drives = [
        from_points(drive(DrivePlan(n=150, stop_at=50, stop_photos=15, park_at=100)), "a"),
        from_points(drive(DrivePlan(n=40, seed=5, start_lat=52.6)), "b", heading=False),
    ]
    # A 60 m GPS glitch for one photo in drive b: both tools must drop it as a zig-zag.
    g = drives[1][20]
    assert g.lon is not None
    drives[1][20] = dataclasses.replace(g, lon=g.lon + 60 / 67_700)
    images = [i for d in drives for i in d]
    # Two photos with equal whole-second times, one at null island.
    images.append(dataclasses.replace(images[10], path="a/IMG_0010b.jpg"))
    images.append(ImageMeta("b/null.jpg", images[-1].capture_time, 0.0, 0.0, filesize=1))

    ours = sq.process(images)
    theirs = psp.process_sequence_properties([_official(i) for i in images])
    t_images = [m for m in theirs if isinstance(m, mtypes.ImageMetadata)]
    t_errors = [m for m in theirs if not isinstance(m, mtypes.ImageMetadata)]
    t_seqs: dict[str, list[mtypes.ImageMetadata]] = {}
    for m in t_images:
        assert m.MAPSequenceUUID is not None
        t_seqs.setdefault(m.MAPSequenceUUID, []).append(m)

    def rel(p: Path) -> str:
        return str(p.relative_to("/x"))

    assert {u: [rel(m.filename) for m in s] for u, s in t_seqs.items()} == {
        s.uuid: [i.path for i in s.images] for s in ours.sequences
    }
    assert sorted((rel(e.filename), type(e.error).__name__) for e in t_errors) == sorted(
        (e.path, e.kind) for e in ours.errors
    )
    by_path = {i.path: i for i in ours.images}
    for m in t_images:
        mine = by_path[rel(m.filename)]
        assert mine.capture_time is not None
        assert mine.capture_time.timestamp() == pytest.approx(m.time, abs=1e-6)
        # Headings agree except where upstream points at an identical next position (0).
        assert m.angle is not None and mine.heading is not None
        assert geo.angle_diff(m.angle, mine.heading) < 1e-6
