"""JPEG fixtures for the metadata tests: files with every kind of segment around the EXIF.

``rich_jpeg`` builds SOI, JFIF APP0, EXIF APP1 (with a Canon-style MakerNote whose value
offsets point into the EXIF block), XMP APP1, ICC APP2, an APP13, a COM segment, then the
image data, so the tests can prove that only the EXIF segment changes.
"""

from __future__ import annotations

import struct
from datetime import datetime, timezone

from amly import synth
from amly.metadata._jpeg import APP1, walk

XMP = (
    b"http://ns.adobe.com/xap/1.0/\x00"
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
COMMENT = b"amly test comment"
APP13 = b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x00"
CANON_IMAGE_TYPE = "Canon EOS AMLY TEST"
CANON_SERIAL = 123456789
T0 = datetime(2024, 6, 1, 10, 0, 0, tzinfo=timezone.utc)


def icc_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def seg(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def canon_exif(time: datetime | None = T0, **kw: object) -> bytes:
    """An EXIF payload (``Exif\\0\\0`` + TIFF, big-endian as piexif writes) whose MakerNote is a
    Canon-style IFD: ImageType is an out-of-line string at an offset relative to the TIFF
    header, SerialNumber a LONG. Moving the maker note without fixing offsets breaks it."""
    import piexif

    string = CANON_IMAGE_TYPE.encode() + b"\x00"
    size = 2 + 2 * 12 + 4 + len(string) + (len(string) % 2)
    placeholder = b"\xa5\x5a" * (size // 2)
    exif = synth.exif_bytes(time=time, make="Canon", model="EOS AMLY", **kw)  # type: ignore[arg-type]
    d = piexif.load(exif)
    d["Exif"][piexif.ExifIFD.MakerNote] = placeholder
    d.pop("thumbnail", None)
    payload = bytes(piexif.dump(d))
    at = payload.index(placeholder) - 6  # offset in the TIFF block
    e = ">" if payload[6:8] == b"MM" else "<"
    note = struct.pack(e + "H", 2)
    note += struct.pack(e + "HHLL", 0x0006, 2, len(string), at + 30)
    note += struct.pack(e + "HHLL", 0x000C, 4, 1, CANON_SERIAL)
    note += struct.pack(e + "L", 0) + string
    note = note.ljust(size, b"\x00")
    return payload.replace(placeholder, note)


def rich_jpeg(
    *, exif: bytes | None = None, with_exif: bool = True, xmp_first: bool = False
) -> bytes:
    """A small JPEG carrying JFIF, EXIF (Canon maker note), XMP, ICC, APP13 and COM."""
    base = synth.base_frames(64, 48)[0]
    assert base[2:4] == b"\xff\xe0"
    app0_end = 4 + int.from_bytes(base[4:6], "big")
    exif_seg = seg(APP1, exif if exif is not None else canon_exif()) if with_exif else b""
    xmp_seg = seg(APP1, XMP)
    apps = (xmp_seg + exif_seg) if xmp_first else (exif_seg + xmp_seg)
    extra = apps + seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + icc_profile()) + seg(0xED, APP13)
    extra += seg(0xFE, COMMENT)
    return base[:app0_end] + extra + base[app0_end:]


def segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """``(marker, whole segment bytes)`` up to SOS, plus ``(0, scan data to the end)``."""
    lay = walk(jpeg, True)
    out = [(s.marker, jpeg[s.start : s.end]) for s in lay.segments]
    out.append((0, jpeg[lay.sos :]))
    return out


def is_exif(marker: int, raw: bytes) -> bool:
    return marker == APP1 and raw[4:9] == b"Exif\x00"


def non_exif(jpeg: bytes) -> list[tuple[int, bytes]]:
    return [(m, raw) for m, raw in segments(jpeg) if not is_exif(m, raw)]


def exif_count(jpeg: bytes) -> int:
    return sum(is_exif(m, raw) for m, raw in segments(jpeg))


def exif_segment(jpeg: bytes) -> bytes:
    """The first EXIF APP1 segment, whole (marker and length included)."""
    return next(raw for m, raw in segments(jpeg) if is_exif(m, raw))
