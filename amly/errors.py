"""The exception hierarchy: every error says which file, what is wrong and what to do.

One bad file never stops a run: per-file problems are raised as :class:`FileError`
subclasses, caught by the pipeline, counted in the summary and reported with their ``hint``.
Run-level problems (bad credentials, an unreachable server, bad arguments) are
:class:`AmlyError` and stop the run with a non-zero exit code.
"""

from __future__ import annotations

import os
from typing import Any


class AmlyError(Exception):
    """Base of every error amly raises on purpose.

    ``hint`` tells the user what to do about it, in the library's words; ``options`` names
    the options concerned (``"offset_time"``, ``"endpoint"``...), which the CLI shows as its
    flags. ``exit_code`` is what the CLI exits with.
    """

    exit_code = 1

    def __init__(
        self, message: str, *, hint: str | None = None, options: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.options = options

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(AmlyError):
    """Bad arguments or options: nothing was done."""

    exit_code = 2


class FileError(AmlyError):
    """One file cannot be used. ``kind`` matches the Mapillary error type names where one exists
    (``MapillaryGeoTaggingError``...) so that description files stay compatible."""

    kind = "MapillaryFileError"

    def __init__(
        self,
        path: str | os.PathLike[str],
        message: str,
        *,
        hint: str | None = None,
        vars: dict[str, Any] | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint, options=options)
        self.path = os.fspath(path)
        self.vars = vars or {}

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive default pickling: needed across the process pool.
        args = (type(self), self.path, self.message, self.hint, self.vars, self.options)
        return (_rebuild_file_error, args)

    def to_description_error(self) -> dict[str, Any]:
        """The ``error`` object of a failed entry in ``mapillary_image_description.json``."""
        return {"type": self.kind, "message": str(self), "vars": self.vars}


def _rebuild_file_error(
    cls: type[FileError],
    path: str,
    message: str,
    hint: str | None,
    vars: dict[str, Any],
    options: tuple[str, ...] = (),
) -> FileError:
    return cls(path, message, hint=hint, vars=vars, options=options)


class MetadataError(FileError):
    """The file is not a readable JPEG, or its EXIF is broken or unrealistic."""

    kind = "MapillaryExifError"


class GeotagError(FileError):
    """No position or time could be found for the image."""

    kind = "MapillaryGeoTaggingError"


class OutsideTrackError(GeotagError):
    """The image was taken outside the GPS track (or in a gap longer than ``--max-gap``)."""

    kind = "MapillaryOutsideGPXTrackError"


class DuplicateError(FileError):
    """The image is a near-duplicate of the previous kept image of its sequence."""

    kind = "MapillaryDuplicationError"


class NullIslandError(FileError):
    """The image sits at (0, 0): a GPS fix that never happened."""

    kind = "MapillaryNullIslandError"


class SpeedTooFastError(FileError):
    """Consecutive images imply an impossible speed: the GPS jumped."""

    kind = "MapillaryCaptureSpeedTooFastError"


class ZigZagError(FileError):
    """The image's position jumps away from the track and back (a GPS glitch)."""

    kind = "MapillaryZigZagError"


class APIError(AmlyError):
    """The server answered with an error we will not (or may no longer) retry, or could not
    be reached at all: rerun later to resume."""

    exit_code = 4

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        hint: str | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint, options=options)
        self.status = status
        self.code = code
        self.subcode = subcode


class AuthError(APIError):
    """The token is missing, invalid or expired (HTTP 401/403, Graph code 190). Fatal for a run."""

    exit_code = 3
