"""Time zones and EXIF time strings: parsing ``--timezone`` and EXIF date/offset fields.

Pure functions. A naive EXIF time (no OffsetTimeOriginal) means "camera wall clock": it is
interpreted in the zone the user names, or in this machine's zone by default.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

from ..errors import UsageError

_OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?")
_DATETIME = re.compile(
    r"\s*(\d{4})[:\-/](\d{1,2})[:\-/](\d{1,2})[ T]+(\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,](\d+))?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*\x00*"
)


def parse_offset(s: str) -> timezone | None:
    """A fixed UTC offset like ``+02:00`` (EXIF OffsetTime*), or ``None`` if ``s`` is not one.

    >>> parse_offset("+02:00"), parse_offset("-0530"), parse_offset("   :  ")
    (datetime.timezone(datetime.timedelta(seconds=7200)), \
datetime.timezone(datetime.timedelta(days=-1, seconds=66600)), None)
    """
    m = _OFFSET.fullmatch(s.strip())
    if not m:
        return None
    sign, hh, mm = m.groups()
    delta = timedelta(hours=int(hh), minutes=int(mm or 0))
    if delta >= timedelta(hours=24):
        return None
    return timezone(-delta if sign == "-" else delta)


def parse_timezone(s: str | None) -> tzinfo | None:
    """The zone named by ``--timezone``: an IANA name, a UTC offset or ``UTC``;
    ``None`` (or ``"local"``) means this machine's zone.

    >>> parse_timezone("UTC"), parse_timezone(None)
    (datetime.timezone.utc, None)
    >>> parse_timezone("+02:00")
    datetime.timezone(datetime.timedelta(seconds=7200))
    >>> parse_timezone("Europe/Berlin")
    zoneinfo.ZoneInfo(key='Europe/Berlin')
    >>> parse_timezone("Mars/Olympus")
    Traceback (most recent call last):
    ...
    amly.errors.UsageError: unknown time zone 'Mars/Olympus' (use an IANA name like \
Europe/Berlin, an offset like +02:00, or UTC)
    """
    if s is None or not s.strip() or s.strip().lower() == "local":
        return None
    s = s.strip()
    if s.upper() in ("UTC", "Z", "GMT", "UTC+0", "UTC0"):
        return timezone.utc
    if s[0] in "+-" or s[:3].upper() in ("UTC", "GMT"):
        tz = parse_offset(s.upper())
        if tz is not None:
            return tz
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(s)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise UsageError(
            f"unknown time zone {s!r}",
            hint="use an IANA name like Europe/Berlin, an offset like +02:00, or UTC",
        ) from None


def parse_exif_datetime(s: str, subsec: str | None = None) -> datetime | None:
    """An EXIF ``YYYY:MM:DD HH:MM:SS`` string (plus SubSec digits) as a datetime, naive
    unless the string itself carries an offset. ``None`` for the "unknown" placeholders
    cameras write (blank or all zeros); ``ValueError`` for anything else that is no date.
    Hour 24 is the next day's midnight, as some cameras write it.

    >>> parse_exif_datetime("2021:07:15 15:37:30", "12")
    datetime.datetime(2021, 7, 15, 15, 37, 30, 120000)
    >>> parse_exif_datetime("2021:07:15 24:00:00")
    datetime.datetime(2021, 7, 16, 0, 0)
    >>> parse_exif_datetime("0000:00:00 00:00:00") is None, parse_exif_datetime("    :  :  ")
    (True, None)
    """
    m = _DATETIME.match(s)
    if m is None:
        if not s.strip(" :\x00") or not s.strip(" :0\x00"):
            return None
        raise ValueError(f"not a date and time: {s!r}")
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    if y == 0 and mo == 0 and d == 0:
        return None
    frac = m.group(7)
    if subsec:
        digits = subsec.strip().replace(" ", "0")  # GoPro pads with spaces
        if digits.isdigit():
            frac = digits
    micro = int((frac or "0")[:6].ljust(6, "0"))
    extra = timedelta(0)
    if h == 24 and mi == 0 and sec == 0:
        h, extra = 0, timedelta(days=1)
    dt = datetime(y, mo, d, h, mi, min(sec, 59), micro) + extra  # 60 = leap second
    zone = m.group(8)
    if zone:
        dt = dt.replace(tzinfo=timezone.utc if zone == "Z" else parse_offset(zone))
    return dt


def localize(dt: datetime, tz: tzinfo | None) -> datetime:
    """A naive wall-clock time made aware in ``tz`` (``None`` = this machine's zone), as UTC.

    >>> localize(datetime(2024, 6, 1, 12), parse_timezone("Europe/Berlin")).isoformat()
    '2024-06-01T10:00:00+00:00'
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz) if tz is not None else dt.astimezone()
    return dt.astimezone(timezone.utc)
