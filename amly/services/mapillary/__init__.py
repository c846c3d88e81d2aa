"""Mapillary (and the local amly server, which speaks the same protocol): auth and profiles
(:mod:`.auth`), the upload target (:mod:`.upload`), enumeration of a box by vector tiles
(:mod:`.tiles`) or by searches (:mod:`.search`) over what both share (:mod:`.query`), and
downloads of images and tracks (:mod:`.download`)."""

from __future__ import annotations

from .auth import login, me, resolve_token
from .download import (
    DownloadResult,
    GpxResult,
    download_gpx,
    download_images,
    normalize_size,
    sequence_track,
)
from .query import SEARCH_LIMIT, Filters, SearchReport, check_bbox
from .search import images, plan_size
from .upload import MapillaryTarget

__all__ = [
    "SEARCH_LIMIT",
    "DownloadResult",
    "Filters",
    "GpxResult",
    "MapillaryTarget",
    "SearchReport",
    "check_bbox",
    "download_gpx",
    "download_images",
    "images",
    "login",
    "me",
    "normalize_size",
    "plan_size",
    "resolve_token",
    "sequence_track",
]
