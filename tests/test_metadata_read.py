"""read_image: values against what was written (and what exiftool reads), every error case
with its exact message, robustness against damaged and malicious files."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from _metadata_fixtures import CANON_SERIAL, T0, canon_exif, rich_jpeg, seg

from amly import synth
from amly.errors import MetadataError, UsageError
from amly.metadata import parse_timezone, read_image

EXIFTOOL = shutil.which("exiftool")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def jpeg_with(exif: bytes, size: tuple[int, int] = (64, 48)) -> bytes:
    return synth.splice_exif(synth.base_frames(*size)[0], exif)


def error_of(path: Path, **kw: object) -> MetadataError:
    with pytest.raises(MetadataError) as info:
        read_image(path, **kw)  # type: ignore[arg-type]
    assert info.value.path == str(path)
    assert info.value.hint
    return info.value


# -- values ------------------------------------------------------------------------------------


def test_synthetic_drive_round_trip(tmp_path: Path) -> None:
    points = synth.drive(synth.DrivePlan(n=6))
    paths = synth.write_photos(tmp_path, points, serial="SN-42", make="Acme", model="X1")
    for path, p in zip(paths, points, strict=True):
        m = read_image(path)
        assert m.capture_time == p.time
        assert m.lat == pytest.approx(p.lat, abs=3e-8)  # synth: 1e-4 arc s
        assert m.lon == pytest.approx(p.lon, abs=3e-8)
        assert m.alt == pytest.approx(p.alt, abs=1e-3)
        assert m.heading == pytest.approx(p.heading, abs=0.01)
        assert (m.make, m.model, m.serial) == ("Acme", "X1", "SN42")  # as MAPCameraUUID
        assert (m.width, m.height, m.orientation) == (640, 360, 1)
        assert m.filesize == path.stat().st_size
        assert m.description is None and m.gps_accuracy is None


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed")
def test_agrees_with_exiftool(tmp_path: Path) -> None:
    points = synth.drive(synth.DrivePlan(n=4, start_lat=-33.86, start_lon=-151.2))
    paths = synth.write_photos(tmp_path, points)
    out = subprocess.run(
        [EXIFTOOL, "-j", "-n", "-GPSLatitude", "-GPSLongitude", "-GPSAltitude",
         "-GPSImgDirection", "-GPSDateTime", *map(str, paths)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for path, row in zip(paths, json.loads(out), strict=True):
        m = read_image(path)
        assert m.lat == pytest.approx(row["GPSLatitude"], abs=1e-9)
        assert m.lon == pytest.approx(row["GPSLongitude"], abs=1e-9)
        assert m.lat < 0 and m.lon < 0
        assert m.alt == pytest.approx(row["GPSAltitude"], abs=1e-9)
        assert m.heading == pytest.approx(row["GPSImgDirection"], abs=1e-9)
        gps = datetime.strptime(row["GPSDateTime"], "%Y:%m:%d %H:%M:%SZ")
        assert m.capture_time == gps.replace(tzinfo=timezone.utc)


def test_gps_time_wins_over_camera_clock(tmp_path: Path) -> None:
    # Camera clock 90 s fast: the GPS stamp (true time) is what counts.
    cam = T0 + timedelta(seconds=90, milliseconds=250)
    exif = synth.exif_bytes(time=cam, lat=1.0, lon=2.0)
    m = read_image(write(tmp_path, "a.jpg", jpeg_with(exif)))
    assert m.capture_time == cam  # synth writes the GPS stamp from the same time
    exif = synth.exif_bytes(time=cam, lat=1.0, lon=2.0, gps_time=False)
    m = read_image(write(tmp_path, "b.jpg", jpeg_with(exif)), tz=timezone.utc)
    assert m.capture_time == cam


def test_naive_camera_time_uses_the_given_zone(tmp_path: Path) -> None:
    local = datetime(2024, 1, 15, 9, 30, 5, 120000)  # winter: Berlin = UTC+1
    exif = synth.exif_bytes(time=local, gps_time=False)
    p = write(tmp_path, "a.jpg", jpeg_with(exif))
    assert read_image(p, tz=parse_timezone("Europe/Berlin")).capture_time == datetime(
        2024, 1, 15, 8, 30, 5, 120000, tzinfo=timezone.utc
    )
    assert read_image(p, tz=parse_timezone("-03:00")).capture_time == datetime(
        2024, 1, 15, 12, 30, 5, 120000, tzinfo=timezone.utc
    )
    # Default: this machine's zone.
    assert read_image(p).capture_time == local.astimezone().astimezone(timezone.utc)


def test_offset_time_original_beats_the_zone(tmp_path: Path) -> None:
    t = datetime(2024, 7, 1, 12, 0, 0, 7000, tzinfo=timezone(timedelta(hours=9)))
    exif = synth.exif_bytes(time=t, offset="+09:00", gps_time=False)
    m = read_image(write(tmp_path, "a.jpg", jpeg_with(exif)), tz=parse_timezone("UTC"))
    assert m.capture_time == datetime(2024, 7, 1, 3, 0, 0, 7000, tzinfo=timezone.utc)


def test_no_position_is_not_an_error(tmp_path: Path) -> None:
    m = read_image(write(tmp_path, "a.jpg", jpeg_with(synth.exif_bytes(time=T0))))
    assert m.lat is None and m.lon is None and m.heading is None and not m.has_position()
    assert m.capture_time == T0


def test_size_from_sof_and_serial_from_canon_maker_note(tmp_path: Path) -> None:
    m = read_image(write(tmp_path, "a.jpg", rich_jpeg()))
    assert (m.width, m.height) == (64, 48)  # no PixelX/YDimension: the SOF marker
    assert m.serial == str(CANON_SERIAL)
    assert m.make == "Canon" and m.capture_time == T0


def test_serial_from_nikon_maker_note(tmp_path: Path) -> None:
    import piexif

    inner = b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 1)
    inner += struct.pack(">HHLL", 0x001D, 2, 8, 8 + 2 + 12 + 4) + b"\x00" * 4 + b"N12345\x00\x00"
    d = piexif.load(synth.exif_bytes(time=T0, make="NIKON CORPORATION"))
    d["Exif"][piexif.ExifIFD.MakerNote] = b"Nikon\x00\x02\x10\x00\x00" + inner
    m = read_image(write(tmp_path, "a.jpg", jpeg_with(piexif.dump(d))))
    assert m.serial == "N12345"


def test_exif_beyond_the_first_read(tmp_path: Path) -> None:
    # 3 x ~60 KiB of other segments before the EXIF: the reader must read on.
    base = synth.base_frames(64, 48)[0]
    big = b"".join(seg(0xE3, bytes(60_000)) for _ in range(3))
    exif = synth.exif_bytes(time=T0, lat=10.0, lon=20.0)
    at = 4 + int.from_bytes(base[4:6], "big")  # after SOI + JFIF
    data = base[:at] + big + seg(0xE1, exif) + base[at:]
    m = read_image(write(tmp_path, "a.jpg", data))
    assert (m.lat, m.lon, m.capture_time) == (10.0, 20.0, T0)


def test_small_trailer_after_end_of_image_is_fine(tmp_path: Path) -> None:
    data = jpeg_with(synth.exif_bytes(time=T0)) + b"SEFH trailer" * 100
    assert read_image(write(tmp_path, "a.jpg", data)).capture_time == T0


def test_zero_denominator_gps_means_no_fix(tmp_path: Path) -> None:
    exif = bytearray(synth.exif_bytes(time=T0, lat=1.0, lon=2.0))
    # Zero the latitude's seconds denominator (10000 written as a big-endian LONG).
    i = exif.index(struct.pack(">L", 10_000))
    exif[i : i + 4] = bytes(4)
    m = read_image(write(tmp_path, "a.jpg", jpeg_with(bytes(exif))))
    assert m.lat is None and m.lon is None


# -- errors --------------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, "a.jpg", b""))
    assert e.message == "empty file (0 bytes)"
    assert e.kind == "MapillaryExifError"


def test_png_named_jpg(tmp_path: Path) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    e = error_of(write(tmp_path, "a.jpg", buf.getvalue()))
    assert e.message == "not a JPEG file (it looks like a PNG image)"
    e = error_of(write(tmp_path, "b.jpg", b"hello world"))
    assert e.message.startswith("not a JPEG file (it starts with 68 65 6c 6c 6f")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = jpeg_with(synth.exif_bytes(time=T0), size=(640, 360))
    cut = data[: len(data) // 2]
    e = error_of(write(tmp_path, "a.jpg", cut))
    assert e.message == (
        f"truncated JPEG: no end-of-image marker (the file ends after {len(cut)} bytes)"
    )
    e = error_of(write(tmp_path, "b.jpg", data[:300]))
    assert e.message == "truncated JPEG: the file ends after 300 bytes, inside its header"


def test_jpeg_without_exif(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, "a.jpg", synth.base_frames(64, 48)[0]))
    assert e.message == "no EXIF metadata in the JPEG (no capture time, no position)"


def corrupt(tiff_patch: dict[int, bytes]) -> bytes:
    exif = bytearray(synth.exif_bytes(time=T0, lat=1.0, lon=2.0))
    for at, raw in tiff_patch.items():
        exif[6 + at : 6 + at + len(raw)] = raw
    return jpeg_with(bytes(exif))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({0: b"XX"}, "corrupt EXIF: bad TIFF byte order mark b'XX'"),
        ({2: b"\x00\x2b"}, "corrupt EXIF: bad TIFF magic number 43"),
        ({4: b"\x00\x10\x00\x00"}, "corrupt EXIF: IFD0 offset 1048576 is outside the"),
        ({8: b"\xff\xff"}, "corrupt EXIF: IFD0 at offset 8 claims 65535 entries, more than fit"),
    ],
)
def test_corrupt_exif(tmp_path: Path, patch: dict[int, bytes], message: str) -> None:
    e = error_of(write(tmp_path, "a.jpg", corrupt(patch)))
    assert e.message.startswith(message)


def test_corrupt_sub_ifd_pointer_and_value_offset(tmp_path: Path) -> None:
    exif = synth.exif_bytes(time=T0, lat=1.0, lon=2.0)
    tiff = exif[6:]
    _, first = struct.unpack_from(">HL", tiff, 2)
    (n,) = struct.unpack_from(">H", tiff, first)
    bad = bytearray(exif)
    for k in range(n):
        at = first + 2 + 12 * k
        tag = struct.unpack_from(">H", tiff, at)[0]
        if tag == 0x8825:  # GPS pointer -> far away
            bad[6 + at + 8 : 6 + at + 12] = struct.pack(">L", 0x7FFFFFFF)
        if tag == 0x010F:  # Make: value offset far away
            bad[6 + at + 8 : 6 + at + 12] = struct.pack(">L", 0x10000)
    e = error_of(write(tmp_path, "a.jpg", jpeg_with(bytes(bad))))
    assert e.message.startswith("corrupt EXIF: ")
    assert "outside the" in e.message


def test_self_referencing_ifd_does_not_loop(tmp_path: Path) -> None:
    # Exif and GPS pointers both aim at IFD0 itself: a loop for a naive walker.
    exif = bytearray(synth.exif_bytes(time=T0, lat=1.0, lon=2.0))
    tiff = bytes(exif[6:])
    first = struct.unpack_from(">L", tiff, 4)[0]
    (n,) = struct.unpack_from(">H", tiff, first)
    for k in range(n):
        at = first + 2 + 12 * k
        if struct.unpack_from(">H", tiff, at)[0] in (0x8769, 0x8825):
            exif[6 + at + 8 : 6 + at + 12] = struct.pack(">L", first)
    m = read_image(write(tmp_path, "a.jpg", jpeg_with(bytes(exif))))
    assert m.make == "AmlyCam" and m.lat is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lat": 95.0, "lon": 2.0}, "unrealistic GPS latitude 95.000000 (must be within ±90)"),
        ({"lat": 5.0, "lon": 190.0}, "unrealistic GPS longitude 190.000000 (must be within ±180)"),
        (
            {"lat": 5.0, "lon": 1.0, "alt": 250_000.0},
            "unrealistic GPS altitude 250000.0 m (expected -1000..100000)",
        ),
    ],
)
def test_unrealistic_values(tmp_path: Path, kw: dict[str, float], message: str) -> None:
    exif = synth.exif_bytes(time=T0, **kw)  # type: ignore[arg-type]
    assert error_of(write(tmp_path, "a.jpg", jpeg_with(exif))).message == message


def test_unreadable_date(tmp_path: Path) -> None:
    exif = synth.exif_bytes(time=T0, gps_time=False).replace(
        b"2024:06:01 10:00:00", b"2024:13:45 10:00:00"
    )
    e = error_of(write(tmp_path, "a.jpg", jpeg_with(exif)))
    assert e.message == "unreadable EXIF DateTimeOriginal '2024:13:45 10:00:00'"


def test_unknown_timezone_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown time zone 'Nowhere/Land'"):
        parse_timezone("Nowhere/Land")


def test_fuzzed_headers_fail_cleanly(tmp_path: Path) -> None:
    """Random byte damage in the header: a result or a MetadataError, never anything else."""
    good = jpeg_with(canon_exif(lat=1.0, lon=2.0, serial="S1"))
    header = good.index(b"\xff\xda")
    rnd = random.Random(1234)
    p = tmp_path / "f.jpg"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 6)):
            i = rnd.randrange(2, header)
            data[i] = rnd.choice((0, 0xFF, rnd.randrange(256)))
        p.write_bytes(bytes(data))
        try:
            read_image(p)
            outcomes["ok"] += 1
        except MetadataError:
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]


def test_open_failure_is_a_metadata_error(tmp_path: Path) -> None:
    e = error_of(tmp_path / "missing.jpg")
    assert e.message == "cannot open the file: No such file or directory"
    (tmp_path / "dir.jpg").mkdir()
    e = error_of(tmp_path / "dir.jpg")
    assert e.message == "cannot read the file: Is a directory"


def test_agrees_with_mapillary_tools_reader(tmp_path: Path) -> None:
    mt = pytest.importorskip("mapillary_tools.geotag.image_extractors.exif")
    points = synth.drive(synth.DrivePlan(n=3))
    paths = synth.write_photos(tmp_path, points, serial="SER-7")
    for path in paths:
        theirs = mt.ImageEXIFExtractor(path).extract()
        ours = read_image(path)
        assert ours.capture_time is not None
        assert ours.capture_time.timestamp() == pytest.approx(theirs.time, abs=1e-6)
        assert (ours.lat, ours.lon) == pytest.approx((theirs.lat, theirs.lon), abs=1e-12)
        assert ours.alt == pytest.approx(theirs.alt) and ours.heading == pytest.approx(theirs.angle)
        assert (ours.make, ours.model, ours.serial) == (
            theirs.MAPDeviceMake, theirs.MAPDeviceModel, theirs.MAPCameraUUID,
        )  # fmt: skip
        assert (ours.width, ours.height, ours.orientation) == (
            theirs.width, theirs.height, theirs.MAPOrientation,
        )  # fmt: skip


def test_motion_photo_with_large_trailer_is_not_truncated(tmp_path: Path) -> None:
    """Phones append a whole MP4 after the JPEG's end marker: that is not a cut-off file."""
    from amly.synth import DrivePlan, drive, write_photos

    (path,) = write_photos(tmp_path, drive(DrivePlan(n=1)), size=(64, 48))
    mp4 = b"\x00\x00\x00\x18ftypmp42" + bytes(200_000)
    path.write_bytes(path.read_bytes() + mp4)
    assert read_image(path).lat is not None
    # ...while the same file cut inside the scan data still is.
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) - len(mp4) - 20])
    with pytest.raises(MetadataError, match="truncated"):
        read_image(cut)
