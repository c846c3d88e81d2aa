"""Turning a heap of geotagged images into upload-ready sequences: pure logic, no I/O.

The steps mirror mapillary_tools' ``process_sequence_properties`` (0.14) so that both tools
cut the same sequences from the same photos, in the same order:

1. images without time or position are rejected (:class:`~amly.errors.GeotagError`);
2. :func:`group_images` by folder and camera, each group sorted by (capture time, file name);
3. :func:`spread_equal_times` gives images sharing a timestamp distinct sub-second times;
4. :func:`split_sequences` by ``max_images``, ``cutoff_time``, bytes and pixels per sequence;
5. :func:`check_null_island` drops (0, 0) fixes;
6. :func:`find_duplicates` drops near-duplicates of the last kept image (red-light stops);
7. :func:`interpolate_headings` fills (or recomputes) headings, then ``offset_angle`` rotates
   every heading (the official tool applies its offset to all headings too);
8. :func:`check_speed` drops GPS spikes (amly's rule differs from the official one, see there),
   :func:`check_zigzag` drops positions that jump away and back (upstream's rule, exactly);
9. :func:`split_sequences` by ``cutoff_distance`` (after dedup, as upstream: the distance
   between *kept* neighbours is what matters);
10. sequences get uuids ``"0"``, ``"1"``, ... in a deterministic order.

Every function returns new :class:`~amly.types.ImageMeta` objects where it changes one
(``dataclasses.replace``); inputs are never mutated.

Deliberate differences from upstream (everything else is cross-checked equal in
``tests/test_sequence.py``): the speed check flags the outlier images, not the whole
sequence; headings point to the next *distinct* position (upstream takes the bearing to an
identical position, i.e. 0); null island is (0, 0) within 1e-6 degrees, not exactly;
distances are haversine on the mean sphere (upstream: chord through the WGS84 ellipsoid,
within 0.6 %).
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from collections.abc import Iterable
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta, timezone
from itertools import pairwise

from .errors import (
    DuplicateError,
    FileError,
    GeotagError,
    NullIslandError,
    SpeedTooFastError,
    ZigZagError,
)
from .geo import angle_diff, bearing, distance
from .types import ImageMeta, Sequence

__all__ = [
    "CUTOFF_DISTANCE",
    "CUTOFF_TIME",
    "DUPLICATE_ANGLE",
    "DUPLICATE_DISTANCE",
    "MAX_CAPTURE_SPEED_KMH",
    "MAX_SEQUENCE_FILESIZE",
    "MAX_SEQUENCE_LENGTH",
    "MAX_SEQUENCE_PIXELS",
    "ProcessOptions",
    "ProcessResult",
    "apply_offset",
    "apply_time_offset",
    "check_null_island",
    "check_speed",
    "check_zigzag",
    "estimate_cutoff_time",
    "find_duplicates",
    "group_images",
    "interpolate_headings",
    "process",
    "rotate_headings",
    "sort_key",
    "split_sequences",
    "spread_equal_times",
]

# Defaults of mapillary_tools 0.14.7 (constants.py), kept identical on purpose.
CUTOFF_DISTANCE = 100.0
"""Metres between consecutive kept images beyond which a new sequence starts."""
CUTOFF_TIME = 60.0
"""Seconds between consecutive images beyond which a new sequence starts."""
DUPLICATE_DISTANCE = 0.1
"""Metres within which an image may be a duplicate of the last kept one."""
DUPLICATE_ANGLE = 5.0
"""Degrees within which an image may be a duplicate of the last kept one."""
MAX_SEQUENCE_LENGTH = 1000
"""Images per sequence (the server's limit)."""
MAX_CAPTURE_SPEED_KMH = 400.0
"""Speeds above this between consecutive images are GPS errors, not driving."""
MAX_SEQUENCE_FILESIZE = 110 * 1024**3
"""Bytes per sequence (upstream's 110G default)."""
ZIGZAG_WINDOW = 5
ZIGZAG_DEVIATION = 0.8
ZIGZAG_MIN_DISTANCE = 30.0
"""Upstream's zig-zag parameters (window of images, distance ratio, minimum jump in metres)."""
MAX_SEQUENCE_PIXELS = 6_000_000_000
"""Pixels per sequence (upstream's 6G default): 500 photos of 12 MP, 250 of 24 MP."""
_DEFAULT_SIDE = 1024  # upstream counts an image of unknown size as 1024 x 1024

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ts(image: ImageMeta) -> float:
    assert image.capture_time is not None
    return (image.capture_time - _EPOCH).total_seconds()


def _dist(a: ImageMeta, b: ImageMeta) -> float:
    assert a.lat is not None and a.lon is not None and b.lat is not None and b.lon is not None
    return distance(a.lat, a.lon, b.lat, b.lon)


def _seconds(a: ImageMeta, b: ImageMeta) -> float:
    assert a.capture_time is not None and b.capture_time is not None
    return (b.capture_time - a.capture_time).total_seconds()


# --- grouping and ordering ------------------------------------------------------------------


def sort_key(image: ImageMeta) -> tuple[bool, datetime, str]:
    """Order within a sequence: capture time, then file name (images without time last)."""
    t = image.capture_time
    return (t is None, t if t is not None else _EPOCH, os.path.basename(image.path))


def _camera_key(image: ImageMeta) -> tuple[str, ...]:
    # Folder + camera, as upstream (which also uses width/height: a camera switching
    # resolution mid-drive is in another capture mode and makes another sequence).
    return (
        os.path.dirname(image.path),
        image.make or "",
        image.model or "",
        image.serial or "",
        str(image.width or ""),
        str(image.height or ""),
    )


def group_images(images: Iterable[ImageMeta]) -> list[list[ImageMeta]]:
    """Group by (folder, make, model, serial, width, height); sort each group by time then name.

    Groups come out in a deterministic order (by folder, then camera), whatever the input
    order, so sequence uuids do not depend on how the directory was listed.

    >>> from datetime import datetime, timezone
    >>> t = lambda s: datetime(2024, 1, 1, 0, 0, s, tzinfo=timezone.utc)
    >>> imgs = [ImageMeta("b/2.jpg", t(2)), ImageMeta("a/1.jpg", t(5)),
    ...         ImageMeta("b/1.jpg", t(1), model="X"), ImageMeta("a/0.jpg", t(9))]
    >>> [[i.path for i in g] for g in group_images(imgs)]
    [['a/1.jpg', 'a/0.jpg'], ['b/2.jpg'], ['b/1.jpg']]
    """
    groups: dict[tuple[str, ...], list[ImageMeta]] = {}
    for image in images:
        groups.setdefault(_camera_key(image), []).append(image)
    return [sorted(groups[k], key=sort_key) for k in sorted(groups)]


def spread_equal_times(seq: Seq[ImageMeta]) -> list[ImageMeta]:
    """Give images that share a timestamp (to the millisecond) distinct, increasing times.

    Cameras with whole-second EXIF times shoot several photos per "second"; the server wants
    distinct times within a sequence. A run of ``n`` equal times is spread evenly up to the
    next image's time, or the next whole second, whichever comes first (upstream's rule).
    ``seq`` must be sorted; images without time are returned unchanged.

    >>> from datetime import datetime, timezone
    >>> t = lambda s: datetime(2024, 1, 1, 0, 0, s, tzinfo=timezone.utc)
    >>> out = spread_equal_times([ImageMeta(f"{i}.jpg", t(s)) for i, s in enumerate([1, 1, 2])])
    >>> [i.capture_time.strftime("%S.%f") for i in out]
    ['01.000000', '01.500000', '02.000000']
    """
    out = list(seq)
    i = 0
    n = len(out)
    while i < n:
        if out[i].capture_time is None:
            i += 1
            continue
        ms = int(_ts(out[i]) * 1e3)
        j = i + 1
        while j < n and out[j].capture_time is not None and int(_ts(out[j]) * 1e3) == ms:
            j += 1
        if j - i > 1:
            t = _ts(out[i])
            end = math.floor(t + 1.0)
            if j < n and out[j].capture_time is not None:
                end = min(end, _ts(out[j]))  # type: ignore[assignment]
            step = (end - t) / (j - i)
            base = out[i].capture_time
            assert base is not None
            for k in range(i + 1, j):
                shifted = base + timedelta(seconds=step * (k - i))
                out[k] = dataclasses.replace(out[k], capture_time=shifted)
        i = j
    return out


# --- splitting ------------------------------------------------------------------------------


def split_sequences(
    images: Seq[ImageMeta],
    cutoff_distance: float | None = CUTOFF_DISTANCE,
    cutoff_time: float | None = CUTOFF_TIME,
    max_images: int | None = MAX_SEQUENCE_LENGTH,
    max_sequence_filesize: int | None = None,
    max_sequence_pixels: int | None = None,
) -> list[list[ImageMeta]]:
    """Cut one sorted group into sequences; ``None`` disables a criterion.

    A new sequence starts at an image when, compared with the previous image, more than
    ``cutoff_time`` seconds or ``cutoff_distance`` metres passed, or when adding it would
    exceed ``max_images`` images, ``max_sequence_filesize`` bytes or ``max_sequence_pixels``
    pixels (unknown sizes count as 1024 x 1024, as upstream). Every image needs time and
    position for the time/distance criteria.

    >>> from datetime import datetime, timezone, timedelta
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> imgs = [ImageMeta(f"{i}.jpg", t0 + timedelta(seconds=s), 0.0, 0.0)
    ...         for i, s in enumerate([0, 1, 2, 100, 101])]
    >>> [len(s) for s in split_sequences(imgs)]
    [3, 2]
    >>> [len(s) for s in split_sequences(imgs, max_images=2, cutoff_time=None)]
    [2, 2, 1]
    """
    out: list[list[ImageMeta]] = []
    size = pixels = 0
    prev: ImageMeta | None = None
    for image in images:
        px = (image.width or _DEFAULT_SIDE) * (image.height or _DEFAULT_SIDE)
        split = not out
        if not split and max_images is not None and len(out[-1]) + 1 > max_images:
            split = True
        if not split and max_sequence_filesize is not None:
            split = size + image.filesize > max_sequence_filesize
        if not split and max_sequence_pixels is not None:
            split = pixels + px > max_sequence_pixels
        if not split and cutoff_time is not None and prev is not None:
            split = _seconds(prev, image) > cutoff_time
        if not split and cutoff_distance is not None and prev is not None:
            split = _dist(prev, image) > cutoff_distance
        if split:
            out.append([image])
            size, pixels = image.filesize, px
        else:
            out[-1].append(image)
            size += image.filesize
            pixels += px
        prev = image
    return out


def estimate_cutoff_time(images: Iterable[ImageMeta], default: float = CUTOFF_TIME) -> float:
    """Estimate a sequence-splitting time cutoff from the between-photo intervals.

    The legacy ``sequence_split.py`` did this when no cutoff was given. Intervals are taken
    between consecutive images of the same camera and folder. Within a drive they cluster
    around the capture interval (or spread smoothly when the camera triggers by distance);
    pauses are a separate cluster far above. So: sort the positive intervals, look above
    the median for the biggest *ratio* between neighbouring values, and when that jump is
    clear (at least 4x) put the cutoff at its geometric midpoint. With no clear jump there
    is no evidence of pauses and the upstream default (60 s) is returned.

    >>> from datetime import datetime, timezone, timedelta
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> secs = [0, 1, 2, 3, 5, 6, 7, 9, 609, 610, 611, 612, 614]  # 2 s hiccups, a 10 min pause
    >>> imgs = [ImageMeta(f"{i}.jpg", t0 + timedelta(seconds=s)) for i, s in enumerate(secs)]
    >>> round(estimate_cutoff_time(imgs), 1)  # between 2 s and 600 s: sqrt(2 * 600)
    34.6
    >>> estimate_cutoff_time(imgs[:8])  # no pause in there
    60.0
    """
    gaps: list[float] = []
    for group in group_images(i for i in images if i.capture_time is not None):
        gaps.extend(_seconds(a, b) for a, b in pairwise(group))
    gaps = sorted(g for g in gaps if g > 0)
    if len(gaps) < 2:
        return default
    median = statistics.median(gaps)
    best_ratio, best = 0.0, default
    for lo, hi in pairwise(gaps):
        if lo >= median and hi / lo > best_ratio:
            best_ratio, best = hi / lo, math.sqrt(lo * hi)
    return best if best_ratio >= 4.0 else default


# --- per-image checks -----------------------------------------------------------------------


def check_null_island(image: ImageMeta) -> NullIslandError | None:
    """The error for an image at (0, 0) (within ~0.1 m: a fix that never happened), else None.

    >>> check_null_island(ImageMeta("a.jpg", lat=0.0, lon=0.0)).kind
    'MapillaryNullIslandError'
    >>> check_null_island(ImageMeta("a.jpg", lat=0.0, lon=13.4)) is None
    True
    """
    if image.lat is None or image.lon is None:
        return None
    if abs(image.lat) < 1e-6 and abs(image.lon) < 1e-6:
        return NullIslandError(
            image.path,
            "GPS coordinates in Null Island (0, 0)",
            hint="the camera had no GPS fix; geotag it from a GPX track",
        )
    return None


def find_duplicates(
    seq: Seq[ImageMeta],
    min_distance: float = DUPLICATE_DISTANCE,
    min_angle: float = DUPLICATE_ANGLE,
) -> tuple[list[ImageMeta], list[DuplicateError]]:
    """Split a sorted sequence into (kept images, duplicate errors).

    An image is a duplicate when it is within ``min_distance`` metres of the LAST KEPT image
    AND its heading is within ``min_angle`` degrees of that image's heading; when either
    heading is missing, distance alone decides. Bounds are inclusive (``<=``), exactly as
    mapillary_tools' ``duplication_check``. Comparing with the last kept image (not the
    previous one) makes a slow creep at a red light collapse instead of surviving in 5 cm
    steps.

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> a = ImageMeta("a.jpg", t0, 52.0, 13.0, heading=90.0)
    >>> b = dataclasses.replace(a, path="b.jpg")                 # same spot, same heading
    >>> c = dataclasses.replace(a, path="c.jpg", heading=180.0)  # same spot, turned
    >>> kept, dups = find_duplicates([a, b, c])
    >>> [i.path for i in kept], [d.path for d in dups]
    (['a.jpg', 'c.jpg'], ['b.jpg'])
    """
    kept: list[ImageMeta] = []
    dups: list[DuplicateError] = []
    for image in seq:
        if not kept:
            kept.append(image)
            continue
        last = kept[-1]
        d = _dist(last, image)
        diff = (
            angle_diff(last.heading, image.heading)
            if last.heading is not None and image.heading is not None
            else None
        )
        if d <= min_distance and (diff is None or diff <= min_angle):
            dups.append(
                DuplicateError(
                    image.path,
                    f"duplicate of {os.path.basename(last.path)}: {d:.3g} m away"
                    + (f", heading {diff:.3g} degrees off" if diff is not None else ""),
                    hint=f"within {min_distance:g} m and {min_angle:g} degrees",
                    options=("duplicate_distance", "duplicate_angle"),
                    vars={"distance": d, "angle_diff": diff, "duplicate_of": last.path},
                )
            )
        else:
            kept.append(image)
    return kept, dups


def interpolate_headings(
    seq: Seq[ImageMeta], offset_angle: float = 0.0, *, only_missing: bool = False
) -> list[ImageMeta]:
    """Headings from the direction of travel: bearing to the next image, plus ``offset_angle``.

    Next images at the same position are skipped (the bearing to the next *distinct*
    position is used); images with no distinct position ahead (the last one, or a final
    stop) take the previous heading; a sequence that never moves keeps its headings (0 when
    missing). ``only_missing`` leaves images that already have a heading untouched.

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> pos = [(0, 0), (0, 0.001), (0, 0.001), (0.001, 0.001)]
    >>> seq = [ImageMeta(f"{i}.jpg", t0, lat, lon) for i, (lat, lon) in enumerate(pos)]
    >>> [round(i.heading) for i in interpolate_headings(seq)]
    [90, 0, 0, 0]
    >>> [round(i.heading) for i in interpolate_headings(seq, offset_angle=-90)]
    [0, 270, 270, 270]
    """
    out = list(seq)
    n = len(out)
    raw: list[float | None] = [None] * n
    j = 0  # index of the next image at a distinct position, searched forwards once
    for i in range(n):
        j = max(j, i + 1)
        while j < n and _dist(out[i], out[j]) == 0.0:
            j += 1
        if j < n:
            a, b = out[i], out[j]
            assert a.lat is not None and a.lon is not None
            assert b.lat is not None and b.lon is not None
            raw[i] = bearing(a.lat, a.lon, b.lat, b.lon)
        elif i > 0:
            raw[i] = raw[i - 1]
    for i, image in enumerate(out):
        if only_missing and image.heading is not None:
            continue
        h = raw[i]
        if h is None:
            h = image.heading if image.heading is not None else 0.0
        out[i] = dataclasses.replace(image, heading=(h + offset_angle) % 360.0)
    return out


def rotate_headings(seq: Seq[ImageMeta], offset_angle: float) -> list[ImageMeta]:
    """Add ``offset_angle`` to every heading (missing headings become the offset itself).

    >>> [i.heading for i in rotate_headings([ImageMeta("a", heading=350.0), ImageMeta("b")], 20)]
    [10.0, 20.0]
    """
    if not offset_angle:
        return list(seq)
    return [
        dataclasses.replace(i, heading=((i.heading or 0.0) + offset_angle) % 360.0) for i in seq
    ]


def check_speed(
    seq: Seq[ImageMeta], max_speed_kmh: float = MAX_CAPTURE_SPEED_KMH, *, window: int = 3
) -> tuple[list[ImageMeta], list[SpeedTooFastError]]:
    """Drop GPS spikes: images that imply an impossible speed. Returns (kept, errors).

    Only consecutive images of ONE sequence are compared, so a jump between two sequences
    never fires. Walking the sequence with the last kept image ``k``, an image ``i`` that
    ``k`` cannot reach within ``max_speed_kmh`` is:

    - a spike when one of the next ``window`` images IS reachable from ``k``: the images
      in between (``i``, ...) are flagged, the track goes on from ``k``;
    - the first image's fault when ``k`` is the first image and the track continues
      plausibly from ``i``: the first image is flagged;
    - a spike at the end when ``i`` is the last image: ``i`` is flagged;
    - otherwise a persistent jump, not an outlier: nothing is flagged (the distance cutoff
      splits the sequence there).

    mapillary_tools instead rejects the WHOLE sequence when its average speed is too high,
    losing hundreds of good images to one bad fix (and never catching a short spike in a
    long sequence).

    >>> from datetime import datetime, timezone, timedelta
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> lons = [0.0, 0.0001, 0.5, 0.0003, 0.0004]    # image 2 jumps 55 km away for a second
    >>> seq = [ImageMeta(f"{i}.jpg", t0 + timedelta(seconds=i), 0.0, x)
    ...        for i, x in enumerate(lons)]
    >>> kept, errors = check_speed(seq)
    >>> [e.path for e in errors], len(kept)
    (['2.jpg'], 4)
    """
    limit = max_speed_kmh / 3.6

    def ok(a: ImageMeta, b: ImageMeta) -> bool:
        d = _dist(a, b)
        dt = abs(_seconds(a, b))
        return d <= limit * dt or d <= DUPLICATE_DISTANCE

    def error(image: ImageMeta, ref: ImageMeta) -> SpeedTooFastError:
        dt = abs(_seconds(ref, image))
        d = _dist(ref, image)
        speed = d / dt * 3.6 if dt > 0 else math.inf
        return SpeedTooFastError(
            image.path,
            f"{speed:.0f} km/h from {os.path.basename(ref.path)} exceeds {max_speed_kmh:g} km/h",
            hint="its GPS position jumped; geotag it from a GPX track or remove it",
            vars={"speed_kmh": speed, "distance": d, "seconds": dt},
        )

    kept: list[ImageMeta] = []
    errors: list[SpeedTooFastError] = []
    n = len(seq)
    i = 0
    while i < n:
        image = seq[i]
        if not kept or ok(kept[-1], image):
            kept.append(image)
            i += 1
            continue
        k = kept[-1]
        reach = next((j for j in range(i + 1, min(n, i + 1 + window)) if ok(k, seq[j])), None)
        if reach is not None:
            errors.extend(error(seq[m], k) for m in range(i, reach))
            i = reach
        elif len(kept) == 1 and k is seq[0] and i + 1 < n and ok(image, seq[i + 1]):
            errors.append(error(k, image))
            kept = [image]
            i += 1
        elif i == n - 1:
            errors.append(error(image, k))
            i += 1
        else:
            kept.append(image)
            i += 1
    return kept, errors


def check_zigzag(
    seq: Seq[ImageMeta],
    *,
    window: int = ZIGZAG_WINDOW,
    deviation: float = ZIGZAG_DEVIATION,
    min_distance: float = ZIGZAG_MIN_DISTANCE,
) -> tuple[list[ImageMeta], list[ZigZagError]]:
    """Drop images whose position jumps away from the track and comes back. (kept, errors)

    mapillary_tools' ``_check_sequences_zigzag``, same parameters and defaults: at image
    ``i`` with reference ``r = i - window``, when the jump from ``i-1`` to ``i`` exceeds
    ``min_distance`` metres and ``i`` is closer to ``r`` than ``deviation`` times the
    distance of ``i-1`` to ``r``, then ``i-1`` went astray; earlier images back to ``r`` that
    pass the same test are flagged too. Catches GPS glitches too slow for :func:`check_speed`
    (50 m off for one photo at 1 Hz is "only" 180 km/h).

    >>> from datetime import datetime, timezone, timedelta
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> north = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    >>> east = [0, 0, 0, 0, 0, 0, 60, 0, 0, 0]     # image 6 is 60 m off for one photo
    >>> seq = [ImageMeta(f"{i}.jpg", t0 + timedelta(seconds=i), 1 + n / 111195, e / 111178)
    ...        for i, (n, e) in enumerate(zip(north, east))]
    >>> kept, errors = check_zigzag(seq)
    >>> [e.path for e in errors], len(kept)
    (['6.jpg'], 9)
    """
    n = len(seq)
    if n < window + 1:
        return list(seq), []
    bad: set[int] = set()
    for i in range(window, n):
        cur, prev, ref = seq[i], seq[i - 1], seq[i - window]
        d_cur = _dist(cur, ref)
        if _dist(prev, cur) > min_distance and d_cur < _dist(prev, ref) * deviation:
            bad.add(i - 1)
            for j in range(i - 2, i - window, -1):
                if _dist(seq[j], cur) > min_distance and d_cur < _dist(seq[j], ref) * deviation:
                    bad.add(j)
                else:
                    break
    errors = [
        ZigZagError(
            seq[i].path,
            "GPS zig-zag: the position jumps away from the track and back",
            hint="a GPS glitch; geotag from a GPX track or remove the image",
        )
        for i in sorted(bad)
    ]
    return [image for i, image in enumerate(seq) if i not in bad], errors


def apply_time_offset(images: Iterable[ImageMeta], seconds: float) -> list[ImageMeta]:
    """Shift every capture time by ``seconds`` (a camera clock that was off).

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> apply_time_offset([ImageMeta("a", t0)], -1.5)[0].capture_time.isoformat()
    '2023-12-31T23:59:58.500000+00:00'
    """
    delta = timedelta(seconds=seconds)
    return [
        i if i.capture_time is None else dataclasses.replace(i, capture_time=i.capture_time + delta)
        for i in images
    ]


apply_offset = apply_time_offset
"""Alias matching the name in the team brief."""


# --- the composition ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProcessOptions:
    """Knobs of :func:`process`; defaults are mapillary_tools 0.14.7's.

    ``cutoff_time=None`` estimates it from the photos (:func:`estimate_cutoff_time`);
    ``max_speed_kmh=None`` and ``max_images=None`` disable those checks; ``duplicate_distance``
    of 0 or less disables deduplication.
    """

    cutoff_distance: float | None = CUTOFF_DISTANCE
    cutoff_time: float | None = CUTOFF_TIME
    max_images: int | None = MAX_SEQUENCE_LENGTH
    max_sequence_filesize: int | None = MAX_SEQUENCE_FILESIZE
    max_sequence_pixels: int | None = MAX_SEQUENCE_PIXELS
    duplicate_distance: float = DUPLICATE_DISTANCE
    duplicate_angle: float = DUPLICATE_ANGLE
    offset_angle: float = 0.0
    interpolate_directions: bool = False
    """Recompute every heading from the track (else only missing headings are filled)."""
    max_speed_kmh: float | None = MAX_CAPTURE_SPEED_KMH
    check_zigzag: bool = True
    """Drop zig-zag GPS glitches (:func:`check_zigzag`), as upstream does by default."""
    time_offset: float = 0.0
    """Seconds added to every capture time first (``--offset-time``)."""


@dataclasses.dataclass
class ProcessResult:
    """What :func:`process` made: sequences (uuids ``"0"``, ``"1"``...) and per-file errors."""

    sequences: list[Sequence]
    errors: list[FileError]
    cutoff_time: float | None = None
    """The cutoff time used (interesting when it was estimated)."""

    @property
    def images(self) -> list[ImageMeta]:
        return [image for s in self.sequences for image in s.images]


def process(images: Iterable[ImageMeta], options: ProcessOptions | None = None) -> ProcessResult:
    """Group, split, deduplicate, orient and check images; see the module docstring.

    Every input image ends up exactly once: in a sequence or as an error.

    >>> from amly.synth import DrivePlan, drive
    >>> pts = drive(DrivePlan(n=60, stop_at=20, stop_photos=5, park_at=40))
    >>> imgs = [ImageMeta(f"d/{i:03}.jpg", p.time, p.lat, p.lon) for i, p in enumerate(pts)]
    >>> res = process(imgs)
    >>> [(s.uuid, len(s.images)) for s in res.sequences], sorted({e.kind for e in res.errors})
    ([('0', 35), ('1', 20)], ['MapillaryDuplicationError'])
    """
    opts = options or ProcessOptions()
    errors: list[FileError] = []
    usable: list[ImageMeta] = []
    for image in images:
        if image.capture_time is None:
            errors.append(
                GeotagError(
                    image.path,
                    "no capture time in the EXIF",
                    hint="give it one with `amly fix-dates` before processing",
                )
            )
        elif not image.has_position():
            errors.append(
                GeotagError(
                    image.path,
                    "no GPS position",
                    hint="geotag it from a GPX track",
                    options=("gpx",),
                )
            )
        else:
            usable.append(image)
    if opts.time_offset:
        usable = apply_time_offset(usable, opts.time_offset)

    cutoff_time = opts.cutoff_time
    if cutoff_time is None:
        cutoff_time = estimate_cutoff_time(usable)

    sequences: list[list[ImageMeta]] = []
    for group in group_images(usable):
        sequences.extend(
            split_sequences(
                spread_equal_times(group),
                cutoff_distance=None,  # later, on kept images (see module docstring)
                cutoff_time=cutoff_time,
                max_images=opts.max_images,
                max_sequence_filesize=opts.max_sequence_filesize,
                max_sequence_pixels=opts.max_sequence_pixels,
            )
        )

    final: list[list[ImageMeta]] = []
    for seq in sequences:
        valid = []
        for image in seq:
            err = check_null_island(image)
            if err is None:
                valid.append(image)
            else:
                errors.append(err)
        if opts.duplicate_distance > 0:
            valid, dups = find_duplicates(valid, opts.duplicate_distance, opts.duplicate_angle)
            errors.extend(dups)
        if not valid:
            continue
        valid = interpolate_headings(valid, only_missing=not opts.interpolate_directions)
        valid = rotate_headings(valid, opts.offset_angle)
        if opts.max_speed_kmh is not None:
            valid, fast = check_speed(valid, opts.max_speed_kmh)
            errors.extend(fast)
        if opts.check_zigzag:
            valid, zigzags = check_zigzag(valid)
            errors.extend(zigzags)
        final.extend(
            split_sequences(
                valid,
                cutoff_distance=opts.cutoff_distance,
                cutoff_time=None,
                max_images=None,
            )
        )

    return ProcessResult(
        sequences=[Sequence(str(i), images) for i, images in enumerate(final)],
        errors=errors,
        cutoff_time=cutoff_time,
    )
