"""amly: asynchronous, high-throughput client and preprocessing toolkit for Mapillary imagery.

The public API is what this module exports; everything in ``_``-prefixed modules is private.
"""

from __future__ import annotations

from .config import Endpoints, Secret
from .errors import AmlyError, APIError, AuthError, FileError, MetadataError, UsageError
from .types import BBox, ImageMeta, Point, Sequence

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AmlyError",
    "AuthError",
    "BBox",
    "Endpoints",
    "FileError",
    "ImageMeta",
    "MetadataError",
    "Point",
    "Secret",
    "Sequence",
    "UsageError",
    "__version__",
]
