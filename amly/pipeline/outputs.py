"""What a processing run writes: the entries of ``mapillary_image_description.json`` (the
official format) and GeoJSON of the sequences and flagged photos."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from ..types import ImageMeta
from .process import GroupResult


def description_entries(group: GroupResult) -> list[dict[str, Any]]:
    """The folder's entries of ``mapillary_image_description.json``, in file name order."""
    from ..description import error_entry, file_entry

    entries: list[tuple[str, dict[str, Any]]] = []
    for s in group.sequences:
        for m in s.images:
            entries.append((m.path, file_entry(m, s.uuid)))
    for e in group.errors:
        entry = error_entry(e)
        entries.append((e.path, _jsonable(entry)))
    entries.sort(key=lambda pe: pe[0])
    return [e for _, e in entries]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ImageMeta):
        return os.path.abspath(value.path)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def geojson_features(group: GroupResult) -> list[dict[str, Any]]:
    """Sequences as LineStrings and flagged images (that have a position) as Points."""
    from ..description import format_capture_time

    feats: list[dict[str, Any]] = []
    for s in group.sequences:
        coords = [[m.lon, m.lat] for m in s.images if m.lat is not None and m.lon is not None]
        geometry: dict[str, Any] = (
            {"type": "LineString", "coordinates": coords}
            if len(coords) > 1
            else {"type": "Point", "coordinates": coords[0]}
        )
        first, last = s.images[0], s.images[-1]
        feats.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "kind": "sequence",
                    "sequence": s.uuid,
                    "folder": group.folder.path,
                    "images": len(s.images),
                    "start": format_capture_time(first.capture_time)
                    if first.capture_time
                    else None,
                    "end": format_capture_time(last.capture_time) if last.capture_time else None,
                },
            }
        )
    for e in group.errors:
        m = group.images.get(e.path)
        if m is None or m.lat is None or m.lon is None:
            continue
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [m.lon, m.lat]},
                "properties": {
                    "kind": "flagged",
                    "file": os.path.abspath(e.path),
                    "type": e.kind,
                    "message": e.message,
                },
            }
        )
    return feats
