"""The data a report page embeds: columnar, integer, delta-coded arrays (50,000 photos stay a
few megabytes of JSON that the page parses in milliseconds), plus the summary tables."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from ._data import DUPLICATE, FAILED, GPS, OK, Photo, ReportData, utc_text

STATUS_CODES = {OK: 0, DUPLICATE: 1, GPS: 2, FAILED: 3}

#: Sequence colours (a qualitative palette without white, grey, magenta or black: those
#: mark flagged photos).
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#0fb5c9",
    "#9a6324",
    "#808000",
    "#000075",
    "#469990",
    "#e6a800",
    "#800000",
)

#: Coordinates are kept in millionths of a degree (about 0.1 m): plenty for a map.
SCALE = 1_000_000


def deltas(values: Iterable[int]) -> list[int]:
    """Each value minus the previous one (the first as is): small numbers, short JSON.

    >>> deltas([5, 7, 7, 4])
    [5, 2, 0, -3]
    """
    out, prev = [], 0
    for v in values:
        out.append(v - prev)
        prev = v
    return out


def color(i: int) -> str:
    """The colour of the ``i``-th sequence.

    >>> color(0), color(len(PALETTE))
    ('#e6194b', '#e6194b')
    """
    return PALETTE[i % len(PALETTE)]


def ordered_photos(data: ReportData) -> list[tuple[Photo, int]]:
    """Photos with a position, sequences first (each in capture order), then flagged ones;
    each with its sequence's index (-1 for none)."""
    out = [(p, i) for i, s in enumerate(data.sequences) for p in s.photos if p.located]
    out += [(p, -1) for p in data.flagged if p.located]
    return out


def payload(
    data: ReportData, thumbnail: Callable[[str], str | None] | None = None
) -> dict[str, Any]:
    """The JSON object the page reads (``thumbnail(path)`` returns a data URI or ``None``)."""
    photos = ordered_photos(data)
    dirs: dict[str, int] = {}
    fdir, fname = [], []
    for p, _ in photos:
        folder, name = os.path.split(p.file)
        fdir.append(dirs.setdefault(folder, len(dirs)))
        fname.append(name)
    reasons = {
        str(i): [p.error_type or "", p.reason or ""] for i, (p, _) in enumerate(photos) if p.reason
    }
    thumbs: dict[str, str] = {}
    if thumbnail is not None:
        for i, (p, _) in enumerate(photos):
            uri = thumbnail(p.file)
            if uri:
                thumbs[str(i)] = uri
    times = [p.time for p, _ in photos]
    t0 = min((t for t in times if t is not None), default=0.0)
    seqs: list[dict[str, Any]] = []
    offset = 0
    for i, s in enumerate(data.sequences):
        n = sum(1 for p in s.photos if p.located)
        seqs.append(
            {
                "id": s.id,
                "folder": s.folder,
                "color": color(i),
                "o": offset,
                "n": n,
                "photos": len(s.photos),
                "m": round(s.length_m, 1),
                "s": round(s.duration_s, 1) if s.duration_s is not None else None,
                "start": utc_text(s.start),
                "cluster": s.cluster_id,
                "uerr": s.upload_error,
            }
        )
        offset += n
    gaps = [
        {
            "a": g.before,
            "b": g.after,
            "s": round(g.seconds, 1) if g.seconds is not None else None,
            "m": round(g.metres, 1) if g.metres is not None else None,
        }
        for g in data.gaps()
    ]
    unlocated = [
        [p.file, p.error_type or "", p.reason or ""]
        for p in [*data.flagged, *(p for s in data.sequences for p in s.photos)]
        if not p.located
    ]
    return {
        "title": data.title,
        "sources": data.sources,
        "seqs": seqs,
        "lon": deltas(round(p.lon * SCALE) for p, _ in photos),  # type: ignore[operator]
        "lat": deltas(round(p.lat * SCALE) for p, _ in photos),  # type: ignore[operator]
        "hd": [round(p.heading) % 360 if p.heading is not None else -1 for p, _ in photos],
        "t0": t0,
        "t": deltas(round(((p.time or t0) - t0) * 1000) for p, _ in photos),
        "nt": [i for i, (p, _) in enumerate(photos) if p.time is None],
        "st": [STATUS_CODES[p.status] for p, _ in photos],
        "dirs": list(dirs),
        "fd": fdir,
        "fn": fname,
        "why": reasons,
        "thumbs": thumbs,
        "unlocated": unlocated,
        "summary": {
            "photos": data.photos,
            "sequences": len(data.sequences),
            "kept": sum(len(s.photos) for s in data.sequences),
            "duplicates": data.count(DUPLICATE),
            "gps": data.count(GPS),
            "failed": data.count(FAILED),
            "errors": data.errors_by_type(),
            "downloaded": data.downloaded,
        },
        "gaps": gaps,
        "uploads": data.uploads,
        "coverage": [[x, y, z, n] for (x, y, z), n in sorted(data.coverage.items())],
        "problems": data.problems,
    }
