"""The page: one HTML file with the data, the script and the style inside (no server, no
CDN; it opens by double-click and works offline)."""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from typing import Any

from .._atomic import atomic_write
from . import _thumbs
from ._data import ReportData
from ._encode import payload


def asset(name: str) -> str:
    """The text of a file shipped next to this module (``report.js``, ``report.css``)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def script_json(obj: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, no ``<!--``.

    >>> script_json({"a": "</script><!--"})
    '{"a":"\\\\u003c/script>\\\\u003c!--"}'
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: ReportData, *, thumbnails: bool = False, workers: int | None = None) -> str:
    """The page's text."""
    thumbs: dict[str, str] = {}
    if thumbnails:
        from ._encode import ordered_photos

        thumbs = _thumbs.thumbnails([p.file for p, _ in ordered_photos(data)], workers)
    doc = payload(data, thumbs.get if thumbnails else None)
    return TEMPLATE.format(
        title=html.escape(data.title),
        css=asset("report.css"),
        js=asset("report.js"),
        data=script_json(doc),
    )


def write_html(
    data: ReportData,
    path: str | os.PathLike[str],
    *,
    thumbnails: bool = False,
    workers: int | None = None,
) -> int:
    body = render(data, thumbnails=thumbnails, workers=workers).encode("utf-8")
    atomic_write(path, body)
    return len(body)


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="amly report">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><h1 id="title">{title}</h1><span id="sources"></span></header>
<main>
<section id="mapbox">
<canvas id="map" aria-label="map of the photos"></canvas>
<div id="tools">
<button id="fit" title="show everything">fit</button>
<label title="OpenStreetMap tiles, only when online"><input type="checkbox" id="basemap"> basemap</label>
<label><input type="checkbox" id="coverage"> coverage</label>
</div>
<div id="tip" hidden></div>
<div id="attrib" hidden>&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors</div>
</section>
<aside id="side">
<section id="info"><h2>Photo</h2><div id="infobody">Click a photo on the map.</div></section>
<section><h2>Legend</h2><ul id="marks"></ul><ul id="legend"></ul></section>
<section><h2>Summary</h2><div id="summary"></div></section>
<section><h2>Gaps that cut sequences</h2><canvas id="gaps" width="320" height="200"></canvas>
<p class="note" id="gapnote"></p></section>
<section id="uploadbox" hidden><h2>Upload</h2><div id="uploads"></div></section>
<section id="coveragebox" hidden><h2>Download coverage</h2><div id="cover"></div></section>
<section id="unlocatedbox" hidden><h2>Photos without a position</h2><div id="unlocated"></div></section>
</aside>
</main>
<script type="application/json" id="amly-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""
