"""Builders of GoPro (GPMF GPS5/GPS9), CAMM and BlackVue MP4s for tests and benchmarks.

The video track is either copied from a real video (``base``: e.g. a clip encoded with
PyAV, so frames decode) or generated (``fake_video``: filler frames of a chosen size, any
length, written by streaming: multi-GB files cost no memory). The telemetry is laid out
as each camera does it; the tests check these files against the real samples and against
mapillary_tools' own parsers.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from datetime import datetime, timezone

from ._mp4 import open_movie
from ._points import TrackPoint
from ._write import (
    OutTrack,
    _ftyp,
    box,
    camm_track,
    copied_track,
    full,
    mux,
    new_track,
)

_EPOCH_2000 = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
_1904 = 2082844800  # seconds from 1904-01-01 to 1970-01-01


def straight_track(
    seconds: float,
    hz: float = 10.0,
    *,
    lat: float = 52.52,
    lon: float = 13.405,
    speed: float = 10.0,
    bearing: float = 45.0,
    epoch: float = 1_700_000_000.0,
    alt: float = 34.0,
) -> list[TrackPoint]:
    """Points along a straight line at ``speed`` m/s, ``hz`` per second, from video time 0."""
    n = max(1, int(seconds * hz))
    out = []
    for i in range(n):
        t = i / hz
        d = speed * t
        dlat = d * math.cos(math.radians(bearing)) / 111_195.0
        dlon = d * math.sin(math.radians(bearing)) / (111_195.0 * math.cos(math.radians(lat)))
        out.append(TrackPoint(t, lat + dlat, lon + dlon, alt + 0.1 * i, epoch + t, 3, 150.0, speed))
    return out


# -- GPMF -------------------------------------------------------------------------------------


def klv(key: bytes, typ: bytes, size: int, repeat: int, data: bytes) -> bytes:
    pad = (-len(data)) % 4
    return struct.pack(">4scBH", key, typ, size, repeat) + data + b"\0" * pad


def nest(key: bytes, *children: bytes) -> bytes:
    data = b"".join(children)
    return struct.pack(">4scBH", key, b"\0", 4, len(data) // 4) + data


def _text(key: bytes, s: str) -> bytes:
    b = s.encode()
    return klv(key, b"c", len(b), 1, b)


def gpmf_payload(
    points: list[TrackPoint],
    *,
    model: str = "HERO9 Black",
    gps9: bool = False,
    gps5: bool = True,
    fix: int = 3,
    dop100: int = 150,
    extra_device: bool = False,
) -> bytes:
    """One second of GPMF as a GoPro writes it: DEVC(DVID, DVNM, STRM(GPS5), STRM(GPS9))."""
    streams = []
    if gps5 and points:
        scal = klv(b"SCAL", b"l", 4, 5, struct.pack(">5i", 10_000_000, 10_000_000, 1000, 1000, 100))
        epoch = points[0].epoch or 0.0
        gpsu = datetime.fromtimestamp(epoch, timezone.utc).strftime("%y%m%d%H%M%S.%f")[:16]
        rows = b"".join(
            struct.pack(
                ">5i",
                round(p.lat * 1e7),
                round(p.lon * 1e7),
                round((p.alt or 0) * 1000),
                round((p.speed or 0) * 1000),
                round((p.speed or 0) * 100),
            )
            for p in points
        )
        streams.append(
            nest(
                b"STRM",
                _text(b"STNM", "GPS (Lat., Long., Alt., 2D speed, 3D speed)"),
                klv(b"GPSF", b"L", 4, 1, struct.pack(">I", fix)),
                klv(b"GPSU", b"U", 16, 1, gpsu.encode()),
                klv(b"GPSP", b"S", 2, 1, struct.pack(">H", dop100)),
                klv(b"UNIT", b"c", 3, 5, b"degdegm\0\0m/sm/s"),
                scal,
                klv(b"GPSA", b"F", 4, 1, b"MSLV"),
                klv(b"GPS5", b"l", 20, len(points), rows),
            )
        )
    if gps9 and points:
        scal = klv(
            b"SCAL",
            b"l",
            4,
            9,
            struct.pack(">9i", 10_000_000, 10_000_000, 1000, 1000, 100, 1, 1000, 100, 1),
        )
        rows = b""
        for p in points:
            e = (p.epoch or 0.0) - _EPOCH_2000
            days = int(e // 86400)
            secs = e - days * 86400
            rows += struct.pack(
                ">7i2H",
                round(p.lat * 1e7),
                round(p.lon * 1e7),
                round((p.alt or 0) * 1000),
                round((p.speed or 0) * 1000),
                round((p.speed or 0) * 100),
                days,
                round(secs * 1000),
                int(p.precision if p.precision is not None else dop100),
                p.fix if p.fix is not None else fix,
            )
        streams.append(
            nest(
                b"STRM",
                _text(b"STNM", "GPS (Lat., Long., Alt., 2D, 3D, days, secs, DOP, fix)"),
                klv(b"TYPE", b"c", 9, 1, b"lllllllSS"),
                scal,
                klv(b"GPSA", b"F", 4, 1, b"MSLV"),
                klv(b"GPS9", b"?", 32, len(points), rows),
            )
        )
    dev = nest(
        b"DEVC", klv(b"DVID", b"L", 4, 1, struct.pack(">I", 1)), _text(b"DVNM", model), *streams
    )
    if extra_device:
        dev = (
            nest(
                b"DEVC",
                klv(b"DVID", b"L", 4, 1, struct.pack(">I", 2)),
                _text(b"DVNM", "GoPro Smart Remote"),
            )
            + dev
        )
    return dev


# -- files ------------------------------------------------------------------------------------


@dataclass
class Base:
    """The video part of a built file: copied from ``path``, or generated."""

    path: str | None = None
    seconds: float = 10.0
    fps: int = 30
    frame_size: int = 2000
    width: int = 1920
    height: int = 1080
    spherical: bool = False
    video_tracks: int = 1  # GoPro MAX .360: two (the two EAC halves)


def _mvhd(timescale: int, duration: int, next_id: int, creation: float) -> bytes:
    c = int(creation) + _1904
    return full(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH10x", c, c, timescale, duration, 0x10000, 0x100),
        struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000),
        b"\0" * 24,
        struct.pack(">I", next_id),
    )


def fake_video(
    seconds: float, fps: int, frame_size: int, width: int, height: int, track_id: int = 1
) -> OutTrack:
    """A 'vide' track of filler frames (one chunk per second): sizes and times are real,
    pixels are not (for telemetry and upload work, not decoding)."""
    n = max(1, int(seconds * fps))
    entry = box(
        b"avc1",
        b"\0" * 6,
        struct.pack(">H", 1),
        b"\0" * 16,
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x480000, 0x480000),
        b"\0" * 4,
        struct.pack(">H", 1),
        b"\0" * 32,
        struct.pack(">Hh", 24, -1),
    )
    vmhd = full(b"vmhd", 0, 1, b"\0" * 8)
    return new_track(
        track_id,
        b"vide",
        "VideoHandler",
        entry,
        fps * 1000,
        [frame_size] * n,
        [1000] * n,
        per_chunk=fps,
        media_header=vmhd,
        width=width,
        height=height,
        filler=True,
    )


def encode_clip(
    path: str | os.PathLike[str],
    seconds: float = 4.0,
    fps: int = 10,
    width: int = 64,
    height: int = 32,
) -> str:
    """A real H.264 clip (PyAV) whose frames differ, to be the ``base`` of built files."""
    import av
    from PIL import Image, ImageDraw

    with av.open(os.fspath(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(int(seconds * fps)):
            img = Image.new("RGB", (width, height), ((i * 7) % 256, 0, 0))
            ImageDraw.Draw(img).rectangle((0, 0, i % width, height), fill=((i * 7) % 256, 255, 0))
            for pkt in s.encode(av.VideoFrame.from_image(img)):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return os.fspath(path)


#: Spherical Video V1: a ``uuid`` box in the video ``trak`` (what 360 cameras write).
SPHERICAL_UUID = bytes.fromhex("ffcc8263f8554a938814587a02521fdd")
_SPHERICAL_XML = (
    b'<?xml version="1.0"?><rdf:SphericalVideo xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
    b'xmlns:GSpherical="http://ns.google.com/videos/1.0/spherical/"><GSpherical:Spherical>true'
    b"</GSpherical:Spherical><GSpherical:Stitched>true</GSpherical:Stitched>"
    b"<GSpherical:ProjectionType>equirectangular</GSpherical:ProjectionType></rdf:SphericalVideo>"
)


def _spherical(t: OutTrack) -> OutTrack:
    inner = t.build

    def build(offsets: list[int]) -> bytes:
        trak = inner(offsets)
        extra = box(b"uuid", SPHERICAL_UUID, _SPHERICAL_XML)
        return struct.pack(">I", struct.unpack(">I", trak[:4])[0] + len(extra)) + trak[4:] + extra

    return OutTrack(t.chunks, build, t.order)


def _assemble(
    dst: str | os.PathLike[str],
    base: Base,
    extra: list[OutTrack],
    *,
    udta: list[tuple[bytes, bytes]] | None = None,
    top: list[bytes] | None = None,
    creation: float = 1_700_000_000.0,
) -> int:
    if base.path:
        with open(base.path, "rb") as f:
            m = open_movie(f, base.path)
            ftyp = _ftyp(f, m)
        vids = [copied_track(m, t) for t in m.tracks if t.handler == b"vide"]
        ts, dur = m.timescale, m.duration
        source: str | None = base.path
    else:
        ftyp = box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
        vids = [
            fake_video(base.seconds, base.fps, base.frame_size, base.width, base.height, i + 1)
            for i in range(base.video_tracks)
        ]
        ts, dur = 1000, int(base.seconds * 1000)
        source = None
    if base.spherical:
        vids = [_spherical(v) for v in vids]
    tracks = vids + extra
    layout = mux(
        source, ftyp, _mvhd(ts, dur, len(tracks) + 1, creation), tracks, udta=udta, top=top
    )
    layout.write(dst)
    return layout.size


def _ids(base: Base) -> int:
    if base.path:
        with open(base.path, "rb") as f:
            return len([t for t in open_movie(f, base.path).tracks if t.handler == b"vide"]) + 1
    return base.video_tracks + 1


def build_gopro(
    dst: str | os.PathLike[str],
    points: list[TrackPoint],
    *,
    base: Base | None = None,
    model: str = "HERO9 Black",
    gps9: bool = False,
    gps5: bool = True,
    payloads: list[bytes] | None = None,
    extra_device: bool = False,
    udta_gpmf: bytes | None = None,
) -> int:
    """A GoPro MP4: a ``gpmd`` track (handler ``meta``) of one GPMF payload per second."""
    base = base or Base(seconds=max(1.0, math.ceil(points[-1].time + 1e-9) if points else 1.0))
    if payloads is None:
        seconds = max(1, math.ceil(base.seconds))
        payloads = [
            gpmf_payload(
                [p for p in points if s <= p.time < s + 1],
                model=model,
                gps9=gps9,
                gps5=gps5,
                extra_device=extra_device,
            )
            for s in range(seconds)
        ]
    entry = box(b"gpmd", b"\0" * 6, struct.pack(">H", 1), b"\0" * 4)
    gpmd = new_track(
        _ids(base),
        b"meta",
        "GoPro MET",
        entry,
        1000,
        list(payloads),
        [1000] * len(payloads),
        per_chunk=1,
        media_header=full(b"nmhd", 0, 0),
    )
    udta = [(b"FIRM", b"HD9.01.01.60.00")]
    if udta_gpmf is not None:  # the camera's global settings (MINF: the model), as GoPros write
        udta.append((b"GPMF", udta_gpmf))
    return _assemble(dst, base, [gpmd], udta=udta)


def build_camm(
    dst: str | os.PathLike[str],
    points: list[TrackPoint],
    *,
    base: Base | None = None,
    make: str = "",
    model: str = "",
    style: str = "@",
    other_types: bool = False,
) -> int:
    """A CAMM MP4 (type 6 with GPS time, else 5); make/model as ``@mak``/``@mod`` (``style``
    '@', RICOH THETA) or ``\\xa9mak``/``\\xa9mod`` ('©', Insta360). ``other_types``: after
    each position sample, one sample of each of types 0-4 and 7 (motion, exposure...)."""
    base = base or Base(seconds=max(1.0, points[-1].time + 1) if points else 1.0)
    track = _camm_mixed(points, _ids(base)) if other_types else camm_track(points, _ids(base), 1000)
    udta: list[tuple[bytes, bytes]] = []
    for key, v in (("mak", make), ("mod", model)):
        if v:
            if style == "@":
                udta.append((b"@" + key.encode(), v.encode()))
            else:
                b = v.encode()
                udta.append((b"\xa9" + key.encode(), struct.pack(">HH", len(b), 0x15C7) + b))
    return _assemble(dst, base, [track], udta=udta)


def _camm_mixed(points: list[TrackPoint], track_id: int) -> OutTrack:
    from ._camm import FORMATS, gps5, gps6

    samples: list[bytes | int] = []
    deltas: list[int] = []
    others = [0, 1, 2, 3, 4, 7]
    for i, p in enumerate(points):
        nxt = points[i + 1].time if i + 1 < len(points) else p.time + 0.1
        span = max(1, round((nxt - p.time) * 1000))
        step = span // (len(others) + 1)
        samples.append(gps6(p, p.epoch) if p.epoch else gps5(p))
        deltas.append(step)
        for k, typ in enumerate(others):
            vals = (1000, 200) if typ == 1 else (0.1, 0.2, 0.3)
            samples.append(struct.pack("<HH", 0, typ) + struct.pack(FORMATS[typ], *vals))
            deltas.append(span - step * (len(others)) if k == len(others) - 1 else step)
    entry = box(b"camm", b"\0" * 6, struct.pack(">H", 1))
    return new_track(track_id, b"camm", "CameraMetadataMotionHandler", entry, 1000, samples, deltas)


def nmea_lines(
    points: list[TrackPoint], *, camera_offset: float = 3600.0, kinds: str = "RMC,GGA"
) -> bytes:
    """BlackVue's ``gps `` payload: ``[camera ms]$GPRMC...`` lines; the camera clock runs
    ``camera_offset`` seconds off UTC (local time labelled UTC)."""
    out = []
    for p in points:
        epoch = p.epoch or 0.0
        dt = datetime.fromtimestamp(epoch, timezone.utc)
        tod = dt.strftime("%H%M%S.") + f"{dt.microsecond // 10000:02d}"
        lat = f"{int(abs(p.lat)):02d}{(abs(p.lat) % 1) * 60:08.5f},{'N' if p.lat >= 0 else 'S'}"
        lon = f"{int(abs(p.lon)):03d}{(abs(p.lon) % 1) * 60:08.5f},{'E' if p.lon >= 0 else 'W'}"
        ms = round((epoch + camera_offset) * 1000)
        for kind in kinds.split(","):
            if kind == "RMC":
                body = f"GPRMC,{tod},A,{lat},{lon},{(p.speed or 0) / 0.514444:.3f},,{dt.strftime('%d%m%y')},,,A"
            elif kind == "GGA":
                body = f"GPGGA,{tod},{lat},{lon},1,08,0.9,{p.alt or 0:.1f},M,0.0,M,,"
            else:
                body = f"GPGLL,{lat},{lon},{tod},A,A"
            cs = 0
            for ch in body:
                cs ^= ord(ch)
            out.append(f"[{ms}]${body}*{cs:02X}\n".encode())
    return b"".join(out)


def build_blackvue(
    dst: str | os.PathLike[str],
    points: list[TrackPoint],
    *,
    base: Base | None = None,
    model: str = "DR900X Plus",
    empty_free_first: bool = False,
    camera_offset: float = 3600.0,
    kinds: str = "RMC,GGA",
) -> int:
    """A BlackVue MP4: a top-level ``free`` box holding ``gps `` (NMEA) and ``cprt`` (model);
    ``empty_free_first`` puts an empty ``free`` before it, as editing tools do."""
    base = base or Base(seconds=max(1.0, points[-1].time + 1) if points else 1.0)
    cprt = b' {"model":"' + model.encode() + b'","ver":0.918,"lang":"English","GPS":1}'
    top = [
        box(
            b"free",
            box(b"gps ", nmea_lines(points, camera_offset=camera_offset, kinds=kinds)),
            box(b"cprt", cprt),
        )
    ]
    if empty_free_first:
        top.insert(0, box(b"free"))
    return _assemble(
        dst, base, [], top=top, creation=(points[0].epoch or 0) + camera_offset if points else 0
    )
