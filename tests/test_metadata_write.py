"""The EXIF writers: values read back with exiftool, every other byte of the file unchanged,
exactly one EXIF block, maker notes intact, permissions kept, and the piexif measurement."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from _metadata_fixtures import (
    CANON_IMAGE_TYPE,
    COMMENT,
    T0,
    canon_exif,
    exif_count,
    exif_segment,
    non_exif,
    rich_jpeg,
    segments,
)

from amly import synth
from amly.errors import MetadataError
from amly.metadata import inject_description, read_image, set_exif_bytes, update_exif

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed")
BERLIN_SUMMER = timezone(timedelta(hours=2))


def exiftool(path: Path, *args: str) -> dict[str, Any]:
    assert EXIFTOOL
    out = subprocess.run(
        [EXIFTOOL, "-j", "-n", "-a", "-G1", *args, str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)[0]


def warnings(path: Path) -> list[str]:
    """exiftool's structural warnings (not the "missing required tag" validation notes)."""
    assert EXIFTOOL
    out = subprocess.run(
        [EXIFTOOL, "-validate", "-warning", "-a", "-s", "-s", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Warning")]
    return [w for w in found if "Missing required" not in w]


@needs_exiftool
@pytest.mark.parametrize("byte_order", ["MM", "II"])
def test_round_trip_with_exiftool(tmp_path: Path, byte_order: str) -> None:
    if byte_order == "MM":
        exif = synth.exif_bytes(time=T0)  # piexif writes big-endian
    else:
        from PIL import Image

        pil = Image.Exif()
        pil.endian = "<"
        pil[0x010F] = "LittleCam"
        raw = pil.tobytes()
        exif = raw if raw.startswith(b"Exif") else b"Exif\x00\x00" + raw
        assert exif[6:8] == b"II"
    p = tmp_path / "a.jpg"
    p.write_bytes(synth.splice_exif(synth.base_frames(64, 48)[0], exif))
    t = datetime(2023, 5, 6, 7, 8, 9, 123000, tzinfo=BERLIN_SUMMER)
    desc = json.dumps({"MAPLatitude": -33.5, "MAPFilename": "Straße.jpg"}, ensure_ascii=False)
    update_exif(
        p, capture_time=t, lat=-33.5, lon=151.25, alt=-12.5, heading=359.99, description=desc,
        make="Mk", model="Md",
    )  # fmt: skip
    info = exiftool(p)
    assert info["File:ExifByteOrder"] == byte_order
    assert info["Composite:GPSLatitude"] == -33.5
    assert info["Composite:GPSLongitude"] == 151.25
    assert info["Composite:GPSAltitude"] == -12.5
    assert info["GPS:GPSImgDirection"] == 359.99 and info["GPS:GPSImgDirectionRef"] == "T"
    assert info["ExifIFD:DateTimeOriginal"] == "2023:05:06 07:08:09"
    assert str(info["ExifIFD:SubSecTimeOriginal"]) == "123"
    assert info["ExifIFD:OffsetTimeOriginal"] == "+02:00"
    assert info["Composite:GPSDateTime"] == "2023:05:06 05:08:09.123Z"
    assert json.loads(info["IFD0:ImageDescription"]) == json.loads(desc)
    assert (info["IFD0:Make"], info["IFD0:Model"]) == ("Mk", "Md")
    assert warnings(p) == []
    m = read_image(p)
    assert m.capture_time == t and m.description == desc
    assert (m.lat, m.lon, m.alt, m.heading) == (-33.5, 151.25, -12.5, 359.99)


@needs_exiftool
@pytest.mark.parametrize("xmp_first", [False, True])
def test_only_the_exif_segment_changes(tmp_path: Path, xmp_first: bool) -> None:
    before = rich_jpeg(xmp_first=xmp_first)
    p = tmp_path / "a.jpg"
    p.write_bytes(before)
    old_warnings = set(warnings(p))  # piexif-made fixture: odd offsets, a value overlapping
    update_exif(p, capture_time=T0, lat=48.1, lon=11.5, alt=520.0, heading=90.0,
                description='{"MAPLatitude":48.1}')  # fmt: skip
    after = p.read_bytes()
    assert non_exif(after) == non_exif(before)  # JFIF, XMP, ICC, APP13, COM, tables, scan
    assert [m for m, _ in segments(after)] == [m for m, _ in segments(before)]
    assert exif_count(after) == 1
    info = exiftool(p)
    assert info["JFIF:JFIFVersion"] == "1 1"
    assert info["XMP-xmp:Rating"] == 4
    assert info["ICC_Profile:ProfileDescription"] == "sRGB built-in"
    assert info["File:Comment"] == COMMENT.decode()
    # The maker note did not move: its out-of-line string is still found through its offset.
    assert info["Canon:CanonImageType"] == CANON_IMAGE_TYPE
    assert set(warnings(p)) <= old_warnings  # nothing new broken
    assert read_image(p).lat == 48.1


def maker_note(jpeg: bytes) -> bytes:
    import piexif

    return piexif.load(jpeg)["Exif"][piexif.ExifIFD.MakerNote]


def test_original_exif_bytes_are_kept(tmp_path: Path) -> None:
    """The whole original TIFF block survives as a prefix: nothing in it moved."""
    before = rich_jpeg()
    old = exif_segment(before)[10:]
    after = set_exif_bytes(before, capture_time=T0 + timedelta(hours=1), lat=1.0, lon=2.0)
    new = exif_segment(after)[10:]
    assert len(new) > len(old)
    # Only the IFD0 pointer in the header and patched entries differ inside the old region.
    changed = sum(a != b for a, b in zip(old, new[: len(old)], strict=True))
    assert changed < 64
    assert maker_note(after) == maker_note(before)


def test_file_without_exif_gets_one_after_jfif(tmp_path: Path) -> None:
    before = rich_jpeg(with_exif=False)
    assert exif_count(before) == 0
    p = tmp_path / "a.jpg"
    p.write_bytes(before)
    update_exif(p, capture_time=T0, lat=1.5, lon=2.5)
    after = p.read_bytes()
    assert exif_count(after) == 1
    markers = [m for m, _ in segments(after)]
    assert markers[:2] == [0xE0, 0xE1]  # JFIF stays first, EXIF right after it
    assert non_exif(after) == non_exif(before)
    m = read_image(p)
    assert (m.capture_time, m.lat, m.lon) == (T0, 1.5, 2.5)
    if EXIFTOOL:
        assert warnings(p) == []
        assert exiftool(p)["ExifIFD:ExifVersion"] == "0232"


def test_duplicate_exif_blocks_become_one() -> None:
    one = rich_jpeg()
    exif_seg = exif_segment(one)
    two = one
    i = two.index(b"\xff\xfe")  # before COM: a second, stale EXIF block
    two = two[:i] + exif_seg + two[i:]
    assert exif_count(two) == 2
    out = set_exif_bytes(two, description="x")
    assert exif_count(out) == 1
    assert non_exif(out) == non_exif(one)


def test_permissions_are_kept(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    p.write_bytes(rich_jpeg())
    os.chmod(p, 0o640)
    update_exif(p, heading=12.5)
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    assert read_image(p).heading == 12.5
    assert [q.name for q in tmp_path.iterdir()] == ["a.jpg"]  # no temp file left


def test_capture_time_keeps_the_gps_clock_in_step(tmp_path: Path) -> None:
    # The file has a GPS stamp; writing only a new time must not leave the old one to win.
    p = tmp_path / "a.jpg"
    p.write_bytes(rich_jpeg(exif=canon_exif(lat=1.0, lon=2.0)))
    assert read_image(p).capture_time == T0
    t = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    update_exif(p, capture_time=t)
    assert read_image(p).capture_time == t
    assert read_image(p).lat == 1.0


def test_repeated_edits_do_not_grow_the_file() -> None:
    jpeg = rich_jpeg()
    fields: dict[str, Any] = {"capture_time": T0, "lat": 1.0, "lon": 2.0, "heading": 3.0}
    once = set_exif_bytes(jpeg, **fields)
    assert set_exif_bytes(once, **fields) == once  # idempotent: values patched in place
    d1 = inject_description(once, '{"a":"' + "x" * 300 + '"}')
    d2 = inject_description(d1, '{"a":"' + "y" * 200 + '"}')
    assert len(d2) == len(d1)
    assert b"x" * 100 not in d2  # the old, longer value was overwritten, not left behind


def test_inject_description_changes_only_the_description(tmp_path: Path) -> None:
    points = synth.drive(synth.DrivePlan(n=1))
    [path] = synth.write_photos(tmp_path, points, serial="S9")
    before = path.read_bytes()
    desc = '{"MAPCaptureTime":"2024_06_01_10_00_00_000","MAPLatitude":52.52}'
    out = inject_description(before, desc)
    assert non_exif(out) == non_exif(before)
    q = tmp_path / "out.jpg"
    q.write_bytes(out)
    a, b = read_image(path), read_image(q)
    assert b.description == desc
    b.description, b.path, b.filesize = None, a.path, a.filesize
    assert a == b


def test_description_overflowing_the_segment_is_refused() -> None:
    jpeg = rich_jpeg()
    with pytest.raises(MetadataError) as info:
        inject_description(jpeg, "x" * 70_000, name="big.jpg")
    e = info.value
    assert e.path == "big.jpg"
    assert "over the 65533-byte limit of a JPEG segment (the description is 70000 bytes)" in (
        e.message
    )
    assert "shorten the description" in (e.hint or "")


def test_writer_errors() -> None:
    with pytest.raises(MetadataError, match="not a JPEG file"):
        set_exif_bytes(b"\x89PNG\r\n\x1a\n....", description="x")
    with pytest.raises(MetadataError, match="empty file"):
        set_exif_bytes(b"", description="x")
    with pytest.raises(ValueError, match="together"):
        set_exif_bytes(rich_jpeg(), lat=1.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        set_exif_bytes(rich_jpeg(), capture_time=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="out of range"):
        set_exif_bytes(rich_jpeg(), lat=91.0, lon=0.0)
    jpeg = rich_jpeg()
    assert set_exif_bytes(jpeg) is jpeg  # nothing to write


@needs_exiftool
def test_piexif_findings(tmp_path: Path) -> None:
    """The measurement quoted in amly/metadata/write.py: what piexif.insert does to a file
    with JFIF + EXIF (maker note) + XMP + ICC + APP13 + COM."""
    import piexif

    def insert(jpeg: bytes) -> bytes:
        d = piexif.load(canon_exif())
        d["0th"][piexif.ImageIFD.ImageDescription] = b'{"x":1}'
        out = io.BytesIO()
        piexif.insert(piexif.dump(d), jpeg, out)
        return out.getvalue()

    normal = insert(rich_jpeg())
    assert 0xE0 not in [m for m, _ in segments(normal)]  # JFIF dropped
    assert exif_count(normal) == 1
    p = tmp_path / "p.jpg"
    p.write_bytes(normal)
    info = exiftool(p)
    assert "maker notes" in info.get("ExifTool:Warning", "")
    assert "Canon:CanonImageType" not in info  # the maker note's offsets now point elsewhere
    assert info["XMP-xmp:Rating"] == 4 and "ICC_Profile:ProfileDescription" in info
    xmp_first = insert(rich_jpeg(xmp_first=True))
    assert exif_count(xmp_first) == 2  # a second EXIF block
    no_exif = insert(rich_jpeg(with_exif=False))
    assert 0xE0 not in [m for m, _ in segments(no_exif)]


def test_fuzzed_exif_fails_cleanly(tmp_path: Path) -> None:
    """Random damage inside the EXIF block: the writer returns a file whose other segments are
    untouched, or raises MetadataError; never another exception, never a hang."""
    import random

    good = rich_jpeg(exif=canon_exif(lat=1.0, lon=2.0, serial="S1"))
    seg = exif_segment(good)
    start = good.index(seg) + 10  # TIFF block
    rnd = random.Random(99)
    p = tmp_path / "f.jpg"
    ok = failed = 0
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(start, start + len(seg) - 10)] = rnd.choice(
                (0, 0xFF, rnd.randrange(256))
            )
        try:
            out = set_exif_bytes(bytes(data), capture_time=T0, lat=3.0, lon=4.0, description="d")
        except MetadataError:
            failed += 1
            continue
        ok += 1
        assert non_exif(out) == non_exif(good) and exif_count(out) == 1
        p.write_bytes(out)
        try:
            m = read_image(p)
        except MetadataError:
            continue
        assert m.description == "d"
    assert ok and failed


def test_official_reader_reads_what_we_wrote(tmp_path: Path) -> None:
    mt = pytest.importorskip("mapillary_tools.geotag.image_extractors.exif")
    p = tmp_path / "a.jpg"
    p.write_bytes(rich_jpeg(with_exif=False))
    t = datetime(2022, 2, 3, 4, 5, 6, 789000, tzinfo=BERLIN_SUMMER)
    update_exif(p, capture_time=t, lat=-12.345678, lon=-98.7654321, alt=1234.5, heading=271.25,
                make="Mk", model="Md")  # fmt: skip
    theirs = mt.ImageEXIFExtractor(p).extract()
    assert theirs.time == pytest.approx(t.timestamp(), abs=1e-6)
    assert (theirs.lat, theirs.lon) == pytest.approx((-12.345678, -98.7654321), abs=1e-9)
    assert (theirs.alt, theirs.angle) == (1234.5, 271.25)
    assert (theirs.MAPDeviceMake, theirs.MAPDeviceModel) == ("Mk", "Md")


def test_update_exif_refuses_a_truncated_photo(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from amly import synth

    (path,) = synth.write_photos(tmp_path, synth.drive(synth.DrivePlan(n=1)), size=(64, 48))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    before = path.read_bytes()
    with pytest.raises(MetadataError, match="truncated"):
        update_exif(path, capture_time=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert path.read_bytes() == before
