"""The track point of a video: a position at a time on the video's clock."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(slots=True)
class TrackPoint:
    """One GPS point of a video.

    ``time`` is seconds from the start of the video (its presentation clock); ``epoch`` the
    GPS (UTC) time in seconds since 1970 when the telemetry carries it; ``fix`` 0/2/3 when
    known; ``precision`` DOP x100 when known; ``speed`` ground speed in m/s when known.
    """

    time: float
    lat: float
    lon: float
    alt: float | None = None
    epoch: float | None = None
    fix: int | None = None
    precision: float | None = None
    speed: float | None = None
    angle: float | None = None

    def with_epoch(self, epoch: float) -> TrackPoint:
        return dataclasses.replace(self, epoch=epoch)

    def with_time(self, time: float) -> TrackPoint:
        return dataclasses.replace(self, time=time)
