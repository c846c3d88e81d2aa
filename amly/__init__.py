"""amly: asynchronous, high-throughput client and preprocessing toolkit for street-level
imagery (Mapillary first).

The public API is what this module exports; everything in ``_``-prefixed modules is private.

* :class:`Client`: the one door to the services (upload, search, download);
* results: :class:`UploadResult`, :class:`SequenceResult`, :class:`UploadProgress`,
  :class:`DownloadResult`, :class:`GpxResult`;
* knobs: :class:`Limits` (rate limits), :class:`RetryPolicy`, :class:`Filters` (what a
  download keeps), :class:`ProcessOptions` (processing before an upload);
* seams: :class:`Target` (where uploads go), :class:`Sink` (where downloads go);
* records: :class:`ImageMeta`, :class:`Point`, :class:`Sequence`, :data:`BBox`;
* errors: :class:`AmlyError` and its subclasses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import Endpoints, Secret
from .errors import AmlyError, APIError, AuthError, FileError, MetadataError, UsageError
from .types import BBox, ImageMeta, Point, Sequence, UploadImage, UploadSequence

if TYPE_CHECKING:
    from .client import Client
    from .net import Limits, RetryPolicy
    from .pipeline import Options as ProcessOptions
    from .services import SequenceResult, Target, UploadProgress, UploadResult
    from .services.mapillary import DownloadResult, Filters, GpxResult
    from .storage import LocalFolder, Sink

__version__ = "0.1.0"

# Lazy: importing aiohttp costs ~0.1 s, which every CLI start would otherwise pay.
_LAZY = {
    "Client": ("client", "Client"),
    "Limits": ("net", "Limits"),
    "RetryPolicy": ("net", "RetryPolicy"),
    "ProcessOptions": ("pipeline", "Options"),
    "SequenceResult": ("services", "SequenceResult"),
    "Target": ("services", "Target"),
    "UploadProgress": ("services", "UploadProgress"),
    "UploadResult": ("services", "UploadResult"),
    "DownloadResult": ("services.mapillary", "DownloadResult"),
    "Filters": ("services.mapillary", "Filters"),
    "GpxResult": ("services.mapillary", "GpxResult"),
    "LocalFolder": ("storage", "LocalFolder"),
    "Sink": ("storage", "Sink"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'amly' has no attribute {name!r}")


__all__ = [
    "APIError",
    "AmlyError",
    "AuthError",
    "BBox",
    "Client",
    "DownloadResult",
    "Endpoints",
    "FileError",
    "Filters",
    "GpxResult",
    "ImageMeta",
    "Limits",
    "LocalFolder",
    "MetadataError",
    "Point",
    "ProcessOptions",
    "RetryPolicy",
    "Secret",
    "Sequence",
    "SequenceResult",
    "Sink",
    "Target",
    "UploadImage",
    "UploadProgress",
    "UploadResult",
    "UploadSequence",
    "UsageError",
    "__version__",
]
