"""Map reports: one self-contained HTML page (and optionally a PNG) showing what amly did.

>>> import amly.report
>>> r = amly.report.Report(title="trip")
>>> r.add_description([{"filename": "/p/a.jpg", "MAPLatitude": 52.5, "MAPLongitude": 13.4,
...                     "MAPCaptureTime": "2021_01_01_00_00_00_000", "MAPSequenceUUID": "s1"}])
>>> data = r.finish()
>>> data.photos, [s.id for s in data.sequences]
(1, ['s1'])

``build(paths, html=..., png=...)`` reads what ``amly process`` (a folder or its
``mapillary_image_description.json``), ``amly download images`` (a folder or its
``index.geojson``) and ``amly upload --json`` wrote; the verbs' ``--report FILE`` options call
:class:`Report` with what they hold in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from typing import Any

from ._data import (
    DUPLICATE,
    FAILED,
    GPS,
    OK,
    Photo,
    ReportData,
    ReportInputError,
    Sequence,
    coverage_tile,
    photos_from_description,
    photos_from_index,
    read,
)

__all__ = [
    "DUPLICATE",
    "FAILED",
    "GPS",
    "OK",
    "Photo",
    "Report",
    "ReportData",
    "ReportInputError",
    "Sequence",
    "build",
]


class Report:
    """Collects inputs, then writes the page (:meth:`write_html`) and the snapshot
    (:meth:`write_png`). Inputs may come in any order; sequences with the same id from
    several inputs are one sequence."""

    def __init__(self, title: str = "amly report") -> None:
        self.data = ReportData(title=title)
        self._seqs: dict[str, Sequence] = {}
        self._finished = False

    # -- inputs ------------------------------------------------------------------------------

    def add(self, path: str | os.PathLike[str]) -> str:
        """Read one PATH (a processed or download folder, a description file, an
        ``index.geojson``, an upload summary); returns what it was. Raises
        :class:`ReportInputError` when it is none of these."""
        name = os.fspath(path)
        kind, doc = read(name)
        file = name if not os.path.isdir(name) else os.path.join(name, "")
        if kind == "description":
            self.add_description(doc, source=file, base=os.path.dirname(os.path.abspath(name)))
        elif kind == "index":
            base = name if os.path.isdir(name) else os.path.dirname(os.path.abspath(name))
            self.add_index(doc["features"], base=base, source=file)
        else:
            self.add_upload(doc, source=file)
        return kind

    def add_description(
        self,
        entries: Iterable[Any],
        *,
        source: str | None = None,
        base: str = ".",
        read_photos: bool = True,
    ) -> None:
        """Entries of a ``mapillary_image_description.json`` (amly's or the official tool's).
        Failed entries get their position from the photo where it is local."""
        photos, skipped = photos_from_description(entries, base, read_photos=read_photos)
        if skipped:
            self.data.problems.append(
                f"{source or 'description'}: {skipped} entries are not photos (left out)"
            )
        self._add_photos(photos, source)

    def add_processed(
        self,
        sequences: Iterable[Any] = (),
        errors: Iterable[Any] = (),
        *,
        source: str | None = None,
    ) -> None:
        """What a processing run holds in memory: :class:`amly.types.Sequence` objects and
        the :class:`~amly.errors.FileError` of every dropped or failed file (their positions
        are read from the photos)."""
        from ..description import error_entry, file_entry

        entries: list[dict[str, Any]] = []
        for seq in sequences:
            for m in seq.images:
                if m.capture_time is not None and m.lat is not None and m.lon is not None:
                    entries.append(file_entry(m, seq.uuid))
        entries += [error_entry(e) for e in errors]
        self.add_description(entries, source=source)

    def add_upload_sequences(self, sequences: Iterable[Any], *, source: str | None = None) -> None:
        """Sequences as they entered an upload (:class:`amly.types.UploadSequence`): each
        image's embedded description holds its position, time and direction. Named like
        the upload results (``<description file>#<uuid>`` or the uuid), so
        :meth:`add_upload` attaches their cluster ids."""
        entries: list[dict[str, Any]] = []
        for seq in sequences:
            key = seq.name.rsplit("#", 1)[-1]
            for image in seq.images:
                entries.append(
                    {**image.description, "filename": image.path, "MAPSequenceUUID": key}
                )
        self.add_description(entries, source=source, read_photos=False)

    def add_failures(
        self, failures: Iterable[Mapping[str, Any]], *, source: str | None = None
    ) -> None:
        """Failed files as a verb's summary lists them (``file``, ``type``, ``error``)."""
        entries = [
            {
                "filename": str(f.get("file") or "?"),
                "error": {"type": f.get("type") or "error", "message": str(f.get("error") or "")},
            }
            for f in failures
        ]
        if entries:
            self.add_description(entries, source=source)

    def add_index(
        self, features: Iterable[Any], *, base: str = ".", source: str | None = None
    ) -> None:
        """Features of a download's ``index.geojson``: the photos and the coverage."""
        photos = photos_from_index(features, base)
        self.data.downloaded += len(photos)
        for p in photos:
            if p.located:
                key = coverage_tile(p.lon, p.lat)  # type: ignore[arg-type]
                self.data.coverage[key] = self.data.coverage.get(key, 0) + 1
        self._add_photos(photos, source)

    def add_upload(self, summary: Mapping[str, Any], *, source: str | None = None) -> None:
        """An upload's ``--json`` summary: cluster ids per sequence, failures."""
        sequences = summary.get("sequences")
        rows = []
        for s in sequences if isinstance(sequences, list) else []:
            if isinstance(s, Mapping):
                rows.append(
                    {
                        "name": str(s.get("name", "")),
                        "cluster_id": s.get("cluster_id"),
                        "images": s.get("images"),
                        "error": s.get("error"),
                        "skipped": bool(s.get("skipped")),
                        "cached": s.get("cached"),
                    }
                )
        failures = summary.get("failures")
        self.data.uploads.append(
            {
                "source": source or "",
                "verb": str(summary.get("verb", "upload")),
                "cluster_ids": list(summary.get("cluster_ids") or []),
                "sequences": rows,
                "failures": [
                    {k: str(f.get(k, "")) for k in ("file", "type", "error")}
                    for f in (failures if isinstance(failures, list) else [])
                    if isinstance(f, Mapping)
                ],
            }
        )
        if source:
            self.data.sources.append(source)

    def _add_photos(self, photos: list[Photo], source: str | None) -> None:
        if self._finished:
            raise RuntimeError("Report.finish() was called: add every input before")
        if source and source not in self.data.sources:
            self.data.sources.append(source)
        for p in photos:
            if p.status != OK or p.sequence is None:
                self.data.flagged.append(p)
                continue
            seq = self._seqs.get(p.sequence)
            if seq is None:
                seq = self._seqs[p.sequence] = Sequence(p.sequence, os.path.dirname(p.file), [])
                self.data.sequences.append(seq)
            seq.photos.append(p)

    # -- output ------------------------------------------------------------------------------

    def finish(self) -> ReportData:
        """Sort photos and sequences by time and attach upload results; idempotent."""
        if self._finished:
            return self.data
        inf = float("inf")
        for s in self.data.sequences:
            s.photos.sort(key=lambda p: (p.time if p.time is not None else inf, p.file))
        self.data.sequences.sort(key=lambda s: (s.start if s.start is not None else inf, s.id))
        for up in self.data.uploads:
            for row in up["sequences"]:
                # amly names an uploaded sequence "<description file>#<sequence uuid>".
                key = row["name"].rsplit("#", 1)[-1]
                seq = self._seqs.get(key)
                if seq is not None:
                    seq.cluster_id = row["cluster_id"] or seq.cluster_id
                    seq.upload_error = row["error"] or seq.upload_error
        self._finished = True
        return self.data

    def write_html(
        self, path: str | os.PathLike[str], *, thumbnails: bool = False, workers: int | None = None
    ) -> int:
        """Write the page atomically; returns its size in bytes."""
        from ._html import write_html

        return write_html(self.finish(), path, thumbnails=thumbnails, workers=workers)

    def write_png(self, path: str | os.PathLike[str], size: tuple[int, int] = (1200, 800)) -> None:
        """Write a PNG snapshot of the map (no browser, no basemap) atomically."""
        from ._png import write_png

        write_png(self.finish(), path, size=size)


def build(
    paths: Seq[str | os.PathLike[str]],
    html: str | os.PathLike[str] | None = None,
    *,
    png: str | os.PathLike[str] | None = None,
    thumbnails: bool = False,
    title: str | None = None,
) -> ReportData:
    """Read every PATH, then write the page and/or the snapshot. A PATH that cannot be read
    raises :class:`ReportInputError` before anything is written."""
    report = Report(title=title or _title(paths))
    for p in paths:
        report.add(p)
    if html is not None:
        report.write_html(html, thumbnails=thumbnails)
    if png is not None:
        report.write_png(png)
    return report.finish()


def _title(paths: Seq[str | os.PathLike[str]]) -> str:
    names = [os.path.basename(os.path.normpath(os.fspath(p))) for p in paths]
    return "amly report: " + ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
