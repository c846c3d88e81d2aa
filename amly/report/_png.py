"""A PNG snapshot of the map, drawn with Pillow (no browser, no network, no basemap): the
same colours and marks as the page, a legend and the key counts."""

from __future__ import annotations

import io
import math
import os
from typing import Any

from .._atomic import atomic_write
from ._data import DUPLICATE, FAILED, GPS, Photo, ReportData
from ._encode import color

BACKGROUND = (238, 240, 234)


def mercator(lon: float, lat: float) -> tuple[float, float]:
    """Web-mercator ``(x, y)`` in ``[0, 1)``, y growing southwards.

    >>> mercator(0.0, 0.0)
    (0.5, 0.5)
    """
    lat = max(-85.05, min(85.05, lat))
    r = math.radians(lat)
    return (lon + 180.0) / 360.0, (1.0 - math.log(math.tan(r) + 1.0 / math.cos(r)) / math.pi) / 2.0


def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def render(data: ReportData, size: tuple[int, int] = (1200, 800)) -> bytes:
    """The snapshot's PNG bytes."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, BACKGROUND)
    d = ImageDraw.Draw(img)
    pts = [p for s in data.sequences for p in s.photos if p.located]
    pts += [p for p in data.flagged if p.located]
    merc = {id(p): mercator(p.lon, p.lat) for p in pts}  # type: ignore[arg-type]
    xy = list(merc.values())
    legend_w = 300
    if xy:
        x0, x1 = min(x for x, _ in xy), max(x for x, _ in xy)
        y0, y1 = min(y for _, y in xy), max(y for _, y in xy)
        span = max(x1 - x0, y1 - y0, 1e-9)
        k = min(
            (w - legend_w - 60) / max(x1 - x0, span * 1e-3), (h - 60) / max(y1 - y0, span * 1e-3)
        )
        ox = legend_w + 30 + ((w - legend_w - 60) - (x1 - x0) * k) / 2
        oy = 30 + ((h - 60) - (y1 - y0) * k) / 2

        def at(p: Photo) -> tuple[float, float]:
            x, y = merc[id(p)]
            return ox + (x - x0) * k, oy + (y - y0) * k

        for i, s in enumerate(data.sequences):
            line = _simplify([at(p) for p in s.photos if p.located])
            c = _hex(color(i))
            if len(line) > 1:
                d.line(line, fill=c, width=3, joint="curve")
            last = (-1e9, -1e9)
            for x, y in line:
                # A dot per photo only where dots do not touch: the line carries the rest.
                if abs(x - last[0]) + abs(y - last[1]) >= 12:
                    d.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=c, outline=(255, 255, 255))
                    last = (x, y)
        cells: set[tuple[str, int, int]] = set()
        for p in data.flagged:
            if not p.located:
                continue
            x, y = at(p)
            cell = (p.status, int(x) // 8, int(y) // 8)
            if cell in cells:  # one mark per 8 px cell and kind: overlapping marks hide lines
                continue
            cells.add(cell)
            if p.status == DUPLICATE:
                d.ellipse((x - 5, y - 5, x + 5, y + 5), fill=(255, 255, 255), outline=(68, 68, 68))
            elif p.status == GPS:
                d.polygon([(x, y - 7), (x + 7, y), (x, y + 7), (x - 7, y)], fill=(255, 0, 255))
            elif p.status == FAILED:
                d.line([(x - 5, y - 5), (x + 5, y + 5)], fill=(0, 0, 0), width=3)
                d.line([(x + 5, y - 5), (x - 5, y + 5)], fill=(0, 0, 0), width=3)
    _legend(d, data, legend_w, h)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _simplify(line: list[tuple[float, float]], px: float = 1.0) -> list[tuple[float, float]]:
    """Drop vertices closer than ``px`` to the last one kept (the last vertex always stays).

    >>> _simplify([(0, 0), (0.2, 0), (2, 0), (2.1, 0)])
    [(0, 0), (2, 0), (2.1, 0)]
    """
    if len(line) < 3:
        return line
    out = [line[0]]
    for x, y in line[1:-1]:
        lx, ly = out[-1]
        if abs(x - lx) + abs(y - ly) >= px:
            out.append((x, y))
    out.append(line[-1])
    return out


def _legend(d: Any, data: ReportData, width: int, height: int) -> None:
    font, big = _font(13), _font(16)
    d.rectangle((0, 0, width, height), fill=(250, 250, 250))
    d.line((width, 0, width, height), fill=(200, 200, 200))
    y = 12
    d.text((12, y), data.title[:40], fill=(20, 20, 20), font=big)
    y += 26
    lines = [
        f"{data.photos} photos, {len(data.sequences)} sequences",
        f"{data.count(DUPLICATE)} duplicates, {data.count(GPS)} GPS errors, "
        f"{data.count(FAILED)} failed",
    ]
    if data.downloaded:
        lines.append(f"{data.downloaded} downloaded in {len(data.coverage)} tiles")
    for text in lines:
        d.text((12, y), text, fill=(60, 60, 60), font=font)
        y += 18
    y += 6
    marks = [
        (
            "duplicate",
            lambda x, y: d.ellipse(
                (x - 5, y - 5, x + 5, y + 5), fill=(255, 255, 255), outline=(68, 68, 68)
            ),
        ),
        (
            "GPS error",
            lambda x, y: d.polygon(
                [(x, y - 7), (x + 7, y), (x, y + 7), (x - 7, y)], fill=(255, 0, 255)
            ),
        ),
        (
            "failed",
            lambda x, y: (
                d.line([(x - 5, y - 5), (x + 5, y + 5)], fill=(0, 0, 0), width=3),
                d.line([(x + 5, y - 5), (x - 5, y + 5)], fill=(0, 0, 0), width=3),
            ),
        ),
    ]
    for label, draw_mark in marks:
        draw_mark(20, y + 7)
        d.text((36, y), label, fill=(40, 40, 40), font=font)
        y += 20
    y += 8
    room = max(0, (height - y - 30) // 18)
    for i, s in enumerate(data.sequences[:room]):
        d.rectangle((12, y + 6, 30, 10 + y), fill=_hex(color(i)))
        km = s.length_m / 1000
        text = f"{s.id[:16]}  {len(s.photos)} photos  {km:.2f} km"
        d.text((36, y), text, fill=(40, 40, 40), font=font)
        y += 18
    if len(data.sequences) > room:
        d.text(
            (12, y),
            f"... and {len(data.sequences) - room} more sequences",
            fill=(90, 90, 90),
            font=font,
        )


def write_png(
    data: ReportData, path: str | os.PathLike[str], *, size: tuple[int, int] = (1200, 800)
) -> None:
    atomic_write(path, render(data, size))
