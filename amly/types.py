"""Plain records that flow through the pipeline: scan -> read -> geotag -> split -> dedup ->
headings -> describe -> upload.

They are small, picklable dataclasses so the process pool can hand them to the asyncio side
cheaply. Times are always timezone-aware UTC ``datetime`` objects once read.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

BBox = tuple[float, float, float, float]
"""``(west, south, east, north)`` in degrees, the order the Graph API's ``bbox`` uses."""

CAPTURE_YEARS = range(1800, 2200)
"""Years a capture time (or a track point) can have: photography began in the 1820s, and a
later year is a corrupt clock. It also keeps every time far from ``datetime``'s limits
(years 1..9999), so offsets and interpolation can never overflow."""
GPS_YEARS = range(1980, 2200)
"""Years a GPS date stamp can have: the GPS time scale starts on 1980-01-06 (an unset GPS
clock says 1970-01-01, or 0001-01-01)."""


@dataclasses.dataclass(frozen=True)
class Point:
    """A position at a moment: one GPS fix or one image's location."""

    time: datetime
    lat: float
    lon: float
    alt: float | None = None
    heading: float | None = None


@dataclasses.dataclass
class ImageMeta:
    """What the metadata reader found in one JPEG (``None`` where the file has nothing)."""

    path: str
    capture_time: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None
    heading: float | None = None
    make: str | None = None
    model: str | None = None
    serial: str | None = None
    orientation: int = 1
    width: int | None = None
    height: int | None = None
    gps_accuracy: float | None = None
    filesize: int = 0
    description: str | None = None
    """The raw EXIF ImageDescription (may hold an earlier Mapillary description)."""
    camera_time: datetime | None = None
    """The camera clock's own record (DateTimeOriginal, else DateTimeDigitized/DateTime),
    whatever the GPS stamp says. ``capture_time`` prefers the GPS clock; a track lookup uses
    this one, so geotagging with a clock offset can be rerun without adding it twice."""

    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None

    def point(self) -> Point:
        """This image as a :class:`Point`; requires time and position."""
        assert self.capture_time is not None and self.lat is not None and self.lon is not None
        return Point(self.capture_time, self.lat, self.lon, self.alt, self.heading)


@dataclasses.dataclass
class Sequence:
    """An ordered run of images that becomes one Mapillary sequence (cluster)."""

    uuid: str
    images: list[ImageMeta]
    organization_id: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class UploadImage:
    """One image to upload and the description its uploaded bytes carry (allowed keys only);
    the file on disk is never changed."""

    path: str
    description: dict[str, Any]
    size: int = 0
    """The file's size when known (bounds the bytes held in memory); 0: unknown."""


@dataclasses.dataclass
class UploadSequence:
    """One future cluster (Mapillary) or upload set (Panoramax): ordered images, or one zip
    file of a sequence (``zip_path``). ``name`` is stable across runs (resume keys on it)."""

    name: str
    images: list[UploadImage] = dataclasses.field(default_factory=list)
    organization_id: str | None = None
    zip_path: str | None = None
    video: Any = None
    """A :class:`amly.video.VideoSource`: the sequence is one video, uploaded as CAMM."""

    @property
    def size(self) -> int:
        """Images in the sequence (a zip counts its entries, a video counts 1)."""
        if self.video is not None:
            return 1
        if self.zip_path is not None:
            return len(self.images) or 1
        return len(self.images)
