"""Signed, expiring thumbnail URLs and the ``/cdn`` route that serves them.

Like Mapillary's CDN: ``thumb_*_url`` fields are URLs ``{base}/cdn/{id}/{size}?exp=&sig=``
that stop working after a while (403), so a client must resolve them just before it
downloads. Uploaded images are served from the stored file (``original``) or a Pillow
resize cached under ``DIR/thumbs/``; seeded images have no file, so a small deterministic
JPEG is made from a few pre-encoded base frames with the image id in a COM segment (every
image's bytes differ, and making one costs a dictionary lookup). Served JPEGs carry no EXIF
except an uploaded original, which is the stored file as received.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import io
import os
import secrets
import time
import zlib
from pathlib import Path

from aiohttp import web

from .._atomic import atomic_write
from .auth import STORE_KEY

__all__ = ["SIZES", "Signer", "SIGNER_KEY", "add_routes", "seeded_jpeg", "with_comment"]

#: Thumbnail sizes: the field suffix of ``thumb_<size>_url`` and the URL path segment.
SIZES = ("256", "1024", "2048", "original")
DEFAULT_TTL = 300.0


class Signer:
    """HMAC signatures of ``(id, size, expiry)``; the key lives only as long as the server.

    >>> s = Signer(b"k" * 32, ttl=60)
    >>> exp, sig = s.sign("123", "256", now=1000.0)
    >>> exp, s.verify("123", "256", str(exp), sig, now=1059.0)
    (1060, True)
    >>> s.verify("123", "256", str(exp), sig, now=1061.0), s.verify("124", "256", str(exp), sig)
    (False, False)
    """

    def __init__(self, key: bytes | None = None, *, ttl: float | None = None) -> None:
        self.key = key or secrets.token_bytes(32)
        if ttl is None:
            ttl = float(os.environ.get("AMLY_THUMB_TTL", DEFAULT_TTL))
        self.ttl = ttl

    def _mac(self, image_id: str, size: str, exp: int) -> str:
        msg = f"{image_id}/{size}/{exp}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()[:32]

    def sign(self, image_id: str, size: str, *, now: float | None = None) -> tuple[int, str]:
        exp = int((time.time() if now is None else now) + self.ttl)
        return exp, self._mac(image_id, size, exp)

    def url(self, base: str, image_id: str, size: str) -> str:
        exp, sig = self.sign(image_id, size)
        return f"{base}/cdn/{image_id}/{size}?exp={exp}&sig={sig}"

    def verify(
        self, image_id: str, size: str, exp: str, sig: str, *, now: float | None = None
    ) -> bool:
        try:
            e = int(exp)
        except ValueError:
            return False
        if e < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._mac(image_id, size, e), sig)


SIGNER_KEY = web.AppKey("thumb_signer", Signer)


def with_comment(jpeg: bytes, text: str) -> bytes:
    """``jpeg`` with a COM segment holding ``text`` after SOI and any APP0 (JFIF) segment.

    >>> j = with_comment(b"\\xff\\xd8\\xff\\xe0\\x00\\x04ab\\xff\\xd9", "hi")
    >>> j
    b'\\xff\\xd8\\xff\\xe0\\x00\\x04ab\\xff\\xfe\\x00\\x04hi\\xff\\xd9'
    """
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":
        pos = 4 + int.from_bytes(jpeg[4:6], "big")
    data = text.encode()
    return jpeg[:pos] + b"\xff\xfe" + (len(data) + 2).to_bytes(2, "big") + data + jpeg[pos:]


def _dims(size: str, width: int, height: int) -> tuple[int, int]:
    """Pixel size of a thumbnail: ``size`` wide (never upscaled), aspect kept."""
    if size == "original":
        return width, height
    w = min(int(size), width)
    return w, max(1, round(height * w / width))


@functools.lru_cache(maxsize=64)
def _base(width: int, height: int, variant: int) -> bytes:
    """A smooth, cheap JPEG (gradients compress to a few KB even at full size)."""
    from PIL import Image

    g = Image.linear_gradient("L").resize((width, height))
    r = Image.radial_gradient("L").resize((width, height))
    rgb = Image.merge("RGB", [(g, r, g), (r, g, r), (g, g, r)][variant % 3])
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def seeded_jpeg(image_id: str, size: str, width: int | None, height: int | None) -> bytes:
    """The thumbnail of a seeded (file-less) image: deterministic, different for every id.

    >>> a = seeded_jpeg("1000000000000001", "256", 4000, 3000)
    >>> a[:2], a == seeded_jpeg("1000000000000001", "256", 4000, 3000)
    (b'\\xff\\xd8', True)
    >>> a != seeded_jpeg("1000000000000002", "256", 4000, 3000)
    True
    """
    w, h = _dims(size, width or 4000, height or 3000)
    variant = zlib.crc32(image_id.encode()) % 3
    return with_comment(_base(w, h, variant), f"amly synthetic image {image_id}")


def resized_jpeg(src: Path, size: str, cache: Path) -> bytes:
    """A resized copy of an uploaded image (no EXIF), made once and cached (blocking)."""
    try:
        return cache.read_bytes()
    except FileNotFoundError:
        pass
    from PIL import Image, ImageOps

    with Image.open(src) as im:
        im.draft("RGB", (int(size), int(size)))
        img = ImageOps.exif_transpose(im).convert("RGB")
        w, h = _dims(size, img.width, img.height)
        if (w, h) != img.size:
            img = img.resize((w, h), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
    data = buf.getvalue()
    cache.parent.mkdir(exist_ok=True)
    atomic_write(cache, data)
    return data


def _forbidden(message: str) -> web.Response:
    return web.Response(status=403, text=message + "\n", content_type="text/plain")


async def cdn(request: web.Request) -> web.Response:
    """``GET /cdn/{id}/{size}?exp=&sig=``: the image bytes, or 403 (expired / bad signature)."""
    image_id, size = request.match_info["id"], request.match_info["size"]
    if size not in SIZES or not image_id.isdigit():
        return web.Response(status=404, text="not found\n")
    signer = request.app[SIGNER_KEY]
    if not signer.verify(
        image_id, size, request.query.get("exp", ""), request.query.get("sig", "")
    ):
        return _forbidden("URL signature expired or invalid")
    store = request.app[STORE_KEY]
    row = store.db.execute(
        "SELECT path, width, height FROM images WHERE id = ?", (image_id,)
    ).fetchone()
    if row is None:
        return web.Response(status=404, text="not found\n")
    if row["path"] is None:
        body = seeded_jpeg(image_id, size, row["width"], row["height"])
    else:
        src = store.root / row["path"]
        if size == "original":
            body = await asyncio.get_running_loop().run_in_executor(None, src.read_bytes)
        else:
            cache = store.root / "thumbs" / f"{image_id}_{size}.jpg"
            body = await asyncio.get_running_loop().run_in_executor(
                None, resized_jpeg, src, size, cache
            )
    return web.Response(
        body=body, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"}
    )


def add_routes(app: web.Application, *, ttl: float | None = None) -> None:
    """Registers ``/cdn/{id}/{size}`` and the app's :class:`Signer`."""
    app[SIGNER_KEY] = Signer(ttl=ttl)
    app.router.add_get("/cdn/{id}/{size}", cdn)
