"""The processing pipeline, in the order data flows: :mod:`.scan` (which files), :mod:`.pool`
(the process pool the EXIF work runs in), :mod:`.process` (read, geotag, split, dedup,
headings, folder by folder), :mod:`.outputs` (description file, GeoJSON) and :mod:`.inputs`
(what an upload's paths hold). Nothing here modifies a photo.

Why folder by folder: ``process-and-upload`` starts uploading the first folder's sequences
while later folders are still being read, and memory stays bounded by one folder plus the
pool's in-flight chunks, however many folders there are.
"""

from __future__ import annotations

from .outputs import description_entries, geojson_features
from .pool import Pool, default_workers
from .process import (
    GroupResult,
    Options,
    Report,
    aiter_groups,
    geotag_from_track,
    iter_groups,
    iter_sequences,
    process_folder,
    read_all,
    read_images,
    sequence_uuid,
)
from .scan import Folder, is_image_name, scan, scan_files

__all__ = [
    "Folder",
    "GroupResult",
    "Options",
    "Pool",
    "Report",
    "aiter_groups",
    "default_workers",
    "description_entries",
    "geojson_features",
    "geotag_from_track",
    "is_image_name",
    "iter_groups",
    "iter_sequences",
    "process_folder",
    "read_all",
    "read_images",
    "scan",
    "scan_files",
    "sequence_uuid",
]
