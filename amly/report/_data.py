"""What a report shows, read from what amly writes: description files (``amly process``), a
download's ``index.geojson``, an upload's ``--json`` summary.

Every reader turns its input into :class:`Photo` and :class:`Sequence` records; the HTML and
PNG writers only read :class:`ReportData`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from itertools import pairwise
from typing import Any

from ..description import DESCRIPTION_FILE, parse_capture_time
from ..errors import UsageError
from ..geo import distance, tile

#: Photo states, as drawn: kept, dropped as a near-duplicate, dropped for a GPS problem, failed.
OK, DUPLICATE, GPS, FAILED = "ok", "duplicate", "gps", "failed"

#: Error types (Mapillary's names where one exists) that are GPS problems.
GPS_ERRORS = frozenset(
    {
        "MapillaryCaptureSpeedTooFastError",
        "MapillaryZigZagError",
        "MapillaryNullIslandError",
        "MapillaryOutsideGPXTrackError",
        "MapillaryGeoTaggingError",
    }
)
DUPLICATE_ERRORS = frozenset({"MapillaryDuplicationError"})

#: Zoom of the tiles download coverage is counted in (the vector tiles' zoom).
COVERAGE_ZOOM = 14


def status_of(error_type: str | None) -> str:
    """The drawn state of a photo with this error type.

    >>> status_of(None), status_of("MapillaryDuplicationError"), status_of("MapillaryZigZagError")
    ('ok', 'duplicate', 'gps')
    >>> status_of("MapillaryExifError")
    'failed'
    """
    if not error_type:
        return OK
    if error_type in DUPLICATE_ERRORS:
        return DUPLICATE
    return GPS if error_type in GPS_ERRORS else FAILED


@dataclasses.dataclass
class Photo:
    """One photo as the report shows it (``None`` where nothing is known)."""

    file: str
    lat: float | None = None
    lon: float | None = None
    heading: float | None = None
    time: float | None = None
    """Capture time, seconds since the epoch (UTC)."""
    sequence: str | None = None
    status: str = OK
    error_type: str | None = None
    reason: str | None = None

    @property
    def located(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclasses.dataclass
class Sequence:
    """A sequence's photos (in capture order) and what the report says about it. The derived
    figures are computed once: add no photo after reading them."""

    id: str
    folder: str
    photos: list[Photo]
    cluster_id: str | None = None
    upload_error: str | None = None

    @functools.cached_property
    def length_m(self) -> float:
        pts = [p for p in self.photos if p.located]
        total = 0.0
        for a, b in pairwise(pts):
            total += distance(a.lat, a.lon, b.lat, b.lon)  # type: ignore[arg-type]
        return total

    @functools.cached_property
    def start(self) -> float | None:
        return min((p.time for p in self.photos if p.time is not None), default=None)

    @functools.cached_property
    def end(self) -> float | None:
        return max((p.time for p in self.photos if p.time is not None), default=None)

    @property
    def duration_s(self) -> float | None:
        s, e = self.start, self.end
        return None if s is None or e is None else e - s


@dataclasses.dataclass
class Gap:
    """The step between two consecutive sequences of one folder: why they were cut."""

    before: str
    after: str
    seconds: float | None
    metres: float | None


@dataclasses.dataclass
class ReportData:
    """Everything one report shows."""

    title: str = "amly report"
    sources: list[str] = dataclasses.field(default_factory=list)
    sequences: list[Sequence] = dataclasses.field(default_factory=list)
    flagged: list[Photo] = dataclasses.field(default_factory=list)
    """Photos that are in no sequence: duplicates, GPS errors, failures."""
    uploads: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Upload summaries (``--json`` of ``amly upload``/``process-and-upload``)."""
    downloaded: int = 0
    """Photos that came from a download's ``index.geojson`` (their tiles are the coverage)."""
    coverage: dict[tuple[int, int, int], int] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    """Inputs (or parts of inputs) that could not be read, one sentence each."""

    @property
    def photos(self) -> int:
        return sum(len(s.photos) for s in self.sequences) + len(self.flagged)

    def errors_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.flagged:
            key = p.error_type or "error"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def count(self, status: str) -> int:
        return sum(1 for p in self.flagged if p.status == status)

    def gaps(self) -> list[Gap]:
        """Consecutive sequences of each folder, in time order, and the gap between them."""
        by_folder: dict[str, list[Sequence]] = {}
        for s in self.sequences:
            if s.start is not None:
                by_folder.setdefault(s.folder, []).append(s)
        out = []
        for seqs in by_folder.values():
            seqs.sort(key=lambda s: s.start or 0.0)
            for a, b in pairwise(seqs):
                last = next((p for p in reversed(a.photos) if p.located), None)
                first = next((p for p in b.photos if p.located), None)
                metres = (
                    distance(last.lat, last.lon, first.lat, first.lon)  # type: ignore[arg-type]
                    if last and first
                    else None
                )
                end, start = a.end, b.start
                seconds = start - end if start is not None and end is not None else None
                out.append(Gap(a.id, b.id, seconds, metres))
        return out


class ReportInputError(UsageError):
    """An input a report cannot read (what it is, what is wrong, what to do)."""


# --- readers ---------------------------------------------------------------------------------


def _epoch(t: datetime) -> float:
    return t.astimezone(timezone.utc).timestamp()


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _position(lat: Any, lon: Any) -> tuple[float | None, float | None]:
    """A position that can be drawn, else ``(None, None)``.

    >>> _position(52.5, 13.4), _position(91, 13.4), _position("52", 13.4)
    ((52.5, 13.4), (None, None), (None, None))
    """
    y, x = _float(lat), _float(lon)
    if y is None or x is None or not (-90 <= y <= 90 and -180 <= x <= 180):
        return None, None
    return y, x


def _heading(entry: Mapping[str, Any]) -> float | None:
    ch = entry.get("MAPCompassHeading")
    if isinstance(ch, Mapping):
        return _float(ch.get("TrueHeading", ch.get("MagneticHeading")))
    return None


def _reason(error: Mapping[str, Any], filename: str) -> str:
    """The error's message without the file name it starts with (the report shows that)."""
    msg = str(error.get("message") or error.get("type") or "error")
    for prefix in (filename, os.path.basename(filename)):
        if prefix and msg.startswith(prefix + ": "):
            msg = msg[len(prefix) + 2 :]
            break
    return msg


def _from_file(path: str) -> tuple[float | None, float | None, float | None, float | None]:
    """Position, heading and time of a local photo (all ``None`` when it cannot be read)."""
    from ..metadata.read import read_image

    if not os.path.isfile(path):
        return None, None, None, None
    try:
        m = read_image(path)
    except Exception:  # a broken photo is one of the things a report shows: never fatal
        return None, None, None, None
    t = _epoch(m.capture_time) if m.capture_time else None
    if m.lat is not None and m.lon is not None and (m.lat, m.lon) != (0.0, 0.0):
        return m.lat, m.lon, m.heading, t
    return None, None, m.heading, t


def photos_from_description(
    entries: Iterable[Any], base: str = ".", *, read_photos: bool = True
) -> tuple[list[Photo], int]:
    """Photos of description entries (ours or the official tool's) and how many entries were
    not photo entries. Failed entries carry no position in the file: with ``read_photos`` it
    is read from the photo itself where it is local (a position in the entry wins)."""
    photos, skipped = [], 0
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("filename"), str):
            skipped += 1
            continue
        if entry.get("filetype", "image") != "image":
            skipped += 1
            continue
        filename = entry["filename"]
        if not os.path.isabs(filename):
            filename = os.path.normpath(os.path.join(base, filename))
        lat, lon = _position(entry.get("MAPLatitude"), entry.get("MAPLongitude"))
        when: float | None = None
        if isinstance(entry.get("MAPCaptureTime"), str):
            try:
                when = _epoch(parse_capture_time(entry["MAPCaptureTime"]))
            except ValueError:
                when = None
        heading = _heading(entry)
        error = entry.get("error")
        if isinstance(error, Mapping):
            etype = str(error.get("type") or "error")
            if lat is None and read_photos:
                flat, flon, fheading, ftime = _from_file(filename)
                lat, lon = flat, flon
                heading = heading if heading is not None else fheading
                when = when if when is not None else ftime
            photos.append(
                Photo(
                    filename,
                    lat,
                    lon,
                    heading,
                    when,
                    None,
                    status_of(etype),
                    etype,
                    _reason(error, filename),
                )
            )
            continue
        seq = entry.get("MAPSequenceUUID")
        photos.append(
            Photo(filename, lat, lon, heading, when, str(seq) if seq is not None else None)
        )
    return photos, skipped


def photos_from_index(features: Iterable[Any], base: str) -> list[Photo]:
    """Photos of a download's ``index.geojson`` features (paths relative to ``base``)."""
    photos = []
    for f in features:
        if not isinstance(f, Mapping):
            continue
        geom, props = f.get("geometry"), f.get("properties")
        if not isinstance(geom, Mapping) or not isinstance(props, Mapping):
            continue
        coords = geom.get("coordinates")
        if geom.get("type") != "Point" or not isinstance(coords, list) or len(coords) < 2:
            continue
        lat, lon = _position(coords[1], coords[0])
        ms = _float(props.get("captured_at"))
        rel = props.get("path") or f"{props.get('id')}.jpg"
        seq = props.get("sequence_id")
        photos.append(
            Photo(
                os.path.normpath(os.path.join(base, str(rel))),
                lat,
                lon,
                _float(props.get("compass_angle")),
                ms / 1000.0 if ms is not None else None,
                str(seq) if seq is not None else "(no sequence)",
            )
        )
    return photos


def _load_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ReportInputError(
            f"{path}: no such file",
            hint="give a processed folder, its description file, a "
            "download folder or an upload --json summary",
        ) from None
    except UnicodeDecodeError as e:
        raise ReportInputError(
            f"{path}: not JSON (byte {e.start} is not UTF-8 text)",
            hint="give a file amly wrote: a description file, index.geojson or --json output",
        ) from None
    except OSError as e:
        raise ReportInputError(f"{path}: cannot read it ({e.strerror or 'I/O error'})") from None
    except json.JSONDecodeError as e:
        raise ReportInputError(
            f"{path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})",
            hint="give a file amly wrote: a description file, index.geojson or --json output",
        ) from None


def kind_of(doc: Any) -> str | None:
    """What an amly JSON document is: ``description``, ``index``, ``upload`` or ``None``.

    >>> kind_of([]), kind_of({"type": "FeatureCollection", "features": []})
    ('description', 'index')
    >>> kind_of({"verb": "upload", "sequences": []}), kind_of({"x": 1})
    ('upload', None)
    """
    if isinstance(doc, list):
        return "description"
    if isinstance(doc, dict):
        if doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
            return "index"
        if isinstance(doc.get("verb"), str) and (
            "cluster_ids" in doc or isinstance(doc.get("sequences"), list)
        ):
            return "upload"
    return None


def resolve(path: str) -> str:
    """The file to read for a PATH argument: a folder means its description file, else its
    download index."""
    if os.path.isdir(path):
        for name in (DESCRIPTION_FILE, "index.geojson"):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate
        raise ReportInputError(
            f"{path}: neither {DESCRIPTION_FILE} nor index.geojson in this folder",
            hint=f"run 'amly process {path}' or 'amly download images' into it first",
        )
    return path


def read(path: str) -> tuple[str, Any]:
    """``(kind, document)`` of one PATH argument, or a :class:`ReportInputError`."""
    file = resolve(path)
    doc = _load_json(file)
    kind = kind_of(doc)
    if kind is None:
        raise ReportInputError(
            f"{file}: not a description file, a download index.geojson or an upload summary",
            hint="give what 'amly process', 'amly download images' or 'amly upload --json' wrote",
        )
    if kind == "index" and any(
        isinstance(f, Mapping)
        and isinstance(f.get("properties"), Mapping)
        and f["properties"].get("kind") in ("sequence", "flagged")
        for f in doc["features"][:1]
    ):
        raise ReportInputError(
            f"{file}: this is the GeoJSON of 'amly process --geojson'",
            hint="give the processed folder or its mapillary_image_description.json instead",
        )
    return kind, doc


def coverage_tile(lon: float, lat: float) -> tuple[int, int, int]:
    return tile(lon, lat, COVERAGE_ZOOM)


def utc_text(t: float | None) -> str:
    """Seconds since the epoch as ISO 8601 UTC (milliseconds), ``""`` for ``None``.

    >>> utc_text(1600000000.25)
    '2020-09-13T12:26:40.250Z'
    """
    if t is None:
        return ""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
