"""A corpus of hostile inputs, generated (never committed): what a broken card, a new camera or
a careless tool can leave in a folder, and hostile GPX/NMEA tracks.

Photos are built from one small synthetic JPEG whose EXIF is then damaged in a precise way:
truncated at many offsets, IFD pointers that loop, entries with wrong types and counts,
rationals with zero or huge parts, FLOAT/DOUBLE values holding NaN, times at the calendar's
edges. Folders get odd names and links next to healthy photos.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

from amly import synth
from amly.metadata import _tiff as T

T0 = datetime(2024, 6, 1, 10, 0, 0, tzinfo=timezone.utc)
LAT, LON = 52.52, 13.405
#: A healthy photo is 5 s and ~28 m (east) from the previous one.
STEP_S, STEP_DEG = 5, 0.0004


@functools.lru_cache(maxsize=1)
def frame() -> bytes:
    return synth.base_frames(64, 48)[0]


def exif(time: datetime | None = T0, **kw: object) -> bytes:
    """An EXIF APP1 payload as a camera writes it (big-endian, as piexif dumps it)."""
    kw.setdefault("lat", LAT)
    kw.setdefault("lon", LON)
    kw.setdefault("alt", 34.0)
    kw.setdefault("heading", 90.0)
    return synth.exif_bytes(time=time, **kw)  # type: ignore[arg-type]


def photo(payload: bytes | None = None) -> bytes:
    return synth.splice_exif(frame(), payload if payload is not None else exif())


def healthy(i: int, **kw: object) -> bytes:
    """The i-th photo of a straight drive east."""
    kw.setdefault("lon", LON + i * STEP_DEG)
    return photo(exif(T0 + timedelta(seconds=STEP_S * i), **kw))


# -- patching the TIFF structure of an EXIF payload -------------------------------------------


def _ifd_offset(tiff: bytes, e: str, ifd: str) -> int:
    _, ifd0 = T.header(tiff)
    if ifd == "0th":
        return ifd0
    pointer = {"Exif": T.EXIF_POINTER, "GPS": T.GPS_POINTER}[ifd]
    ent = T.read_ifd(tiff, e, ifd0, "IFD0")[pointer]
    return T.ints(tiff, e, ent)[0]


def patch(
    payload: bytes,
    ifd: str,
    tag: int,
    *,
    type: int | None = None,
    count: int | None = None,
    field: int | None = None,
    data: bytes | None = None,
) -> bytes:
    """``payload`` with one IFD entry changed: its type, count, raw 4-byte value field
    (``field``: an offset or an inline value) and/or the bytes at its value position."""
    tiff = bytearray(payload[6:])
    e, _ = T.header(bytes(tiff))
    at = _ifd_offset(bytes(tiff), e, ifd)
    ent = T.read_ifd(bytes(tiff), e, at, ifd)[tag]
    if data is not None:
        tiff[ent.pos : ent.pos + len(data)] = data
    if type is not None:
        struct.pack_into(e + "H", tiff, ent.at + 2, type)
    if count is not None:
        struct.pack_into(e + "L", tiff, ent.at + 4, count)
    if field is not None:
        struct.pack_into(e + "L", tiff, ent.at + 8, field)
    return payload[:6] + bytes(tiff)


def order(payload: bytes) -> str:
    return T.header(payload[6:])[0]


def doubles(payload: bytes, *values: float) -> bytes:
    return struct.pack(f"{order(payload)}{len(values)}d", *values)


def rationals(payload: bytes, *pairs: tuple[int, int]) -> bytes:
    flat = [v for p in pairs for v in p]
    return struct.pack(f"{order(payload)}{len(flat)}L", *flat)


def set_text(payload: bytes, ifd: str, tag: int, text: str) -> bytes:
    """An ASCII value replaced in place (``text`` no longer than the old value)."""
    tiff = payload[6:]
    e, _ = T.header(tiff)
    ent = T.read_ifd(tiff, e, _ifd_offset(tiff, e, ifd), ifd)[tag]
    raw = text.encode() + b"\x00"
    assert len(raw) <= ent.n, (text, ent.n)
    return patch(payload, ifd, tag, data=raw.ljust(ent.n, b"\x00"), count=ent.n)


def exif_with_time(dto: str, *, offset: str | None = None, gps: bool = True, **kw: object) -> bytes:
    """An EXIF whose DateTimeOriginal reads ``dto`` (and OffsetTimeOriginal ``offset``); with
    ``gps`` the GPS date/time stamp still says T0."""
    payload = exif(T0, offset=offset or "+00:00", gps_time=gps, **kw)
    payload = set_text(payload, "Exif", T.DATETIME_ORIGINAL, dto)
    return payload


# -- the photo corpus ---------------------------------------------------------------------------


def hostile_photos() -> dict[str, bytes]:
    """File name -> bytes of every hostile photo (none of them can be used as it is, or only
    through a fallback)."""
    out: dict[str, bytes] = {}
    good = healthy(0)
    sos = good.index(b"\xff\xda")
    cuts = sorted({2, 3, 4, 5, 6, 20, 21, 22, sos - 1, sos, sos + 2, sos + 20, len(good) - 2}
                  | set(range(7, len(good) - 2, max(1, len(good) // 24))))  # fmt: skip
    for n in cuts:
        out[f"trunc_{n:05d}.jpg"] = good[:n]
    out["empty.jpg"] = b""
    out["not_a_jpeg.jpg"] = b"\x89PNG\r\n\x1a\n" + bytes(64)
    out["zeros.jpg"] = bytes(4096)
    out["only_soi.jpg"] = b"\xff\xd8"
    out["soi_eoi.jpg"] = b"\xff\xd8\xff\xd9"
    out["bad_segment_length.jpg"] = good[:2] + b"\xff\xe1\x00\x01" + good[2:]
    out["segment_past_end.jpg"] = good[:2] + b"\xff\xe1\xff\xff" + good[6:40]

    e = exif(make="HostileCam")  # a camera of its own: the healthy drive stays apart
    tiff_at = 6
    # IFD loops: pointers back into IFD0 or onto themselves.
    ifd0 = T.header(e[tiff_at:])[1]
    out["loop_exif_to_ifd0.jpg"] = photo(patch(e, "0th", T.EXIF_POINTER, field=ifd0))
    out["loop_gps_to_ifd0.jpg"] = photo(patch(e, "0th", T.GPS_POINTER, field=ifd0))
    exif_at = _ifd_offset(e[6:], order(e), "Exif")
    out["loop_gps_to_exif.jpg"] = photo(patch(e, "0th", T.GPS_POINTER, field=exif_at))
    out["pointer_outside.jpg"] = photo(patch(e, "0th", T.EXIF_POINTER, field=0xFFFFFFF0))
    out["pointer_zero.jpg"] = photo(patch(e, "0th", T.GPS_POINTER, field=0))
    tiff = bytearray(e[6:])
    struct.pack_into(order(e) + "L", tiff, 4, 0xFFFF)  # IFD0 itself outside the block
    out["ifd0_outside.jpg"] = photo(e[:6] + bytes(tiff))
    tiff = bytearray(e[6:])
    struct.pack_into(order(e) + "H", tiff, ifd0, 0xFFFF)  # 65535 entries claimed
    out["ifd0_huge_count.jpg"] = photo(e[:6] + bytes(tiff))
    # Bad types and counts.
    out["gps_pointer_ascii.jpg"] = photo(patch(e, "0th", T.GPS_POINTER, type=T.ASCII))
    out["lat_type_99.jpg"] = photo(patch(e, "GPS", T.GPS_LAT, type=99))
    out["lat_count_0.jpg"] = photo(patch(e, "GPS", T.GPS_LAT, count=0))
    out["lat_count_huge.jpg"] = photo(patch(e, "GPS", T.GPS_LAT, count=0x7FFFFFFF))
    out["lat_offset_outside.jpg"] = photo(patch(e, "GPS", T.GPS_LAT, field=0xFFFFFF00))
    out["dto_type_short.jpg"] = photo(patch(e, "Exif", T.DATETIME_ORIGINAL, type=T.SHORT))
    out["dto_count_huge.jpg"] = photo(patch(e, "Exif", T.DATETIME_ORIGINAL, count=1 << 30))
    out["make_count_0.jpg"] = photo(patch(exif(T0, lat=None, lon=None), "0th", T.MAKE, count=0))
    # Bad rationals.
    out["lat_zero_denominators.jpg"] = photo(
        patch(e, "GPS", T.GPS_LAT, data=rationals(e, (52, 0), (31, 0), (0, 0)))
    )
    out["lat_huge.jpg"] = photo(
        patch(e, "GPS", T.GPS_LAT, data=rationals(e, (0xFFFFFFFF, 1), (0xFFFFFFFF, 1), (1, 1)))
    )
    out["alt_huge.jpg"] = photo(patch(e, "GPS", T.GPS_ALT, data=rationals(e, (0xFFFFFFFF, 1))))
    out["heading_huge.jpg"] = photo(
        patch(e, "GPS", T.GPS_DIRECTION, data=rationals(e, (0xFFFFFFFF, 3)))
    )
    for name, value in (("nan", math.nan), ("inf", math.inf), ("ninf", -math.inf)):
        nan_lat = patch(e, "GPS", T.GPS_LAT, type=T.DOUBLE, data=doubles(e, value, 0.0, 0.0))
        out[f"lat_double_{name}.jpg"] = photo(nan_lat)
        out[f"alt_double_{name}.jpg"] = photo(
            patch(e, "GPS", T.GPS_ALT, type=T.DOUBLE, data=doubles(e, value))
        )
    # Times at the calendar's edges: no GPS stamp, so nothing to fall back to.
    for name, dto, offset in (
        ("year9999_minus5", "9999:12:31 23:59:59", "-05:00"),
        ("year0001_plus5", "0001:01:01 00:00:00", "+05:00"),
        ("year9999_hour24", "9999:12:31 24:00:00", "+00:00"),
        ("year1799", "1799:12:31 23:59:59", "+00:00"),
        ("month13", "2024:13:45 10:00:00", "+00:00"),
    ):
        out[f"time_{name}.jpg"] = photo(exif_with_time(dto, offset=offset, gps=False))
    bad_subsec = set_text(exif(T0, gps_time=False), "Exif", T.SUBSEC_TIME_ORIGINAL, "x")
    out["subsec_bad.jpg"] = photo(bad_subsec)
    return out


def fallback_photos() -> dict[str, bytes]:
    """Photos whose camera time is unusable but whose GPS stamp is good (they must be read,
    with the GPS time), and photos whose GPS stamp is nonsense but camera time good."""
    out: dict[str, bytes] = {}
    cam = {"make": "OtherCam"}  # a camera of their own: they never touch the healthy drive
    for i, (dto, offset) in enumerate(
        (("9999:12:31 23:59:59", "-05:00"), ("0001:01:01 00:00:00", "+05:00"),
         ("9999:12:31 24:00:00", "+00:00"), ("2024:13:45 10:00:00", "+00:00"))
    ):  # fmt: skip
        out[f"gpsfall_{i}.jpg"] = photo(exif_with_time(dto, offset=offset, **cam))
    e = exif(**cam)
    out["gps_date_0001.jpg"] = photo(set_text(e, "GPS", T.GPS_DATESTAMP, "0001:01:01"))
    out["gps_stamp_nan.jpg"] = photo(
        patch(e, "GPS", T.GPS_TIMESTAMP, type=T.DOUBLE, data=doubles(e, math.nan, 0.0, 0.0))
    )
    out["leap_second.jpg"] = photo(
        set_text(exif_with_time("2016:12:31 23:59:60", gps=False, **cam), "Exif", 0x9291, "99")
    )
    return out


# -- folders -----------------------------------------------------------------------------------

NON_UTF8 = b"\xff\xfe-first.jpg"
"""A file name that is not valid UTF-8; its photo is the first of its sequence."""


def write_corpus(folder: Path, *, healthy_count: int = 6) -> None:
    """A folder as a damaged card holds it: healthy photos (the first one under a name that
    is not UTF-8), every hostile photo, odd names, a looping link, a dangling link, a
    directory loop, a FIFO, a folder named like a photo and one named in no encoding."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [NON_UTF8] + [f"IMG_{i:04d}.jpg".encode() for i in range(1, healthy_count)]
    for i, name in enumerate(names):
        with open(os.path.join(os.fsencode(folder), name), "wb") as f:
            f.write(healthy(i))
    odd = ["-dash.jpg", "new\nline.jpg", "sp ace.JPG", "ü-ñ-日本.jpeg", "x" * 240 + ".jpg"]
    for k, name in enumerate(odd):
        (folder / name).write_bytes(healthy(healthy_count + k))
    for name, data in {**hostile_photos(), **fallback_photos()}.items():
        (folder / name).write_bytes(data)
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("nowhere.jpg", folder / "dangling.jpg")
    (folder / "dir.jpg").mkdir()
    os.mkfifo(folder / "fifo.jpg")
    sub = folder / os.fsdecode(b"sub-\xfe")  # a folder name that is not UTF-8 either
    sub.mkdir()
    os.symlink("..", sub / "up")
    os.symlink("../sub", sub / "self")
    (sub / "inner.jpg").write_bytes(healthy(healthy_count + len(odd)))


def track_points(n: int = 40) -> list[tuple[datetime, float, float]]:
    """Fixes every second along the healthy photos' drive (from 5 s before the first)."""
    start = T0 - timedelta(seconds=5)
    per_s = STEP_DEG / STEP_S
    return [(start + timedelta(seconds=s), LAT, LON + (s - 5) * per_s) for s in range(n)]


def gpx(rows: list[str]) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="hostile" xmlns="http://www.topografix.com/GPX/1/1">\n'
        "<trk><name>t</name><trkseg>\n" + "\n".join(rows) + "\n</trkseg></trk></gpx>\n"
    )


def trkpt(lat: object, lon: object, time: str, ele: object = 34.0) -> str:
    ele_xml = "" if ele is None else f"<ele>{ele}</ele>"
    return f'<trkpt lat="{lat}" lon="{lon}">{ele_xml}<time>{time}</time></trkpt>'


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def good_gpx(**ele: object) -> str:
    return gpx([trkpt(f"{la:.8f}", f"{lo:.8f}", iso(t), **ele) for t, la, lo in track_points()])


def nmea_sentence(body: str) -> str:
    x = 0
    for ch in body.encode():
        x ^= ch
    return f"${body}*{x:02X}"


def nmea_coord(value: float, lat: bool) -> tuple[str, str]:
    deg = int(abs(value))
    minutes = (abs(value) - deg) * 60
    text = f"{deg:02d}{minutes:07.4f}" if lat else f"{deg:03d}{minutes:07.4f}"
    hemi = ("N" if value >= 0 else "S") if lat else ("E" if value >= 0 else "W")
    return text, hemi


def good_nmea() -> list[str]:
    lines = []
    for t, la, lo in track_points():
        lat, ns = nmea_coord(la, True)
        lon, ew = nmea_coord(lo, False)
        hms, dmy = t.strftime("%H%M%S.00"), t.strftime("%d%m%y")
        lines.append(nmea_sentence(f"GPRMC,{hms},A,{lat},{ns},{lon},{ew},10.0,90.0,{dmy},,"))
        lines.append(nmea_sentence(f"GPGGA,{hms},{lat},{ns},{lon},{ew},1,08,0.9,34.0,M,,M,,"))
    return lines
