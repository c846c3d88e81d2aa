"""amly.video against the real samples and against mapillary_tools 0.14.7's own parsers.

The official parsers are the independent reader: every generated file (and every real
GPMF payload wrapped in an MP4 by amly's builder) is read by both, and point counts, first
and last points, times and make/model must agree; where the official tool fails, amly must
either do better on purpose (BlackVue behind an empty ``free`` box) or fail the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import struct
from pathlib import Path

import pytest

from amly.errors import FileError
from amly.video import (
    Mp4Error,
    NoiseFilter,
    VideoGPSEmptyError,
    VideoGPSNoiseError,
    VideoGPSNotFoundError,
    camm_layout,
    read_video,
    read_video_sync,
    write_camm,
)
from amly.video import _build as B
from amly.video._mp4 import open_movie

SAMPLES = Path("/work/shared/samples/video")
if not SAMPLES.exists():  # CI checkouts carry the samples next to the repository
    SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "video"
needs_samples = pytest.mark.skipif(not SAMPLES.exists(), reason="real video samples not present")


def official(path: Path):
    """mapillary_tools' own extraction of a video (its NativeVideoExtractor)."""
    from mapillary_tools.geotag.video_extractors.native import NativeVideoExtractor

    return NativeVideoExtractor(path).extract()


def official_error(path: Path) -> str:
    try:
        official(path)
    except Exception as e:  # the official tool's exception class names are its error kinds
        return type(e).__name__
    raise AssertionError("the official tool read the file")


def assert_same(path: Path, *, epoch_tol: float = 1e-6, model: bool = True) -> None:
    mine = read_video_sync(path)
    theirs = official(path)
    assert mine.filetype == theirs.filetype.value
    assert len(mine.points) == len(theirs.points)
    for a, b in ((mine.points[0], theirs.points[0]), (mine.points[-1], theirs.points[-1])):
        assert a.time == pytest.approx(b.time, abs=1e-6)
        assert a.lat == pytest.approx(b.lat, abs=1e-9)
        assert a.lon == pytest.approx(b.lon, abs=1e-9)
        assert (a.alt is None) == (b.alt is None)
        if a.alt is not None:
            assert a.alt == pytest.approx(b.alt, abs=1e-3)
        b_epoch = getattr(b, "epoch_time", None) or getattr(b, "time_gps_epoch", None)
        assert a.epoch == pytest.approx(b_epoch, abs=epoch_tol)
    assert mine.make == theirs.make
    if model:
        assert mine.model == theirs.model


# -- the real samples -------------------------------------------------------------------------


@needs_samples
@pytest.mark.parametrize(
    ("name", "error", "kind"),
    [
        ("karma.mp4", VideoGPSEmptyError, "MapillaryGPXEmptyError"),
        ("vr180_mett_replaced_with_camm.mp4", VideoGPSEmptyError, "MapillaryGPXEmptyError"),
        ("vr180_mett.mp4", VideoGPSNotFoundError, "MapillaryVideoGPSNotFoundError"),
        ("sample-5s.mp4", VideoGPSNotFoundError, "MapillaryVideoGPSNotFoundError"),
    ],
)
def test_real_samples_without_gps_fail_like_the_official_tool(name, error, kind):
    path = SAMPLES / name
    with pytest.raises(error) as e:
        read_video_sync(path)
    assert e.value.kind == kind == official_error(path)
    assert str(path) in str(e.value) and "--gpx" in str(e.value)


@needs_samples
def test_real_sample_tables_match_the_official_parser():
    """Every sample of every track: offsets, sizes and times equal mapillary_tools'."""
    from mapillary_tools.mp4.mp4_sample_parser import MovieBoxParser

    for name in ("karma.mp4", "sample-5s.mp4", "vr180_mett_replaced_with_camm.mp4"):
        path = SAMPLES / name
        with open(path, "rb") as f:
            movie = open_movie(f, str(path))
            f.seek(0)
            theirs = list(MovieBoxParser.parse_stream(f).extract_tracks())
        assert len(movie.tracks) == len(theirs)
        for t, o in zip(movie.tracks, theirs, strict=True):
            mine = list(t.samples())
            ref = list(o.extract_samples())
            assert len(mine) == len(ref) > 0
            for a, b in zip(mine, ref, strict=True):
                assert (a.offset, a.size) == (b.raw_sample.offset, b.raw_sample.size)
                assert a.dts / t.timescale == pytest.approx(b.exact_time)
                assert a.cts / t.timescale == pytest.approx(b.exact_composition_time)


@needs_samples
def test_karma_model_and_devices():
    from mapillary_tools.gpmf import gpmf_parser

    path = SAMPLES / "karma.mp4"
    with open(path, "rb") as f:
        theirs = gpmf_parser.extract_camera_model(f)
    with open(path, "rb") as f:
        movie = open_movie(f, str(path))
        gpmd = next(t for t in movie.tracks if b"gpmd" in t.formats)
        payloads = [
            (
                s.dts / gpmd.timescale,
                s.duration / gpmd.timescale,
                (f.seek(s.offset), f.read(s.size))[1],
            )
            for s in gpmd.samples()
        ]
    from amly.video._gpmf import camera_model, points_of

    pts, names, devices = points_of(payloads)
    assert pts == [] and devices == 26  # 13 samples x 2 devices
    assert set(names) == {"Camera", "GoPro Karma v1.0"}
    assert camera_model(names) == theirs == "GoPro Karma v1.0"


def _payloads(raw: bytes) -> list[bytes]:
    """Split a .raw GPMF dump into payloads: a payload ends when a device id repeats."""
    out: list[bytes] = []
    seen: set[bytes] = set()
    start = pos = 0
    while pos + 8 <= len(raw):
        _key, _t, size, repeat = struct.unpack_from(">4scBH", raw, pos)
        dvid = raw[pos + 16 : pos + 20]
        if dvid in seen:
            out.append(raw[start:pos])
            seen, start = set(), pos
        seen.add(dvid)
        pos += 8 + (size * repeat + 3) // 4 * 4
    out.append(raw[start:pos])
    return out


RAWS = {
    "gpmf-parser_hero5.raw": None,
    "gpmf-parser_Fusion.raw": None,
    "gpmf-parser_hero6+ble.raw": "MapillaryGPSNoiseError",
    "gpmf-parser_hero6.raw": "MapillaryGPSNoiseError",
    "gopro-telemetry_hero11.raw": None,
    "gopro-telemetry_hero7.raw": None,
    "gopro-telemetry_consecutive1.raw": "MapillaryGPSNoiseError",
    "gopro-telemetry_consecutive2.raw": "MapillaryGPSNoiseError",
    "gpmf-parser_karma.raw": "MapillaryGPXEmptyError",
}


@needs_samples
@pytest.mark.parametrize("name", sorted(RAWS))
def test_real_gpmf_payloads_in_a_built_mp4_read_like_the_official_tool(tmp_path, name):
    """Real camera payloads, one per second in amly's GoPro MP4 builder, read by both."""
    payloads = _payloads((SAMPLES / "gpmf-raw" / name).read_bytes())
    path = tmp_path / "gopro.mp4"
    B.build_gopro(path, [], payloads=payloads, base=B.Base(seconds=len(payloads), fps=2))
    kind = RAWS[name]
    if name == "gopro-telemetry_hero11.raw":
        # GPS5 and GPS9 in two streams, GPS5 first: the official tool stops at GPS5 (one
        # GPSU time per payload, 1.4 s off here); amly keeps GPS9's per-point times, which
        # must equal what the official tool's own GPS9 decoder gives for that stream.
        from mapillary_tools.gpmf import gpmf_parser as G

        mine = read_video_sync(path)
        theirs = official(path)
        assert len(mine.points) == len(theirs.points)
        assert (mine.points[0].lat, mine.points[-1].lon) == (
            theirs.points[0].lat,
            theirs.points[-1].lon,
        )
        devc = G.GPMFSampleData.parse(payloads[0])[0]
        strm = next(
            k
            for k in devc["data"]
            if k["key"] == b"STRM" and any(x["key"] == b"GPS9" for x in k["data"])
        )
        gps9 = list(G._gps9_from_stream(strm["data"]))
        assert mine.points[0].epoch == pytest.approx(gps9[0].epoch_time, abs=1e-6)
        assert (
            mine.points[0].precision == gps9[0].precision
            and mine.points[0].fix == gps9[0].fix.value
        )
    elif kind is None:
        # GPS5 epochs: the official tool gives every point of a payload the payload's GPSU
        # time; amly spreads them over the payload, so a last point may differ by < 1 s.
        assert_same(path, epoch_tol=1.0)
    else:
        with pytest.raises(FileError) as e:
            read_video_sync(path)
        assert e.value.kind == kind == official_error(path)
        if kind == "MapillaryGPSNoiseError":
            assert isinstance(e.value, VideoGPSNoiseError) and "--gpx" in str(e.value)


# -- generated files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"gps9": True, "gps5": False, "model": "HERO12 Black"},
        {"gps9": True, "gps5": True, "model": "HERO11 Black"},
        {"extra_device": True},
    ],
)
def test_generated_gopro_reads_like_the_official_tool(tmp_path, opts):
    path = tmp_path / "g.mp4"
    B.build_gopro(path, B.straight_track(30, 10), **opts)
    exact = opts.get("gps9", False) and not opts.get("gps5", True)
    assert_same(path, epoch_tol=1e-3 if exact else 1.0)
    mine = read_video_sync(path)
    assert len(mine.points) == 300 and mine.model == opts.get("model", "HERO9 Black")


def test_gps9_keeps_per_point_fix_and_dop(tmp_path):
    pts = B.straight_track(10, 10)
    pts = [
        p if i % 4 else B.TrackPoint(p.time, p.lat, p.lon, p.alt, p.epoch, 0, 9999, p.speed)
        for i, p in enumerate(pts)
    ]
    path = tmp_path / "g9.mp4"
    B.build_gopro(path, pts, gps9=True, gps5=False)
    assert_same(path, epoch_tol=1e-3)
    mine = read_video_sync(path)
    assert mine.raw_count == 100 and len(mine.points) == 75
    loose = read_video_sync(path, noise=NoiseFilter(fixes=frozenset({0, 2, 3}), max_dop100=10000))
    assert len(loose.points) == 100


@pytest.mark.parametrize(
    ("style", "offset"),
    [("@", 0.0), ("©", 0.0), ("@", 2.5)],
)
def test_generated_camm_reads_like_the_official_tool(tmp_path, style, offset):
    pts = [p.with_time(p.time + offset) for p in B.straight_track(20, 5)]
    path = tmp_path / "c.mp4"
    B.build_camm(path, pts, make="RICOH", model="THETA Z1", style=style)
    assert_same(path, epoch_tol=1e-6)
    mine = read_video_sync(path)
    assert (mine.make, mine.model) == ("RICOH", "THETA Z1")
    assert mine.points[0].time == pytest.approx(offset, abs=1e-3)


def test_camm_type5_without_gps_time(tmp_path):
    pts = [B.TrackPoint(p.time, p.lat, p.lon, p.alt) for p in B.straight_track(10, 5)]
    path = tmp_path / "c5.mp4"
    B.build_camm(path, pts)
    assert_same(path)
    assert read_video_sync(path).points[0].epoch is None


def test_generated_blackvue_reads_like_the_official_tool(tmp_path):
    path = tmp_path / "b.mp4"
    B.build_blackvue(path, B.straight_track(30, 1), model="DR900S-1CH")
    # the official tool does not find this cprt (it searches on from the gps box) -> ""
    assert_same(path, model=False)
    assert read_video_sync(path).model == "DR900S-1CH"


def test_blackvue_gps_behind_an_empty_free_box(tmp_path):
    """The official tool reads only the first ``free`` box; amly reads whichever holds it."""
    path = tmp_path / "b.mp4"
    B.build_blackvue(path, B.straight_track(30, 1), empty_free_first=True)
    assert official_error(path) == "MapillaryVideoGPSNotFoundError"
    mine = read_video_sync(path)
    assert mine.filetype == "blackvue" and len(mine.points) == 30
    assert mine.points[0].epoch == pytest.approx(1_700_000_000.0)


def test_blackvue_gga_only(tmp_path):
    path = tmp_path / "b.mp4"
    B.build_blackvue(path, B.straight_track(20, 1), kinds="GGA")
    assert_same(path, model=False)


def test_filetypes_limit_the_search(tmp_path):
    path = tmp_path / "g.mp4"
    B.build_gopro(path, B.straight_track(5, 10))
    with pytest.raises(VideoGPSNotFoundError):
        read_video_sync(path, {"camm", "blackvue"})
    assert asyncio.run(read_video(path, {"gopro"})).filetype == "gopro"


# -- the CAMM rebuild -------------------------------------------------------------------------


def test_camm_rebuild_of_gopro_reads_back_with_the_official_camm_parser(tmp_path):
    from mapillary_tools.camm import camm_parser
    from mapillary_tools.telemetry import CAMMGPSPoint

    src = tmp_path / "g.mp4"
    B.build_gopro(src, B.straight_track(20, 10), gps9=True, gps5=False)
    track = read_video_sync(src)
    out = tmp_path / "camm.mp4"
    size = write_camm(src, out, track.points, track.make, track.model)
    assert out.stat().st_size == size
    with open(out, "rb") as f:
        info = camm_parser.extract_camm_info(f)
    assert info is not None
    # 0.14.7 files type-6 points under mini_gps too (CAMMGPSPoint is a geo.Point): the type
    # is told by the class
    got = info.gps or info.mini_gps or []
    assert all(type(p) is CAMMGPSPoint for p in got)
    assert (info.make, info.model) == ("GoPro", "HERO9 Black")
    assert len(got) == len(track.points)
    for a, b in zip(track.points, got, strict=True):
        assert (a.lat, a.lon) == (b.lat, b.lon)
        assert b.time == pytest.approx(a.time, abs=1e-3)
        assert b.time_gps_epoch == pytest.approx(a.epoch, abs=1e-6)
        assert b.gps_fix_type == 3
    # the gpmd track is gone, the video track is kept: a CAMM file now
    again = read_video_sync(out)
    assert again.filetype == "camm" and len(again.points) == len(track.points)
    with open(out, "rb") as f:
        kinds = [t.handler for t in open_movie(f, str(out)).tracks]
    assert kinds == [b"vide", b"camm"]


@needs_samples
def test_camm_rebuild_keeps_the_video_frames(tmp_path):
    """A real H.264 clip rebuilt: PyAV decodes the same frames; audio is dropped as the
    official rebuild does; the CAMM track starts where the first point is."""
    av = pytest.importorskip("av")
    src = SAMPLES / "sample-5s.mp4"
    pts = [p.with_time(0.5 + p.time / 5) for p in B.straight_track(20, 5)]
    out = tmp_path / "camm.mp4"
    write_camm(src, out, pts, "Acme", "Cam 1")

    def frames(path: Path) -> tuple[int, str]:
        h = hashlib.md5()
        n = 0
        with av.open(str(path)) as c:
            for fr in c.decode(video=0):
                n += 1
                if n % 25 == 0:
                    h.update(fr.to_ndarray().tobytes())
        return n, h.hexdigest()

    assert frames(src) == frames(out)
    theirs = official(out)
    assert theirs.filetype.value == "camm" and len(theirs.points) == 100
    assert theirs.points[0].time == pytest.approx(0.5, abs=1e-3)
    assert (theirs.make, theirs.model) == ("Acme", "Cam 1")


def test_camm_layout_streams_and_resumes(tmp_path):
    """The layout of a 40 MB video holds only headers in memory, and reading it from an
    offset gives the tail of the full bytes (a resumed upload)."""
    src = tmp_path / "big.mp4"
    B.build_gopro(src, B.straight_track(40, 10), base=B.Base(seconds=40, fps=25, frame_size=40_000))
    track = read_video_sync(src)
    layout = camm_layout(src, track.points, track.make, track.model)
    in_memory = sum(p.size for p in layout.parts if p.data is not None)
    assert layout.size > 40_000_000 and in_memory < 200_000
    whole = b"".join(layout.iter_bytes(bufsize=1 << 16))
    assert len(whole) == layout.size
    at = 12_345_678
    assert b"".join(layout.iter_bytes(at)) == whole[at:]


# -- bad input --------------------------------------------------------------------------------


def _good(tmp_path: Path) -> Path:
    path = tmp_path / "good.mp4"
    B.build_gopro(path, B.straight_track(10, 10))
    return path


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(Mp4Error, match="empty file"):
        read_video_sync(path)


def test_not_an_mp4(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is a JPEG really" * 10)
    with pytest.raises(Mp4Error, match="not an MP4") as e:
        read_video_sync(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_truncated(tmp_path, cut):
    path = _good(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(Mp4Error, match="truncated MP4") as e:
        read_video_sync(path)
    assert "copy it again" in str(e.value)


def test_moov_that_lies_about_offsets(tmp_path):
    path = _good(tmp_path)
    data = bytearray(path.read_bytes())
    # the gpmd track's co64 entries pushed 1 GB past the end
    at = data.rfind(b"co64")
    (count,) = struct.unpack_from(">I", data, at + 8)
    for i in range(count):
        (v,) = struct.unpack_from(">Q", data, at + 12 + 8 * i)
        struct.pack_into(">Q", data, at + 12 + 8 * i, v + (1 << 30))
    path.write_bytes(bytes(data))
    with pytest.raises(Mp4Error, match="points past the data"):
        read_video_sync(path)


def test_no_moov(tmp_path):
    path = tmp_path / "rec.mp4"
    path.write_bytes(
        struct.pack(">I4s", 16, b"ftyp")
        + b"isom\0\0\0\0"
        + struct.pack(">I4s", 1008, b"mdat")
        + bytes(1000)
    )
    with pytest.raises(Mp4Error, match="no 'moov' box.*not finalized"):
        read_video_sync(path)


@pytest.mark.parametrize("seed", range(30))
def test_random_corruption_never_escapes_as_a_traceback(tmp_path, seed):
    """Whatever bytes a file holds, the reader raises a FileError or reads it."""
    import random

    rnd = random.Random(seed)
    path = _good(tmp_path)
    data = bytearray(path.read_bytes())
    moov = data.find(b"moov") - 4
    for _ in range(rnd.randint(1, 20)):
        i = rnd.randrange(moov, len(data)) if rnd.random() < 0.8 else rnd.randrange(len(data))
        data[i] = rnd.randrange(256)
    path.write_bytes(bytes(data))
    try:
        read_video_sync(path)
    except FileError as e:
        assert str(path) in str(e)


def test_a_directory_and_a_missing_file(tmp_path):
    with pytest.raises(FileError):
        read_video_sync(tmp_path)
    with pytest.raises(FileError, match="no such file"):
        read_video_sync(tmp_path / "nope.mp4")


def test_copy_is_unchanged_by_reading(tmp_path):
    path = _good(tmp_path)
    before = path.read_bytes()
    copy = tmp_path / "copy.mp4"
    shutil.copy(path, copy)
    read_video_sync(copy)
    write_camm(copy, tmp_path / "out.mp4", read_video_sync(copy).points)
    assert copy.read_bytes() == before


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_reading_telemetry_reads_only_moov_and_telemetry_samples(tmp_path):
    """A 180 MB video: the reader's reads (rchar) stay a tiny fraction of the file."""
    path = tmp_path / "big.mp4"
    B.build_gopro(
        path, B.straight_track(60, 18), base=B.Base(seconds=60, fps=30, frame_size=100_000)
    )
    size = path.stat().st_size
    assert size > 180_000_000
    before = _bytes_read()
    track = read_video_sync(path)
    used = _bytes_read() - before
    assert len(track.points) == 1080
    assert used < 1_000_000, used  # moov (~50 KB) + 60 GPMF payloads + buffers
    before = _bytes_read()
    layout = camm_layout(path, track.points, track.make, track.model)
    assert _bytes_read() - before < 1_000_000  # laying out the rebuild reads no video data
    assert layout.size > size * 0.99


def test_camm_with_every_sample_type(tmp_path):
    """Types 0-4 and 7 between the position samples: parsed, ignored for the track, and the
    track equals the official parser's."""
    from amly.video._camm import FORMATS, parse_sample

    path = tmp_path / "mixed.mp4"
    B.build_camm(path, B.straight_track(6, 5), other_types=True, make="Insta360", model="X3")
    assert_same(path)
    with open(path, "rb") as f:
        movie = open_movie(f, str(path))
        camm = next(t for t in movie.tracks if t.handler == b"camm")
        types = [parse_sample(data)[0] for _s, data in camm.read_samples(f, b"camm")]
    assert set(types) == set(FORMATS) - {5}
    assert types.count(6) == 30


def test_gopro_max_360_with_two_video_tracks(tmp_path):
    """A .360 (two video streams): telemetry read, and the rebuild keeps both streams."""
    from mapillary_tools.camm import camm_parser

    path = tmp_path / "GS010042.360"
    B.build_gopro(
        path, B.straight_track(10, 10), model="GoPro Max", base=B.Base(seconds=10, video_tracks=2)
    )
    track = read_video_sync(path)
    assert (track.filetype, track.model, track.video_tracks) == ("gopro", "GoPro Max", 2)
    out = tmp_path / "camm.mp4"
    write_camm(path, out, track.points, track.make, track.model)
    with open(out, "rb") as f:
        kinds = [t.handler for t in open_movie(f, str(out)).tracks]
        f.seek(0)
        info = camm_parser.extract_camm_info(f)
    assert kinds == [b"vide", b"vide", b"camm"]
    assert info is not None and len(info.gps or info.mini_gps or []) == 100


def _replace_stsz_with_stz2(data: bytes, field: int) -> bytes:
    """The file with the gpmd track's stsz turned into a compact stz2 (same sizes), and every
    box on the way up resized (chunk offsets shift: the stz2 is placed, sizes padded, so the
    total box length stays the same)."""
    at = data.rfind(b"stsz") - 4
    size, _t, _v, ssize, count = struct.unpack_from(">I4sIII", data, at)
    sizes = [ssize] * count if ssize else list(struct.unpack_from(f">{count}I", data, at + 20))
    assert max(sizes) < 1 << field
    if field == 16:
        body = struct.pack(f">{count}H", *sizes)
    else:
        body = bytes(sizes)
    new = struct.pack(">I4sIII", 0, b"stz2", 0, field, count) + body
    pad = size - len(new)
    assert pad >= 8
    new = struct.pack(">I", len(new)) + new[4:] + struct.pack(">I4s", pad, b"free") + bytes(pad - 8)
    return data[:at] + new + data[at + size :]


def test_stz2_sample_sizes(tmp_path):
    path = tmp_path / "g.mp4"
    B.build_gopro(path, B.straight_track(10.5, 10))  # a short last payload: sizes differ
    before = read_video_sync(path)
    path.write_bytes(_replace_stsz_with_stz2(path.read_bytes(), 16))
    with open(path, "rb") as f:
        assert b"stz2" in bytes(open_movie(f, str(path)).moov_data)
    after = read_video_sync(path)
    assert [(p.time, p.lat, p.lon) for p in after.points] == [
        (p.time, p.lat, p.lon) for p in before.points
    ]


def test_fragmented_mp4_is_refused_for_the_rebuild(tmp_path):
    """Frames in 'moof' fragments are not in the sample tables: never upload a video
    without its pictures."""
    path = tmp_path / "g.mp4"
    B.build_gopro(path, B.straight_track(5, 10))
    track = read_video_sync(path)
    with open(path, "ab") as f:  # a movie fragment after the file, as fragmented MP4s have
        f.write(struct.pack(">I4s", 16, b"moof") + bytes(8))
    with pytest.raises(Mp4Error, match="fragmented MP4"):
        camm_layout(path, track.points)


def test_a_sample_count_larger_than_the_file_is_refused(tmp_path):
    """A constant-size stsz claiming 4 billion samples: an error, not a 16 GB allocation."""
    path = tmp_path / "g.mp4"
    B.build_gopro(path, B.straight_track(10, 10))
    data = bytearray(path.read_bytes())
    at = data.find(b"stsz")  # the video track's (constant frame size)
    size, count = struct.unpack_from(">II", data, at + 8)
    assert size > 0
    struct.pack_into(">I", data, at + 12, 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises(Mp4Error, match="stsz"):
        read_video_sync(path)


@needs_samples
def test_model_from_minf_in_the_udta_gpmf(tmp_path):
    """A real camera's udta GPMF (global settings, MINF "HERO7 Black") beside a device named
    "Camera": the model is MINF's; the official tool, reading DVNM only, says "Camera"."""
    header = (SAMPLES / "gpmf-raw" / "gopro-telemetry_mp4header.raw").read_bytes()
    path = tmp_path / "g.mp4"
    B.build_gopro(path, B.straight_track(5, 10), model="Camera", udta_gpmf=header)
    assert read_video_sync(path).model == "HERO7 Black"
    assert official(path).model == "Camera"
