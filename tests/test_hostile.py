"""Hostile inputs, run as a user would: every in-place and processing verb on a folder a broken
card could hold (truncations, IFD loops, bad types and counts, bad rationals, NaN, calendar
edges, odd names, looping links), and on hostile GPX/NMEA tracks.

Whatever the bytes: exit code 1 (some files failed) or 0/2 where stated, never a traceback,
never an exception's text as a message, strict JSON out, and a photo that cannot be edited
safely stays byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from _hostile import (
    LAT,
    LON,
    NON_UTF8,
    T0,
    exif,
    fallback_photos,
    good_gpx,
    good_nmea,
    gpx,
    healthy,
    hostile_photos,
    iso,
    nmea_sentence,
    photo,
    track_points,
    trkpt,
    write_corpus,
)
from _process_helpers import amly

from amly.description import DESCRIPTION_FILE, format_capture_time, parse_capture_time
from amly.errors import MetadataError
from amly.metadata import read_image, set_exif_bytes
from amly.metadata._jpeg import JpegError, walk

#: Messages that are an exception's text rather than a sentence for a person.
EXCEPTION_TEXT = re.compile(r"^\w*(Error|Exception)\b|\[Errno \d+\]|Traceback")


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity (which no strict JSON parser accepts)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def tree_digest(root: Path) -> dict[bytes, str]:
    """Relative path (bytes) -> sha256 of every regular file under ``root`` (links skipped)."""
    out: dict[bytes, str] = {}
    base = os.fsencode(root)
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as f:
                out[os.path.relpath(p, base)] = hashlib.sha256(f.read()).hexdigest()
    return out


def image_data(jpeg: bytes) -> bytes:
    """Everything from the start of scan: what an EXIF edit must never change."""
    return jpeg[walk(jpeg, True).sos :]


def run_json(*args: str | os.PathLike[str]) -> tuple[int, dict[str, Any], str]:
    out = amly(*args, "--json", "--no-progress")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stdout.strip(), out.stderr
    return out.returncode, strict_json(out.stdout), out.stderr


def readable(jpeg: bytes, tmp: Path) -> bool:
    p = tmp / "probe.jpg"
    p.write_bytes(jpeg)
    try:
        read_image(p)
    except MetadataError:
        return False
    return True


def check_failures(summary: dict[str, Any]) -> None:
    for f in summary["failures"]:
        assert f["error"] and not EXCEPTION_TEXT.search(f["error"]), f
        assert f.get("hint"), f


# -- every verb on the corpus ---------------------------------------------------------------------

IN_PLACE = {
    "geotag": ["--gpx", "{track}"],
    "interpolate-direction": [],
    "tag": [],
    "fix-dates": ["2024-06-01 10:00:00", "2"],
}
MOVING = {"dedup": [], "split": ["100"]}


@pytest.fixture()
def corpus(tmp_path: Path) -> tuple[Path, Path, dict[bytes, str]]:
    folder = tmp_path / "card"
    write_corpus(folder)
    track = tmp_path / "track.gpx"
    track.write_text(good_gpx())
    return folder, track, tree_digest(folder)


@pytest.mark.parametrize("verb", sorted(IN_PLACE))
def test_in_place_verbs_on_the_corpus(
    verb: str, corpus: tuple[Path, Path, dict[bytes, str]], tmp_path: Path
) -> None:
    folder, track, before = corpus
    originals = {rel: (folder / os.fsdecode(rel)).read_bytes() for rel in before}
    args = [a.format(track=track) for a in IN_PLACE[verb]]
    code, summary, _ = run_json(verb, folder, *args)
    assert code == 1, summary
    check_failures(summary)
    failed = {os.fsencode(os.path.relpath(f["file"], folder)) for f in summary["failures"]}
    # Every hostile photo that cannot be used fails by name; the loop and odd names too.
    names = {os.fsdecode(n) for n in failed}
    assert "loop.jpg" in names
    # IFD pointers that loop back: never edited (the edit would mix two directories' tags).
    assert {"loop_gps_to_ifd0.jpg", "loop_exif_to_ifd0.jpg", "loop_gps_to_exif.jpg"} <= names
    assert any(n.startswith("trunc_") for n in names)
    after = tree_digest(folder)
    assert set(after) == set(before)  # nothing created, nothing lost
    for rel in before:
        if rel in failed:
            assert after[rel] == before[rel], f"{rel!r} failed but was changed"
        elif after[rel] != before[rel]:  # edited: losslessly, and readable if it was
            path = folder / os.fsdecode(rel)
            assert image_data(path.read_bytes()) == image_data(originals[rel]), rel
            if readable(originals[rel], tmp_path):
                read_image(path)
    edited = [rel for rel in before if after[rel] != before[rel]]
    if verb in ("geotag", "tag", "fix-dates"):
        assert NON_UTF8 in edited
    if verb == "tag":
        description = read_image(
            os.fsdecode(os.path.join(os.fsencode(folder), NON_UTF8))
        ).description
        assert description is not None
        assert os.fsencode(strict_json(description)["MAPFilename"]) == NON_UTF8


@pytest.mark.parametrize("verb", sorted(MOVING))
def test_moving_verbs_on_the_corpus(verb: str, corpus: tuple[Path, Path, dict[bytes, str]]) -> None:
    folder, _, before = corpus
    code, summary, _ = run_json(verb, folder, *MOVING[verb])
    assert code == 1, summary
    check_failures(summary)
    # Files move, none is changed or lost: the same contents, wherever they are now.
    after: list[str] = []
    for root in folder.parent.iterdir():
        if root.is_dir():
            after.extend(tree_digest(root).values())
    assert sorted(after) == sorted(before.values())


def test_process_on_the_corpus(corpus: tuple[Path, Path, dict[bytes, str]]) -> None:
    from mapillary_tools.serializer.description import validate_image_desc

    folder, track, before = corpus
    geojson = folder.parent / "map.geojson"
    for extra in ([], ["--gpx", str(track)]):
        code, summary, _ = run_json("process", folder, *extra, "--geojson", geojson)
        assert strict_json(geojson.read_text())["features"]
        assert code == 1, summary
        check_failures(summary)
        assert tree_digest(folder).keys() - before.keys() == {DESCRIPTION_FILE.encode()}
        raw = (folder / DESCRIPTION_FILE).read_bytes()
        entries = strict_json(raw.decode("utf-8"))  # strict JSON, valid UTF-8
        by_name = {os.fsencode(e["filename"]): e for e in entries}
        first = by_name[os.path.join(os.fsencode(folder), NON_UTF8)]
        assert "error" not in first and os.fsencode(first["MAPFilename"]) == NON_UTF8
        for e in entries:
            if "error" in e:
                assert not EXCEPTION_TEXT.search(e["error"]["message"]), e
                continue
            validate_image_desc(e)  # the official tool's own schema
            assert -90 <= e["MAPLatitude"] <= 90 and -180 <= e["MAPLongitude"] <= 180
            parse_capture_time(e["MAPCaptureTime"])
        # The official reader maps the escaped name back to the same bytes on disk.
        from mapillary_tools.serializer.description import DescriptionJSONSerializer

        theirs = {os.fsencode(m.filename) for m in DescriptionJSONSerializer.deserialize(raw)}
        assert os.path.join(os.fsencode(folder), NON_UTF8) in theirs
        # Camera time unusable, GPS time good: read with the GPS time, not rejected.
        for name in fallback_photos():
            e = by_name[os.fsencode(str(folder / name))]
            assert "MapillaryExifError" not in json.dumps(e), e
        (folder / DESCRIPTION_FILE).unlink()


# -- precise results for the named cases -------------------------------------------------------


def test_calendar_edges_fall_back_to_gps_time(tmp_path: Path) -> None:
    for name, data in fallback_photos().items():
        p = tmp_path / name
        p.write_bytes(data)
        m = read_image(p)
        if name.startswith("gpsfall_"):
            assert m.capture_time == T0 and m.camera_time is None, name
        elif name == "leap_second.jpg":
            assert m.capture_time is not None
            assert format_capture_time(m.capture_time) == "2016_12_31_23_59_59_990"
        else:  # a nonsense GPS stamp (year 1, NaN) gives way to the camera time
            assert m.capture_time == m.camera_time == T0, name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "time_year9999_minus5.jpg",
            "implausible EXIF DateTimeOriginal '9999:12:31 23:59:59' (year 9999, expected "
            "1800..2199)",
        ),
        (
            "time_year0001_plus5.jpg",
            "implausible EXIF DateTimeOriginal '0001:01:01 00:00:00' (year 1, expected 1800..2199)",
        ),
        ("time_year9999_hour24.jpg", "unreadable EXIF DateTimeOriginal '9999:12:31 24:00:00'"),
        (
            "subsec_bad.jpg",
            "unreadable EXIF SubSecTimeOriginal 'x' (fractions of a second: digits only)",
        ),
        ("lat_double_nan.jpg", "unrealistic GPS latitude nan (must be within ±90)"),
        (
            "loop.jpg",
            "cannot open the file: it is a symbolic link that loops (points back to itself)",
        ),
    ],
)
def test_precise_messages(tmp_path: Path, name: str, message: str) -> None:
    p = tmp_path / name
    if name == "loop.jpg":
        os.symlink(name, p)
    else:
        p.write_bytes(hostile_photos()[name])
    with pytest.raises(MetadataError) as info:
        read_image(p)
    assert info.value.message == message
    assert info.value.hint


def test_gps_date_of_year_one_is_never_written() -> None:
    # The capture time a year-1 stamp would have given: four digits, parseable, if ever.
    from datetime import datetime, timezone

    t = datetime(1, 1, 1, 0, 0, 0, tzinfo=timezone.utc)
    assert parse_capture_time(format_capture_time(t)) == t


# -- hostile tracks -----------------------------------------------------------------------------


def _unlocated(folder: Path, n: int = 6) -> None:
    folder.mkdir()
    for i in range(n):
        (folder / f"IMG_{i:04d}.jpg").write_bytes(healthy(i, lat=None, lon=None))


def _hostile_rows() -> dict[str, list[str]]:
    pts = track_points()
    good = [trkpt(f"{la:.8f}", f"{lo:.8f}", iso(t)) for t, la, lo in pts]
    t = iso(T0)
    return {
        "nan_and_infinite_points": good[::2]
        + [trkpt("NaN", "NaN", t), trkpt("inf", "-inf", t), trkpt("1e400", "0", t)],
        "out_of_range_points": good + [trkpt(101, 202, t), trkpt(-91, 0, t), trkpt(0, 181, t)],
        "nan_elevations": [r.replace("<ele>34.0</ele>", "<ele>NaN</ele>") for r in good],
        "huge_elevations": [r.replace("<ele>34.0</ele>", "<ele>1e12</ele>") for r in good],
        "calendar_edges": good
        + [
            trkpt(LAT, LON, "9999-12-31T23:59:60Z"),
            trkpt(LAT, LON, "9999-12-31T23:00:00-05:00"),
            trkpt(LAT, LON, "0001-01-01T00:00:00+05:00"),
            trkpt(LAT, LON, "0001-01-01T00:00:00Z"),
        ],
    }


@pytest.mark.parametrize("case", sorted(_hostile_rows()))
def test_hostile_gpx_tracks(tmp_path: Path, case: str) -> None:
    track = tmp_path / "track.gpx"
    track.write_text(gpx(_hostile_rows()[case]))
    _check_track(tmp_path, track, elevations=case not in ("nan_elevations", "huge_elevations"))


def test_hostile_nmea_log(tmp_path: Path) -> None:
    lines = good_nmea()
    d = T0.strftime("%d%m%y")
    lines += [
        nmea_sentence(f"GPRMC,100000.00,A,nan,N,01324.3000,E,1,1,{d},,"),
        nmea_sentence(f"GPRMC,100000.00,A,5231.2000,N,inf,E,1,1,{d},,"),
        nmea_sentence(f"GPRMC,100000.00,A,9931.2000,N,01324.3000,E,1,1,{d},,"),
        nmea_sentence(f"GPRMC,100000.00,A,5275.0000,N,01324.3000,E,1,1,{d},,"),
        nmea_sentence(f"GPRMC,inf,A,5231.2000,N,01324.3000,E,1,1,{d},,"),
        nmea_sentence("GPGGA,100001.00,5231.2000,N,01324.3000,E,1,08,0.9,nan,M,,M,,"),
        nmea_sentence("GPGGA,100002.00,5231.2000,N,01324.3000,E,1,08,0.9,1e12,M,,M,,"),
    ]
    log = tmp_path / "log.nmea"
    log.write_text("\n".join(lines) + "\n")
    _check_track(tmp_path, log, nmea=True)


def _check_track(
    tmp_path: Path, track: Path, *, elevations: bool = True, nmea: bool = False
) -> None:
    option = "--nmea" if nmea else "--gpx"
    photos = tmp_path / "photos"
    _unlocated(photos)
    code, summary, stderr = run_json("process", photos, option, track)
    assert code == 0, (summary, stderr)
    assert "warning: track" in stderr
    entries = strict_json((photos / DESCRIPTION_FILE).read_text())
    assert len(entries) == 6 and all("error" not in e for e in entries), entries
    for e in entries:
        assert abs(e["MAPLatitude"] - LAT) < 1e-6 and abs(e["MAPLongitude"] - LON) < 0.01, e
        assert ("MAPAltitude" in e) == elevations or nmea, e
    code, summary, stderr = run_json("geotag", photos, option, track)
    assert code == 0, (summary, stderr)
    assert summary["counts"] == {"geotagged": 6}
    for p in sorted(photos.glob("IMG_*.jpg")):
        m = read_image(p)
        assert m.lat is not None and abs(m.lat - LAT) < 1e-6, p
        assert m.alt is None or math.isfinite(m.alt)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            gpx([trkpt("NaN", "NaN", iso(T0)), trkpt(101, 0, iso(T0))]),
            "has no usable points (2 point(s) left out",
        ),
        (
            gpx([trkpt(LAT, LON, "9999-12-31T23:59:60Z")]),
            "has no usable points (1 point(s) left out",
        ),
        ("\x00\xff not a track", "cannot read the track"),
        ("", "cannot read the track"),
        ("<gpx><trk><trkseg><trkpt lat='1'", "not a well-formed GPX file"),
    ],
)
def test_unusable_tracks_are_refused(tmp_path: Path, content: str, message: str) -> None:
    track = tmp_path / "t.gpx"
    track.write_text(content, encoding="utf-8", errors="surrogateescape")
    photos = tmp_path / "photos"
    _unlocated(photos, 2)
    before = tree_digest(photos)
    for verb in ("geotag", "process"):
        out = amly(verb, photos, "--gpx", track, "--no-progress")
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert tree_digest(photos) == before


# -- fuzzing the EXIF reader and writer ---------------------------------------------------------


def test_fuzzed_photos_read_and_write_cleanly(tmp_path: Path) -> None:
    """Random byte flips in the header of a valid photo (fixed seed, bounded count): the
    reader gives a result or a MetadataError; the writer gives a lossless edit that reads
    back, or a MetadataError; nothing else, ever."""
    rng = random.Random(20261129)
    base = photo(exif(serial="SN1"))
    header = base.index(b"\xff\xda")
    p = tmp_path / "f.jpg"
    outcomes = {"read": 0, "refused": 0, "written": 0, "not written": 0}
    for _ in range(400):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(2, header)] = rng.randrange(256)
        jpeg = bytes(data)
        p.write_bytes(jpeg)
        try:
            read_image(p)
            outcomes["read"] += 1
        except MetadataError as e:
            assert not EXCEPTION_TEXT.search(e.message), e
            outcomes["refused"] += 1
        try:
            out = set_exif_bytes(jpeg, lat=1.5, lon=2.5, alt=10.0, heading=45.0, capture_time=T0)
        except MetadataError as e:
            assert not EXCEPTION_TEXT.search(e.message.split(": ", 1)[0]), e
            outcomes["not written"] += 1
            continue
        outcomes["written"] += 1
        assert image_data(out) == image_data(jpeg)
        p.write_bytes(out)
        try:
            m = read_image(p)
        except MetadataError:
            continue  # damage elsewhere (a bad camera time...) the edit did not touch
        assert (m.lat, m.lon) == (pytest.approx(1.5), pytest.approx(2.5))
    # Both branches are exercised (otherwise the flips would prove nothing).
    assert min(outcomes.values()) > 10, outcomes


def test_fuzzed_photos_through_the_cli(tmp_path: Path) -> None:
    rng = random.Random(7)
    base = healthy(0)
    header = base.index(b"\xff\xda")
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for i in range(40):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(2, header)] = rng.randrange(256)
        (folder / f"F_{i:03d}.jpg").write_bytes(bytes(data))
    for verb, args in (("process", []), ("tag", []), ("fix-dates", ["2024-06-01 10:00:00", "1"])):
        code, summary, _ = run_json(verb, folder, *args)
        assert code in (0, 1), summary
        check_failures(summary)
    shutil.rmtree(folder)


def test_jpeg_walker_never_loops_on_fill_bytes() -> None:
    with pytest.raises(JpegError):
        walk(b"\xff\xd8" + b"\xff" * 100_000, True)
    assert image_data(photo()) == image_data(photo(exif(lat=LAT + 1)))


def test_process_and_upload_on_the_corpus(corpus: tuple[Path, Path, dict[bytes, str]]) -> None:
    """The upload road: every usable photo arrives (the one whose name is not UTF-8 too),
    every other one is a per-file failure, and no photo is touched."""
    from _upload_helpers import amly as amly_at

    from amly.server.testing import running_server

    folder, _, before = corpus
    home = folder.parent / "home"
    with running_server(folder.parent / "srv") as srv:
        out = amly_at(
            srv, home, "process-and-upload", str(folder), "--json", "--no-progress",
            "--journal", str(home / "journal.sqlite3"),
        )  # fmt: skip
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stderr
    summary = strict_json(out.stdout)
    check_failures(summary)
    # The drive (11, the first under a name that is not UTF-8), sub/inner.jpg, and three
    # photos read through a fallback or past a harmless defect (the rest are duplicates).
    assert summary["counts"]["images"] == 15, summary["counts"]
    assert all(s["error"] is None for s in summary["sequences"])
    assert tree_digest(folder) == before


@pytest.mark.parametrize(
    "args",
    [
        ["geotag", "{dir}", "--gpx", "{track}", "--offset-time=nan"],
        ["geotag", "{dir}", "--gpx", "{track}", "--offset-time=1e300"],
        ["process", "{dir}", "--offset-time=-inf"],
        ["process", "{dir}", "--offset-angle=nan"],
        ["interpolate-direction", "{dir}", "--offset-angle=inf"],
        ["fix-dates", "{dir}", "2024-01-01 00:00:00", "nan"],
        ["fix-dates", "{dir}", "9999-12-31 23:59:59", "1", "--timezone=-05:00"],
        ["fix-dates", "{dir}", "2024-01-01 00:00:00", "9e9"],
    ],
)
def test_numbers_beyond_reason_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    """An offset of NaN or of a million years never reaches a photo or a description."""
    photos = tmp_path / "photos"
    _unlocated(photos, 3)
    track = tmp_path / "t.gpx"
    track.write_text(good_gpx())
    before = tree_digest(photos)
    out = amly(*(a.format(dir=photos, track=track) for a in args), "--no-progress")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.strip(), out.stderr
    assert tree_digest(photos) == before


def test_scan_survives_deep_trees_and_keeps_its_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folders depth-first by name, each folder's photos before its subfolders', however deep
    the tree (deeper than Python's recursion limit here)."""
    from amly.pipeline import scan

    for rel in ("b", "a/c", "a/b/z", "a"):
        (tmp_path / rel).mkdir(parents=True, exist_ok=True)
        (tmp_path / rel / "p.jpg").write_bytes(healthy(0))
    deep = tmp_path / "d"
    deep.mkdir()
    monkeypatch.chdir(deep)  # relative steps (restored after the test)
    for _ in range(DEPTH):
        os.mkdir("n")
        os.chdir("n")
    Path("deepest.jpg").write_bytes(healthy(1))
    try:
        os.chdir(tmp_path)
        order = [os.path.relpath(f.path, tmp_path) for f in scan([tmp_path])]
        assert order[:4] == ["a", os.path.join("a", "b", "z"), os.path.join("a", "c"), "b"]
        assert order[4].startswith("d") and order[4].count(os.sep) == DEPTH
        code, summary, _ = run_json("process", tmp_path)
        assert code == 0 and summary["counts"]["images"] == 5, summary
    finally:
        _remove_deep(deep)


DEPTH = 1200


def _remove_deep(deep: Path) -> None:
    """Remove the deep tree bottom-up: pytest's own cleanup (shutil.rmtree) recurses and
    would fail on it in a later session."""
    os.chdir(deep)
    for _ in range(DEPTH):
        os.chdir("n")
    for name in os.listdir("."):
        os.unlink(name)
    for _ in range(DEPTH):
        os.chdir("..")
        for name in os.listdir("n"):
            os.unlink(os.path.join("n", name))
        os.rmdir("n")


def test_join_gpx_with_hostile_tracks(tmp_path: Path) -> None:
    folder = tmp_path / "tracks"
    folder.mkdir()
    (folder / "a.gpx").write_text(gpx(_hostile_rows()["nan_and_infinite_points"]))
    out = tmp_path / "all.gpx"
    code, summary, _ = run_json("join-gpx", folder, out)
    assert code == 0, summary
    text = out.read_text()
    assert "NaN" not in text and "inf" not in text  # only the valid points are written
    # An entity bomb: refused by name, nothing written.
    ents = '<!ENTITY a0 "haha">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    bomb = f'<?xml version="1.0"?><!DOCTYPE gpx [{ents}]><gpx><trk><name>&a9;</name></trk></gpx>'
    (folder / "b.gpx").write_text(bomb)
    out.unlink()
    res = amly("join-gpx", folder, out, "--no-progress")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "b.gpx" in res.stderr and not out.exists()
