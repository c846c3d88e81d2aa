"""JPEG segment structure: walk the markers from SOI to SOS, find the EXIF APP1 segment.

Pure functions over bytes. The reader hands in only the first bytes of a file (the header),
so the walker reports "need more bytes" instead of failing when the header runs past the
buffer; the writer hands in the whole file. Every step advances by at least two bytes, so a
malicious file cannot make the walk loop.
"""

from __future__ import annotations

from typing import NamedTuple

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
EXIF_PREFIX = b"Exif\x00"
"""APP1 EXIF payloads start with ``Exif\\0\\0`` (a few writers put ``Exif\\0\\xff``)."""
APP0, APP1, SOS = 0xE0, 0xE1, 0xDA
#: Start-of-frame markers (baseline, progressive, lossless, arithmetic...): not DHT/JPG/DAC.
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE})
#: Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})

_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF/RAW image"),
    (b"MM\x00*", "a TIFF/RAW image"),
    (b"RIFF", "a RIFF file (WebP, AVI or WAV)"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
)


class JpegError(ValueError):
    """The bytes are not a well-formed JPEG; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class NeedMore(Exception):
    """The header continues past the buffer: read at least ``upto`` bytes and walk again."""

    def __init__(self, upto: int) -> None:
        super().__init__(upto)
        self.upto = upto


class Segment(NamedTuple):
    """One marker segment: ``buf[start:end]`` is the whole segment, ``buf[data:end]`` its
    payload (after the two length bytes)."""

    marker: int
    start: int
    data: int
    end: int


class Layout(NamedTuple):
    """The header of a JPEG: its segments up to and including SOS."""

    segments: list[Segment]
    exif: Segment | None
    """The first APP1 segment whose payload starts with ``Exif\\0``."""
    sof: Segment | None
    sos: int
    """Offset of the SOS marker: scan data (and the rest of the file) starts here."""


def describe_non_jpeg(head: bytes) -> str:
    """What a file that is not a JPEG probably is, from its first bytes.

    >>> describe_non_jpeg(b"\\x89PNG\\r\\n")
    'it looks like a PNG image'
    >>> describe_non_jpeg(b"\\x00\\x00\\x00\\x18ftypheic")
    'it looks like a HEIC/MP4 file'
    >>> describe_non_jpeg(b"hello")
    "it starts with 68 65 6c 6c 6f ('hello')"
    """
    for sig, what in _SIGNATURES:
        if head.startswith(sig):
            return f"it looks like {what}"
    if head[4:8] == b"ftyp":
        return "it looks like a HEIC/MP4 file"
    first = head[:8]
    text = first.decode("ascii", "replace")
    shown = f" ({text!r})" if text.isprintable() else ""
    return f"it starts with {first.hex(' ')}{shown}"


def walk(buf: bytes, complete: bool) -> Layout:
    """Segments of the JPEG in ``buf`` from SOI to SOS.

    ``complete`` says ``buf`` is the whole file: then running out of bytes means the file is
    truncated; otherwise :class:`NeedMore` asks for a longer buffer.

    >>> jpeg = SOI + b"\\xff\\xe1\\x00\\x08Exif\\x00\\x00" + b"\\xff\\xda\\x00\\x02" + EOI
    >>> lay = walk(jpeg, True)
    >>> [hex(s.marker) for s in lay.segments], lay.exif.data, lay.sos
    (['0xe1', '0xda'], 6, 12)
    """
    n = len(buf)
    if n < 2 or buf[:2] != SOI:
        raise JpegError(
            f"not a JPEG file ({describe_non_jpeg(buf[:12])})",
            "amly reads JPEG photos only: convert the file or move it out of the folder",
        )
    segments: list[Segment] = []
    exif = sof = None
    pos = 2
    while True:
        if pos + 4 > n:
            _short(pos + 4, n, complete)
        if buf[pos] != 0xFF:
            raise JpegError(
                f"corrupt JPEG structure: expected a marker at byte {pos}, found 0x{buf[pos]:02x}",
                "the file is damaged: copy it again from the camera, or leave it out",
            )
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:
            raise JpegError(
                "corrupt JPEG: end-of-image marker before any image data",
                "the file holds no picture: leave it out",
            )
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if length < 2:
            raise JpegError(
                f"corrupt JPEG structure: segment 0x{marker:02x} at byte {pos} has length {length}",
                "the file is damaged: copy it again from the camera, or leave it out",
            )
        seg = Segment(marker, pos, pos + 4, pos + 2 + length)
        segments.append(seg)
        if marker == SOS:
            return Layout(segments, exif, sof, pos)
        if marker == APP1 and exif is None:
            if seg.data + 6 > n:
                _short(seg.data + 6, n, complete)
            if buf[seg.data : seg.data + 5] == EXIF_PREFIX:
                exif = seg
        elif marker in SOF_MARKERS and sof is None:
            if seg.data + 5 > n:
                _short(seg.data + 5, n, complete)
            sof = seg
        pos = seg.end


def _short(upto: int, n: int, complete: bool) -> None:
    if not complete:
        raise NeedMore(upto)
    raise JpegError(
        f"truncated JPEG: the file ends after {n} bytes, inside its header",
        "the file was cut off (interrupted copy or full card): copy it again from the camera",
    )


def sof_size(buf: bytes, sof: Segment) -> tuple[int, int]:
    """``(width, height)`` from a start-of-frame segment.

    >>> sof_size(b"\\xff\\xc0\\x00\\x11\\x08\\x04\\x38\\x07\\x80", Segment(0xC0, 0, 4, 19))
    (1920, 1080)
    """
    d = sof.data
    return (buf[d + 3] << 8) | buf[d + 4], (buf[d + 1] << 8) | buf[d + 2]


def exif_insert_position(buf: bytes, layout: Layout) -> int:
    """Where a new EXIF APP1 segment goes: right after SOI and any APP0 (JFIF/JFXX) segments
    that directly follow it, as the EXIF and JFIF specs both expect.

    >>> jfif = SOI + b"\\xff\\xe0\\x00\\x04ab" + b"\\xff\\xda\\x00\\x02" + EOI
    >>> exif_insert_position(jfif, walk(jfif, True))
    8
    """
    pos = 2
    for seg in layout.segments:
        if seg.marker != APP0 or seg.start != pos:
            break
        pos = seg.end
    return pos


def segment(marker: int, payload: bytes) -> bytes:
    """A marker segment with its length field (payload must be at most 65533 bytes).

    >>> segment(0xFE, b"hi")
    b'\\xff\\xfe\\x00\\x04hi'
    """
    if len(payload) > 0xFFFD:
        raise ValueError(f"segment payload of {len(payload)} bytes exceeds 65533")
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload
