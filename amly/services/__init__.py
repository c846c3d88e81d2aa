"""The services amly talks to, each behind the same seams: an upload :class:`Target`
(:mod:`.upload` is the engine that drives any target) and downloads into a
:class:`~amly.storage.Sink`. :mod:`.mapillary` is the first service.
"""

from __future__ import annotations

from .upload import (
    SequenceResult,
    SequenceState,
    Target,
    Uploader,
    UploadProgress,
    UploadResult,
)

__all__ = [
    "SequenceResult",
    "SequenceState",
    "Target",
    "UploadProgress",
    "UploadResult",
    "Uploader",
]
