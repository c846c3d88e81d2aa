"""The in-place preprocessing verbs, run as a user would: fix-dates, geotag,
interpolate-direction, dedup, split, tag. Results are read back with exiftool."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from _process_helpers import add_bad_files, amly, amly_json, drive, exiftool, write_drive

from amly import geo, synth

BAD_KINDS = ("zero", "truncated", "notjpeg")  # unreadable in every verb


def strip_app1(data: bytes) -> bytes:
    """The JPEG without its APP1 segments: what a lossless EXIF edit must leave identical."""
    out, pos = bytearray(data[:2]), 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != 0xDA:
        n = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] != 0xE1:
            out += data[pos : pos + 2 + n]
        pos += 2 + n
    return bytes(out + data[pos:])


def failed_files(summary: dict) -> set[str]:
    return {os.path.basename(f["file"]) for f in summary["failures"]}


@pytest.mark.parametrize(
    "verb", ["fix-dates", "geotag", "interpolate-direction", "dedup", "split", "tag", "process"]
)
def test_help_has_examples_and_exit_codes(verb: str) -> None:
    out = amly(verb, "--help")
    assert out.returncode == 0
    assert "examples:" in out.stdout and "exit codes" in out.stdout
    for opt in ("--json", "--quiet", "--verbose", "--no-progress"):
        assert opt in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["fix-dates", "{missing}", "2020-01-01 00:00:00", "1"],
        ["fix-dates", "{tmp}", "yesterday noon", "1"],
        ["geotag", "{tmp}", "--gpx", "{missing}"],
        ["geotag", "{tmp}"],
        ["interpolate-direction", "{missing}"],
        ["dedup", "{missing}"],
        ["split", "{tmp}", "-5"],
        ["tag", "{tmp}", "--sequence-id", "no spaces allowed"],
        ["process", "{missing}"],
        ["process", "{tmp}", "--timezone", "Mars/Olympus"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    argv = [a.format(tmp=tmp_path, missing=tmp_path / "nope") for a in args]
    out = amly(*argv)
    assert out.returncode == 2, (argv, out.stdout, out.stderr)


def test_fix_dates(tmp_path: Path) -> None:
    photos = write_drive(tmp_path, drive(8), geotag=False)
    bad = add_bad_files(tmp_path)
    code, summary = amly_json(
        "fix-dates", tmp_path, "2014-11-27 13:01:01", "2.5", "--timezone", "+02:00"
    )
    assert code == 1
    # A JPEG without EXIF is what fix-dates is for (frames cut from a video): it gets dated.
    # (update_exif does not check for a missing EOI, so a truncated file is dated too.)
    assert {bad["zero"].name, bad["notjpeg"].name} <= failed_files(summary)
    assert bad["noexif"].name not in failed_files(summary)
    assert not any(p.name in failed_files(summary) for p in photos)
    # every file in name order consumed one slot, the bad ones too
    order = sorted(p.name for p in [*photos, *bad.values()])
    start = datetime(2014, 11, 27, 13, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    for tags, p in zip(exiftool(*photos), photos, strict=True):
        t = start + timedelta(seconds=2.5 * order.index(p.name))
        assert tags["DateTimeOriginal"] == t.strftime("%Y:%m:%d %H:%M:%S")
        assert int(str(tags["SubSecTimeOriginal"])) == t.microsecond // 1000


def test_geotag_from_gpx_with_clock_offset(tmp_path: Path) -> None:
    pts = drive(40, stop_at=None, park_at=None)
    photos = write_drive(tmp_path / "photos", pts, geotag=False, clock_offset=-7.0)
    # The GPS logger was switched on late: the first 3 photos are before the track.
    gpx = tmp_path / "track.gpx"
    gpx.write_text(synth.gpx_text(pts[3:]))
    add_bad_files(tmp_path / "photos" / "sub")
    before = {p: p.read_bytes() for p in photos}
    code, summary = amly_json("geotag", tmp_path / "photos", "--gpx", gpx, "--offset-time", "7")
    assert code == 1
    kinds = {f["type"] for f in summary["failures"]}
    assert "MapillaryOutsideGPXTrackError" in kinds and "MapillaryExifError" in kinds
    assert {p.name for p in photos[:3]} <= failed_files(summary)
    assert summary["counts"]["geotagged"] == len(photos) - 3
    for p in photos[:3]:
        assert p.read_bytes() == before[p]  # outside the track: untouched
    tags = exiftool(*photos[3:])
    for t, p, pt in zip(tags, photos[3:], pts[3:], strict=True):
        assert abs(t["GPSLatitude"] - pt.lat) < 1e-6 and abs(t["GPSLongitude"] - pt.lon) < 1e-6
        assert abs(t["GPSAltitude"] - pt.alt) < 0.01
        assert "GPSImgDirection" in t
        assert strip_app1(p.read_bytes()) == strip_app1(before[p])  # lossless
    # direction = the track's direction of travel towards the next fix
    mid = 10
    expect = geo.bearing(pts[mid].lat, pts[mid].lon, pts[mid + 1].lat, pts[mid + 1].lon)
    assert geo.angle_diff(tags[mid - 3]["GPSImgDirection"], expect) < 0.5


def test_geotag_gap_and_nmea_exclusive(tmp_path: Path) -> None:
    pts = drive(30, stop_at=None, park_at=None)
    photos = write_drive(tmp_path / "p", pts, geotag=False)
    gpx = tmp_path / "t.gpx"
    gpx.write_text(synth.gpx_text([*pts[:10], *pts[20:]]))  # a 10 s hole in the track
    code, summary = amly_json("geotag", tmp_path / "p", "--gpx", gpx, "--max-gap", "5")
    assert code == 1
    assert failed_files(summary) == {p.name for p in photos[10:20]}
    out = amly("geotag", tmp_path / "p", "--gpx", gpx, "--nmea", gpx)
    assert out.returncode == 2


def test_interpolate_direction(tmp_path: Path) -> None:
    pts = drive(20, stop_at=None, park_at=None)
    photos = write_drive(tmp_path / "p", pts)
    add_bad_files(tmp_path / "p" / "broken")
    before = exiftool(*photos)
    code, summary = amly_json("interpolate-direction", tmp_path / "p", "--offset-angle", "90")
    assert code == 1 and summary["counts"]["updated"] == len(photos)
    after = exiftool(*photos)
    for i in range(len(pts) - 1):
        b = geo.bearing(pts[i].lat, pts[i].lon, pts[i + 1].lat, pts[i + 1].lon)
        assert geo.angle_diff(after[i]["GPSImgDirection"], (b + 90) % 360) < 0.05
        assert after[i]["GPSLatitude"] == before[i]["GPSLatitude"]  # positions untouched
        assert after[i]["GPSLongitude"] == before[i]["GPSLongitude"]
    assert geo.angle_diff(after[-1]["GPSImgDirection"], after[-2]["GPSImgDirection"]) < 0.05


def test_dedup_moves_duplicates_and_bad_files(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    pts = drive(30, stop_at=10, stop_photos=6, park_at=None)
    photos = write_drive(src, pts)
    bad = add_bad_files(src / "sub")
    # flag only: nothing moves
    code, summary = amly_json("dedup", src, "--flag-only")
    # stop_photos=6 stands still for 7 photos (10..16): the first is kept
    assert summary["counts"]["duplicates"] == 6
    assert all(p.exists() for p in photos) and not (tmp_path / "photos_duplicates").exists()
    # a file already in the target is never replaced
    dup_names = sorted(
        os.path.basename(f["file"])
        for f in summary["flagged"]
        if f["type"] == "MapillaryDuplicationError"
    )
    assert dup_names == [f"IMG_{i:05d}.jpg" for i in range(11, 17)]
    (tmp_path / "photos_duplicates").mkdir()
    (tmp_path / "photos_duplicates" / dup_names[0]).write_bytes(b"keep me")
    code, summary = amly_json("dedup", src)
    assert code == 1
    assert (tmp_path / "photos_duplicates" / dup_names[0]).read_bytes() == b"keep me"
    assert (src / dup_names[0]).exists()
    for name in dup_names[1:]:
        assert (tmp_path / "photos_duplicates" / name).exists() and not (src / name).exists()
    for p in bad.values():  # bad EXIF -> the error folder, subfolder kept
        assert (tmp_path / "photos_errors" / "sub" / p.name).exists() and not p.exists()
    assert {p.name for p in bad.values()} | {dup_names[0]} == failed_files(summary)
    # custom targets, legacy -d spelling
    code, summary = amly_json(
        "dedup", "-d", "500", src, tmp_path / "d2", "--error-dir", tmp_path / "e2"
    )
    assert summary["counts"]["duplicates"] > 0 and (tmp_path / "d2").is_dir()


def test_split_into_sequence_folders(tmp_path: Path) -> None:
    pts = drive(30, stop_at=None, park_at=20, park_seconds=900)
    photos = write_drive(tmp_path, pts)
    out = amly("split", tmp_path, "100")
    assert out.returncode == 0, out.stderr
    assert "estimated cutoff time" in out.stdout
    assert sorted(os.listdir(tmp_path / "sequence_0000")) == [p.name for p in photos[:20]]
    assert sorted(os.listdir(tmp_path / "sequence_0001")) == [p.name for p in photos[20:]]
    assert not any(p.exists() for p in photos)
    # more photos later: numbering continues, nothing overwritten
    more = write_drive(tmp_path, pts[:3], prefix="NEW_")
    add_bad_files(tmp_path)
    code, summary = amly_json("split", tmp_path, "100", "60")
    assert code == 1 and summary["counts"]["sequences"] == 1
    assert sorted(os.listdir(tmp_path / "sequence_0002")) == [p.name for p in more]
    assert (tmp_path / "BAD_zero.jpg").exists()  # bad files stay where they were


def test_tag_writes_description(tmp_path: Path) -> None:
    pts = drive(30, stop_at=None, park_at=20)
    photos = write_drive(tmp_path / "p", pts)
    add_bad_files(tmp_path / "p" / "x")
    code, summary = amly_json("tag", tmp_path / "p", "--organization", "1234567")
    assert code == 1 and summary["counts"]["tagged"] == len(photos)
    descs = [json.loads(t["ImageDescription"]) for t in exiftool(*photos)]
    assert {d["MAPOrganizationKey"] for d in descs} == {"1234567"}
    assert len({d["MAPSequenceUUID"] for d in descs[:20]}) == 1
    assert descs[0]["MAPSequenceUUID"] != descs[20]["MAPSequenceUUID"]  # the parking gap
    for d, pt, p in zip(descs, pts, photos, strict=True):
        assert abs(d["MAPLatitude"] - pt.lat) < 1e-6 and d["MAPFilename"] == p.name
    out = amly("tag", tmp_path / "p", "--sequence-id", "my_seq-1", "-q")
    assert out.returncode == 1
    descs = [json.loads(t["ImageDescription"]) for t in exiftool(*photos)]
    assert {d["MAPSequenceUUID"] for d in descs} == {"my_seq-1"}
    assert not any("MAPOrganizationKey" in d for d in descs)  # a re-tag replaces it


def nmea_text(points: list) -> str:
    """RMC sentences (with checksums) for ``points``, as a GPS logger writes them."""
    lines = []
    for p in points:
        t = p.time.astimezone(timezone.utc)

        def dm(v: float, width: int) -> str:
            d = int(abs(v))
            return f"{d:0{width}d}{(abs(v) - d) * 60:09.6f}"

        body = (
            f"GPRMC,{t:%H%M%S}.{t.microsecond // 10000:02d},A,{dm(p.lat, 2)},"
            f"{'N' if p.lat >= 0 else 'S'},{dm(p.lon, 3)},{'E' if p.lon >= 0 else 'W'},"
            f"023.3,090.0,{t:%d%m%y},,,A"
        )
        cs = 0
        for ch in body:
            cs ^= ord(ch)
        lines.append(f"${body}*{cs:02X}")
    return "\r\n".join(lines) + "\r\n"


def test_geotag_from_nmea(tmp_path: Path) -> None:
    pts = drive(15, stop_at=None, park_at=None)
    photos = write_drive(tmp_path / "p", pts, geotag=False)
    (tmp_path / "log.nmea").write_text(nmea_text(pts))
    code, summary = amly_json("geotag", tmp_path / "p", "--nmea", tmp_path / "log.nmea")
    assert code == 0 and summary["counts"]["geotagged"] == len(photos)
    for t, pt in zip(exiftool(*photos), pts, strict=True):
        assert abs(t["GPSLatitude"] - pt.lat) < 1e-6 and abs(t["GPSLongitude"] - pt.lon) < 1e-6


def _snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int, int]]:
    """Bytes, inode and mtime of each file: an atomic rewrite changes the inode even when it
    writes the same bytes."""
    out = {}
    for p in paths:
        st = p.stat()
        out[p] = (p.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


def test_geotag_rerun_same_offset_is_idempotent(tmp_path: Path) -> None:
    from amly.description import format_capture_time
    from amly.metadata import read_image

    pts = drive(20, stop_at=None, park_at=None)
    # The camera clock is 7.25 s behind GPS and we say 7.75: every photo falls 0.5 s after
    # its fix, halfway to the next one; the last one after the track's end.
    photos = write_drive(tmp_path / "p", pts, geotag=False, clock_offset=-7.25)
    gpx = tmp_path / "t.gpx"
    gpx.write_text(synth.gpx_text(pts))
    camera = exiftool(*photos)
    args = ("geotag", tmp_path / "p", "--gpx", gpx, "--offset-time", "7.75")
    code, summary = amly_json(*args)
    assert code == 1 and failed_files(summary) == {photos[-1].name}
    first = _snapshot(photos)
    first_tags = exiftool(*photos)
    code, summary = amly_json(*args)
    assert code == 1 and summary["counts"]["geotagged"] == len(photos) - 1
    assert _snapshot(photos) == first  # nothing rewritten: same bytes, same inode and mtime
    assert exiftool(*photos) == first_tags
    for tags, cam, p, a, b in zip(
        first_tags[:-1], camera[:-1], photos[:-1], pts[:-1], pts[1:], strict=True
    ):
        # at camera time + offset on the track (halfway between two fixes), not + 2x offset
        assert abs(tags["GPSLatitude"] - (a.lat + b.lat) / 2) < 1e-7, p.name
        assert abs(tags["GPSLongitude"] - (a.lon + b.lon) / 2) < 1e-7, p.name
        # the camera's record is kept; the GPS stamp holds the corrected time (UTC)
        for key in ("DateTimeOriginal", "SubSecTimeOriginal"):
            assert tags[key] == cam[key], (p.name, key)
        true = a.time + timedelta(seconds=0.5)
        assert tags["GPSDateStamp"] == true.strftime("%Y:%m:%d")
        assert abs(float(tags["GPSTimeStamp"].split(":")[2]) - true.second - 0.5) < 1e-6
        m = read_image(p, tz=timezone.utc)
        assert m.camera_time == a.time - timedelta(seconds=7.25) and m.capture_time == true
    # `amly process` without the track takes the corrected times (GPS stamp first)
    desc = tmp_path / "d.json"
    res = amly("process", tmp_path / "p", "--desc-path", desc, "-q", "--timezone", "UTC")
    assert res.returncode == 1 and photos[-1].name in res.stderr  # the ungeotagged last one
    entries = {os.path.basename(e["filename"]): e for e in json.loads(desc.read_text())}
    for p, a in zip(photos[:-1], pts[:-1], strict=True):
        e = entries[p.name]
        if "error" not in e:  # (a duplicate may be left out)
            assert e["MAPCaptureTime"] == format_capture_time(a.time + timedelta(seconds=0.5))
    assert sum("error" not in e for e in entries.values()) >= len(photos) - 2
    # another offset replaces the first one instead of adding to it: now exactly on the fixes
    code, _ = amly_json("geotag", tmp_path / "p", "--gpx", gpx, "--offset-time", "7.25")
    assert code == 0
    for tags, a in zip(exiftool(*photos), pts, strict=True):
        assert abs(tags["GPSLatitude"] - a.lat) < 1e-7 and abs(tags["GPSLongitude"] - a.lon) < 1e-7
    # and `amly process --gpx` with that offset agrees with the geotagged files
    res = amly(
        "process", tmp_path / "p", "--desc-path", desc, "-q", "--gpx", gpx, "--offset-time", "7.25"
    )
    assert res.returncode == 0, res.stderr
    for e in json.loads(desc.read_text()):
        if "error" not in e:
            a = pts[photos.index(Path(e["filename"]))]
            assert e["MAPCaptureTime"] == format_capture_time(a.time)
            assert abs(e["MAPLatitude"] - a.lat) < 1e-7


def test_geotag_rerun_with_gpx_start_time_is_idempotent(tmp_path: Path) -> None:
    pts = drive(10, stop_at=None, park_at=None)
    photos = write_drive(tmp_path / "p", pts, geotag=False, clock_offset=-3600.0)
    gpx = tmp_path / "t.gpx"
    gpx.write_text(synth.gpx_text(pts))
    args = ("geotag", tmp_path / "p", "--gpx", gpx, "--use-gpx-start-time")
    assert amly_json(*args)[0] == 0
    first = _snapshot(photos)
    assert amly_json(*args)[0] == 0
    assert _snapshot(photos) == first
    for tags, a in zip(exiftool(*photos), pts, strict=True):
        assert abs(tags["GPSLatitude"] - a.lat) < 1e-7 and abs(tags["GPSLongitude"] - a.lon) < 1e-7
        assert tags["GPSTimeStamp"] == a.time.strftime("%H:%M:%S")
