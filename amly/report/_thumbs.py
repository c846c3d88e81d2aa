"""Thumbnails for the report page: the camera's own EXIF thumbnail when the photo has one
(read from the header: no image decode), else the photo decoded at reduced scale."""

from __future__ import annotations

import base64
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..metadata import _jpeg, _tiff

#: Longest side of an embedded thumbnail, pixels (about 2-5 KB each as JPEG).
THUMB_SIZE = 160

#: EXIF thumbnails live in APP1, which is at most 64 KiB, near the start of the file.
HEAD = 160 * 1024

JPEG_OFFSET, JPEG_LENGTH = 0x0201, 0x0202


def exif_thumbnail(head: bytes, complete: bool) -> bytes | None:
    """The JPEG thumbnail in IFD1 of the EXIF block of ``head`` (the file's first bytes),
    or ``None`` when there is none or anything about it is out of bounds."""
    try:
        layout = _jpeg.walk(head, complete)
        if layout.exif is None:
            return None
        tiff = head[layout.exif.data + 6 : layout.exif.end]
        e, ifd0 = _tiff.header(tiff)
        _tiff.read_ifd(tiff, e, ifd0, "IFD0")  # bounds-checks IFD0 before its next pointer
        ifd1 = _tiff.ifd_next(tiff, e, ifd0)
        if not ifd1:
            return None
        entries = _tiff.read_ifd(tiff, e, ifd1, "IFD1")
        if JPEG_OFFSET not in entries or JPEG_LENGTH not in entries:
            return None
        (start,) = _tiff.ints(tiff, e, entries[JPEG_OFFSET], JPEG_OFFSET)[:1]
        (length,) = _tiff.ints(tiff, e, entries[JPEG_LENGTH], JPEG_LENGTH)[:1]
    except Exception:  # no thumbnail (or a broken header): the caller decodes the photo
        return None
    data = tiff[start : start + length]
    return data if length > 100 and len(data) == length and data[:2] == b"\xff\xd8" else None


def thumbnail(path: str, size: int = THUMB_SIZE) -> str | None:
    """A small JPEG of a local photo as a ``data:`` URI; ``None`` when it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with open(path, "rb") as f:
            head = f.read(HEAD)
            complete = len(head) < HEAD
        small = exif_thumbnail(head, complete)
        source = io.BytesIO(small) if small else path
        with Image.open(source) as im:
            if small is None:
                # Decode at 1/2..1/8 scale: the smallest that still covers the box.
                w, h = im.size
                m = max(w, h, 1)
                im.draft("RGB", (max(1, size * w // m), max(1, size * h // m)))
            orientation = _orientation(path) if small else None
            im = ImageOps.exif_transpose(im) if small is None else im
            if orientation and orientation != 1:
                im = _orient(im, orientation)
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=60, optimize=True)
    except Exception:  # any unreadable photo just has no thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _orientation(path: str) -> int:
    """The photo's EXIF orientation (1 when unknown): the EXIF thumbnail is stored unrotated."""
    from ..metadata import read_image

    try:
        return read_image(path).orientation or 1
    except Exception:
        return 1


def _orient(im: Any, orientation: int) -> Any:
    from PIL import Image

    t = Image.Transpose
    ops = {
        2: [t.FLIP_LEFT_RIGHT],
        3: [t.ROTATE_180],
        4: [t.FLIP_TOP_BOTTOM],
        5: [t.TRANSPOSE],
        6: [t.ROTATE_270],
        7: [t.TRANSVERSE],
        8: [t.ROTATE_90],
    }.get(orientation, [])
    for op in ops:
        im = im.transpose(op)
    return im


def thumbnails(files: list[str], workers: int | None = None) -> dict[str, str]:
    """Thumbnails of many photos, in threads (Pillow releases the GIL while decoding)."""
    with (
        warnings.catch_warnings(),
        ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool,
    ):
        # Pillow warns about every corrupt EXIF block; the report shows those files already.
        warnings.simplefilter("ignore", UserWarning)
        uris = list(pool.map(thumbnail, files, chunksize=16))
    return {f: u for f, u in zip(files, uris, strict=True) if u}
