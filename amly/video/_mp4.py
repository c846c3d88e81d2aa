"""A streamed MP4 (ISO BMFF) reader: the box tree and the sample tables of each track.

Only headers are read while walking the top level, so a 20 GB ``mdat`` is skipped with one
seek. ``moov`` (a few MB even for hours of video) is read whole; sample data is read only
when a caller asks for a sample. Every inconsistency (a size past the end of its parent, a
sample table that names bytes beyond the file, a count that does not add up) raises
:class:`Mp4Error` naming the file, the box and what to do.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import FileError

#: Boxes whose payload is a list of boxes (and nothing else).
CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta"})
#: A moov larger than this is not a real one (24 h of 60 fps video needs ~30 MB).
MAX_MOOV = 512 * 1024 * 1024

#: Types an MP4/QuickTime file starts with.
_FIRST = frozenset(
    {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}
)
_HINT_CUT = "the file was cut off (interrupted copy or full card): copy it again from the camera"
_HINT_BAD = "the file is damaged or not an MP4: re-export it from the camera's app"


class Mp4Error(FileError):
    """The file is not a readable MP4 (truncated, damaged, or not MP4 at all)."""

    kind = "MapillaryInvalidVideoError"


@dataclass(frozen=True)
class Box:
    """One box: its type, where its header starts and how many bytes it spans."""

    type: bytes
    offset: int
    header: int
    size: int

    @property
    def start(self) -> int:
        """Offset of the payload."""
        return self.offset + self.header

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def name(self) -> str:
        return self.type.decode("latin-1")


def parse_boxes(buf: bytes | memoryview, base: int, path: str, where: str) -> list[Box]:
    """The boxes laid end to end in ``buf`` (whose first byte is at file offset ``base``).

    >>> [(b.name, b.offset, b.size) for b in parse_boxes(b"\\0\\0\\0\\x08free\\0\\0\\0\\x0cabcd1234", 0, "x", "top")]
    [('free', 0, 8), ('abcd', 8, 12)]
    >>> parse_boxes(b"\\0\\0\\0\\x20free", 0, "x.mp4", "moov")
    Traceback (most recent call last):
    ...
    amly.video._mp4.Mp4Error: x.mp4: box 'free' at offset 0 in moov declares 32 bytes but only 8 remain (the file is damaged or not an MP4: re-export it from the camera's app)
    """
    out: list[Box] = []
    pos, end = 0, len(buf)
    while pos + 8 <= end:
        size, typ = struct.unpack_from(">I4s", buf, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise Mp4Error(
                    path,
                    f"box {_n(typ)} at offset {base + pos} in {where} is cut short",
                    hint=_HINT_BAD,
                )
            (size,) = struct.unpack_from(">Q", buf, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            raise Mp4Error(
                path,
                f"box {_n(typ)} at offset {base + pos} in {where} has an impossible size {size}",
                hint=_HINT_BAD,
            )
        if pos + size > end:
            raise Mp4Error(
                path,
                f"box {_n(typ)} at offset {base + pos} in {where} declares {size} bytes "
                f"but only {end - pos} remain",
                hint=_HINT_BAD,
            )
        out.append(Box(typ, base + pos, header, size))
        pos += size
    return out


def _n(typ: bytes) -> str:
    return repr(typ.decode("latin-1"))


def top_boxes(f: BinaryIO, path: str, size: int) -> list[Box]:
    """The top-level boxes of an open file (headers only: ``mdat`` is skipped by a seek)."""
    out: list[Box] = []
    pos = 0
    while pos + 8 <= size:
        f.seek(pos)
        head = f.read(16)
        boxsize, typ = struct.unpack_from(">I4s", head, 0)
        header = 8
        if boxsize == 1:
            if len(head) < 16:
                raise Mp4Error(path, f"box {_n(typ)} at offset {pos} is cut short", hint=_HINT_CUT)
            (boxsize,) = struct.unpack_from(">Q", head, 8)
            header = 16
        elif boxsize == 0:
            boxsize = size - pos
        if boxsize < header:
            if not out:
                raise Mp4Error(
                    path, "not an MP4 file (no box structure at its start)", hint=_HINT_BAD
                )
            raise Mp4Error(
                path,
                f"box {_n(typ)} at offset {pos} has an impossible size {boxsize}",
                hint=_HINT_BAD,
            )
        if not out and typ not in _FIRST:
            raise Mp4Error(path, "not an MP4 file (no box structure at its start)", hint=_HINT_BAD)
        if pos + boxsize > size:
            raise Mp4Error(
                path,
                f"truncated MP4: box {_n(typ)} at offset {pos} declares {boxsize} bytes but "
                f"the file ends after {size}",
                hint=_HINT_CUT,
            )
        out.append(Box(typ, pos, header, boxsize))
        pos += boxsize
    return out


@dataclass
class Sample:
    """One sample of a track: where its bytes are and when it is decoded/presented."""

    index: int
    offset: int
    size: int
    dts: int  # in the track's timescale
    duration: int
    cts: int  # presentation time: dts + composition offset
    description: int  # 1-based stsd entry


@dataclass
class Track:
    """One ``trak``: its header values and sample tables (compact arrays)."""

    path: str
    box: Box
    track_id: int = 0
    handler: bytes = b""
    timescale: int = 0
    duration: int = 0
    width: float = 0.0
    height: float = 0.0
    formats: list[bytes] = field(default_factory=list)
    entries: list[bytes] = field(default_factory=list)  # raw stsd entry payloads (after header)
    sizes: array = field(default_factory=lambda: array("I"))
    stts: list[tuple[int, int]] = field(default_factory=list)
    ctts: list[tuple[int, int]] = field(default_factory=list)
    stsc: list[tuple[int, int, int]] = field(default_factory=list)
    chunk_offsets: array = field(default_factory=lambda: array("Q"))
    elst: list[tuple[int, int]] = field(default_factory=list)  # (segment_duration, media_time)
    stbl: Box | None = None
    file_size: int = 0  # bounds what the tables may claim (a lying count never allocates)

    @property
    def name(self) -> str:
        return f"track {self.track_id} ({self.handler.decode('latin-1')})"

    def chunks(self) -> Iterator[tuple[int, int, int, int]]:
        """``(chunk index, file offset, first sample index, sample count)`` for each chunk."""
        n_chunks = len(self.chunk_offsets)
        sample = 0
        total = len(self.sizes)
        for i, (first, per_chunk, _desc) in enumerate(self.stsc):
            last = self.stsc[i + 1][0] - 1 if i + 1 < len(self.stsc) else n_chunks
            for c in range(first - 1, min(last, n_chunks)):
                if sample >= total:
                    return
                count = min(per_chunk, total - sample)
                yield c, self.chunk_offsets[c], sample, count
                sample += count
        if sample < total:
            raise Mp4Error(
                self.path,
                f"{self.name}: the chunk tables (stsc/stco) hold {sample} of its {total} samples",
                hint=_HINT_BAD,
            )

    def samples(self) -> Iterator[Sample]:
        """Every sample in decoding order with its offset, size and times."""
        deltas = _expand(self.stts)
        comps = _expand(self.ctts)
        desc_of_chunk = self._descriptions()
        dts = 0
        sizes = self.sizes
        for c, off, first, count in self.chunks():
            desc = desc_of_chunk(c)
            for i in range(first, first + count):
                d = next(deltas, 0)
                ct = next(comps, 0)
                if ct >= 1 << 31:  # some encoders write signed offsets in a version-0 ctts
                    ct -= 1 << 32
                size = sizes[i]
                yield Sample(i, off, size, dts, d, dts + ct, desc)
                off += size
                dts += d

    def read_samples(self, f: BinaryIO, fmt: bytes) -> Iterator[tuple[Sample, bytes]]:
        """Each sample whose description is ``fmt``, with its bytes: one read per chunk
        (telemetry chunks are small), so a track of many tiny samples costs few syscalls."""
        want = {i + 1 for i, x in enumerate(self.formats) if x == fmt}
        pending: list[Sample] = []

        def flush() -> Iterator[tuple[Sample, bytes]]:
            start = pending[0].offset
            end = pending[-1].offset + pending[-1].size
            if end - start > 8 << 20:
                for s in pending:
                    f.seek(s.offset)
                    yield s, f.read(s.size)
            else:
                f.seek(start)
                buf = f.read(end - start)
                for s in pending:
                    yield s, buf[s.offset - start : s.offset - start + s.size]
            pending.clear()

        for s in self.samples():
            if s.description not in want:
                continue
            if pending and s.offset != pending[-1].offset + pending[-1].size:
                yield from flush()
            pending.append(s)
        if pending:
            yield from flush()

    def _descriptions(self) -> Callable[[int], int]:
        starts = [(first - 1, desc) for first, _p, desc in self.stsc]

        def of(chunk: int) -> int:
            d = 1
            for s, desc in starts:
                if s <= chunk:
                    d = desc
                else:
                    break
            return d

        return of

    def check_offsets(self, file_size: int) -> None:
        """Raise if any chunk's bytes lie beyond the end of the file (a lying moov)."""
        sizes = self.sizes
        for _c, off, first, count in self.chunks():
            end = off + sum(sizes[first : first + count])
            if end > file_size:
                raise Mp4Error(
                    self.path,
                    f"{self.name}: sample {first + 1} lies at bytes {off}-{end} but the file "
                    f"has only {file_size} (the moov points past the data)",
                    hint=_HINT_CUT,
                )


def _expand(runs: list[tuple[int, int]]) -> Iterator[int]:
    for count, value in runs:
        for _ in range(count):
            yield value


@dataclass
class Movie:
    """The parsed ``moov`` of a file plus where its top-level boxes are."""

    path: str
    file_size: int
    top: list[Box]
    moov: Box
    moov_data: bytes
    timescale: int = 0
    duration: int = 0
    creation_time: int = (
        0  # seconds since 1904-01-01 UTC, as written (cameras often write local time)
    )
    next_track_id: int = 0
    mvhd: Box | None = None
    tracks: list[Track] = field(default_factory=list)
    udta: list[tuple[bytes, bytes]] = field(default_factory=list)  # (type, payload)

    def payload(self, box: Box) -> memoryview:
        """The payload of a box inside ``moov``."""
        base = self.moov.offset
        return memoryview(self.moov_data)[box.start - base : box.end - base]

    def box_bytes(self, box: Box) -> memoryview:
        base = self.moov.offset
        return memoryview(self.moov_data)[box.offset - base : box.end - base]

    def children(self, box: Box) -> list[Box]:
        return parse_boxes(self.payload(box), box.start, self.path, box.name)


def open_movie(f: BinaryIO, path: str) -> Movie:
    """Read the top level and the ``moov`` of an open file."""
    size = os.fstat(f.fileno()).st_size if hasattr(f, "fileno") else _seek_size(f)
    if size == 0:
        raise Mp4Error(path, "empty file (0 bytes)", hint="copy the video again from the camera")
    top = top_boxes(f, path, size)
    moovs = [b for b in top if b.type == b"moov"]
    if not moovs:
        kinds = ", ".join(b.name for b in top[:8]) or "none"
        raise Mp4Error(
            path,
            f"no 'moov' box (top-level boxes: {kinds}): the recording was not finalized",
            hint="the camera stopped before closing the file; repair it (e.g. with the "
            "camera maker's tool) or re-export it",
        )
    moov = moovs[0]
    if moov.size > MAX_MOOV:
        raise Mp4Error(path, f"the 'moov' box declares {moov.size} bytes", hint=_HINT_BAD)
    f.seek(moov.offset)
    data = f.read(moov.size)
    if len(data) != moov.size:
        raise Mp4Error(path, "truncated MP4: the 'moov' box is cut short", hint=_HINT_CUT)
    movie = Movie(path, size, top, moov, data)
    _parse_moov(movie)
    return movie


def _seek_size(f: BinaryIO) -> int:
    f.seek(0, os.SEEK_END)
    return f.tell()


def _parse_moov(m: Movie) -> None:
    for box in m.children(m.moov):
        if box.type == b"mvhd":
            m.mvhd = box
            p = m.payload(box)
            if len(p) >= 100 and p[0] == 1:
                m.creation_time, _mt, m.timescale, m.duration = struct.unpack_from(">QQIQ", p, 4)
            elif len(p) >= 96:
                m.creation_time, _mt, m.timescale, m.duration = struct.unpack_from(">IIII", p, 4)
            else:
                raise Mp4Error(m.path, "the 'mvhd' box is too short", hint=_HINT_BAD)
            (m.next_track_id,) = struct.unpack_from(">I", p, len(p) - 4)
        elif box.type == b"trak":
            m.tracks.append(_parse_trak(m, box))
        elif box.type == b"udta":
            for child in _lenient_children(m, box):
                m.udta.append((child.type, bytes(m.payload(child))))
    if m.mvhd is None:
        raise Mp4Error(m.path, "the 'moov' box has no 'mvhd'", hint=_HINT_BAD)


def _lenient_children(m: Movie, box: Box) -> list[Box]:
    try:
        return m.children(box)
    except Mp4Error:
        return []  # udta holds vendor data that is not always boxes; it is optional


def _parse_trak(m: Movie, trak: Box) -> Track:
    t = Track(m.path, trak, file_size=m.file_size)
    stack = [trak]
    while stack:
        parent = stack.pop()
        for box in m.children(parent):
            typ = box.type
            if typ in (b"mdia", b"minf", b"stbl", b"edts"):
                if typ == b"stbl":
                    t.stbl = box
                stack.append(box)
                continue
            p = m.payload(box)
            try:
                _parse_leaf(t, typ, p)
            except struct.error:
                raise Mp4Error(
                    m.path,
                    f"the '{box.name}' box of track {t.track_id or '?'} is cut short",
                    hint=_HINT_BAD,
                ) from None
    if t.stbl is None:
        raise Mp4Error(m.path, f"{t.name} has no sample table (stbl)", hint=_HINT_BAD)
    if t.timescale <= 0:
        raise Mp4Error(m.path, f"{t.name} has no valid timescale (mdhd)", hint=_HINT_BAD)
    n = len(t.sizes)
    timed = sum(c for c, _ in t.stts)
    if n and timed < n:
        # tolerated as the official tool does (missing deltas count as 0)
        pass
    return t


def _parse_leaf(t: Track, typ: bytes, p: memoryview) -> None:
    if typ == b"tkhd":
        if p[0] == 1:
            (t.track_id,) = struct.unpack_from(">I", p, 20)
            w, h = struct.unpack_from(">II", p, 88)
        else:
            (t.track_id,) = struct.unpack_from(">I", p, 12)
            w, h = struct.unpack_from(">II", p, 76)
        t.width, t.height = w / 65536, h / 65536
    elif typ == b"mdhd":
        if p[0] == 1:
            t.timescale, t.duration = struct.unpack_from(">IQ", p, 20)
        else:
            t.timescale, t.duration = struct.unpack_from(">II", p, 12)
    elif typ == b"hdlr":
        t.handler = bytes(p[8:12])
    elif typ == b"stsd":
        (count,) = struct.unpack_from(">I", p, 4)
        pos = 8
        for _ in range(count):
            size, fmt = struct.unpack_from(">I4s", p, pos)
            if size < 8 or pos + size > len(p):
                raise struct.error("stsd entry")
            t.formats.append(fmt)
            t.entries.append(bytes(p[pos + 8 : pos + size]))
            pos += size
    elif typ == b"stts":
        t.stts = _pairs(p)
    elif typ == b"ctts":
        t.ctts = _pairs(p)
    elif typ == b"stsc":
        (count,) = struct.unpack_from(">I", p, 4)
        t.stsc = [struct.unpack_from(">III", p, 8 + 12 * i) for i in range(count)]
    elif typ == b"stsz":
        size, count = struct.unpack_from(">II", p, 4)
        if size:
            if size * count > t.file_size:
                raise struct.error("stsz claims more bytes than the file has")
            t.sizes = array("I", [size]) * count
        else:
            t.sizes = _be_array(p, 12, count, 4)
    elif typ == b"stz2":
        (field_size, count) = struct.unpack_from(">xxxB I", p, 4)
        if field_size == 16:
            t.sizes = array("I", _be_array(p, 12, count, 2))
        elif field_size == 8:
            t.sizes = array("I", bytes(p[12 : 12 + count]))
            if len(t.sizes) < count:
                raise struct.error("stz2")
        elif field_size == 4:
            raw = bytes(p[12 : 12 + (count + 1) // 2])
            vals = [v for b in raw for v in (b >> 4, b & 15)][:count]
            if len(vals) < count:
                raise struct.error("stz2")
            t.sizes = array("I", vals)
        else:
            raise struct.error("stz2 field size")
    elif typ == b"stco":
        (count,) = struct.unpack_from(">I", p, 4)
        t.chunk_offsets = array("Q", _be_array(p, 8, count, 4))
    elif typ == b"co64":
        (count,) = struct.unpack_from(">I", p, 4)
        t.chunk_offsets = _be_array(p, 8, count, 8)
    elif typ == b"elst":
        version = p[0]
        (count,) = struct.unpack_from(">I", p, 4)
        fmt, step = (">Qq", 20) if version == 1 else (">Ii", 12)
        t.elst = [struct.unpack_from(fmt, p, 8 + step * i) for i in range(count)]


def _pairs(p: memoryview) -> list[tuple[int, int]]:
    (count,) = struct.unpack_from(">I", p, 4)
    flat = _be_array(p, 8, count * 2, 4)
    return list(zip(flat[0::2], flat[1::2], strict=False))


_CODES = {2: "H", 4: "I", 8: "Q"}


def _be_array(p: memoryview, pos: int, count: int, width: int) -> array:
    """``count`` big-endian unsigned integers of ``width`` bytes from ``p[pos:]``."""
    raw = bytes(p[pos : pos + count * width])
    if len(raw) < count * width:
        raise struct.error("table")
    a = array(_CODES[width])
    a.frombytes(raw)
    if sys.byteorder == "little":
        a.byteswap()
    return a


def read_sample(f: BinaryIO, s: Sample) -> bytes:
    f.seek(s.offset)
    return f.read(s.size)
