"""amly: asynchronous, high-throughput client and preprocessing toolkit for Mapillary imagery.

The public API is what this module exports; everything in ``_``-prefixed modules is private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Endpoints, Secret
from .errors import AmlyError, APIError, AuthError, FileError, MetadataError, UsageError
from .types import BBox, ImageMeta, Point, Sequence

if TYPE_CHECKING:
    from .api.client import Client

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy: importing aiohttp costs ~0.1 s, which every CLI start would otherwise pay.
    if name == "Client":
        from .api.client import Client

        return Client
    raise AttributeError(f"module 'amly' has no attribute {name!r}")


__all__ = [
    "APIError",
    "AmlyError",
    "AuthError",
    "BBox",
    "Client",
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
