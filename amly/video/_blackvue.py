"""BlackVue dashcams: NMEA sentences in a ``gps `` box inside a top-level ``free`` box.

Lines look like ``[1623057074211]$GPRMC,...``: the camera's clock (local time labelled as
UTC) in ms, then the sentence. As mapillary_tools does, the camera clock is corrected by the
first valid RMC's date and time (or, lacking one, the first valid GGA/GLL's time of day),
and the points come from RMC sentences, else GGA, else GLL.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from ._points import TrackPoint

_LINE = re.compile(rb"^\s*\[(\d+)\]\s*(\$\w{5}[^\[]*?)\s*(\[\d+\])?\s*$")


def _checksum_ok(s: str) -> str | None:
    """The sentence without ``$`` and checksum, or None when a checksum is there and wrong."""
    body = s[1:]
    if "*" in body:
        body, cs = body.rsplit("*", 1)
        cs = cs.strip()
        x = 0
        for ch in body:
            x ^= ord(ch)
        try:
            if int(cs[:2], 16) != x:
                return None
        except ValueError:
            return None
    return body


def _coord(v: str, hemi: str) -> float:
    if not v:
        raise ValueError("empty")
    dot = v.find(".")
    deg_len = (dot if dot >= 0 else len(v)) - 2
    deg = float(v[:deg_len] or 0)
    minutes = float(v[deg_len:])
    x = deg + minutes / 60
    return -x if hemi in ("S", "W") else x if hemi in ("N", "E") else 0.0


def _tod(v: str) -> tuple[int, int, int, int]:
    h, m = int(v[0:2]), int(v[2:4])
    sec = float(v[4:])
    s = int(sec)
    return h, m, s, int(round((sec - s) * 1_000_000))


def parse_gps_box(data: bytes) -> list[TrackPoint]:
    """Track points of a BlackVue ``gps `` box (``time`` relative to the first point).

    >>> pts = parse_gps_box(b"[1629874404069]$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B")
    >>> [(p.time, round(p.lat, 6), round(p.lon, 6), p.epoch) for p in pts]
    [(0.0, 44.068999, -121.314337, 1484007031.0)]
    """
    lines: list[tuple[float, str, list[str]]] = []
    offset: float | None = None
    first_tod: tuple[float, list[str]] | None = None
    for raw in data.splitlines():
        m = _LINE.match(raw)
        if m is None:
            continue
        try:
            s = m.group(2).decode("utf-8")
        except UnicodeDecodeError:
            continue
        body = _checksum_ok(s)
        if body is None:
            continue
        f = body.split(",")
        kind = f[0][2:]
        cam = round(int(m.group(1)) / 1000, 3)
        lines.append((cam, kind, f))
        try:
            if offset is None and kind == "RMC" and _valid(kind, f):
                h, mi, se, us = _tod(f[1])
                d = f[9]
                dt = datetime(
                    2000 + int(d[4:6]), int(d[2:4]), int(d[0:2]), h, mi, se, us, tzinfo=timezone.utc
                )
                offset = round(dt.timestamp() - cam, 3)
            if first_tod is None and kind in ("GGA", "GLL") and _valid(kind, f):
                first_tod = (cam, f)
        except (ValueError, IndexError):
            continue
    if offset is None and first_tod is not None:
        cam, f = first_tod
        try:
            tod = f[1] if f[0][2:] == "GGA" else f[5]
            h, mi, se, us = _tod(tod)
            cdt = datetime.fromtimestamp(cam, timezone.utc)
            fixed = cdt.replace(hour=h, minute=mi, second=se, microsecond=us)
            cs, ns = cdt.hour * 3600 + cdt.minute * 60 + cdt.second, h * 3600 + mi * 60 + se
            if cs - ns > 12 * 3600:
                fixed += timedelta(days=1)
            elif ns - cs > 12 * 3600:
                fixed -= timedelta(days=1)
            offset = round(fixed.timestamp() - cam, 3)
        except (ValueError, IndexError):
            offset = None
    off = offset or 0.0
    by_kind: dict[str, list[TrackPoint]] = {}
    for cam, kind, f in lines:
        if kind not in ("RMC", "GGA", "GLL"):
            continue
        try:
            if not _valid(kind, f):
                continue
            t = round(cam + off, 3)
            if kind == "GGA":
                alt = float(f[9]) if f[9] else None
                p = TrackPoint(t, _coord(f[2], f[3]), _coord(f[4], f[5]), alt, t, 3)
            elif kind == "RMC":
                spd = float(f[7]) * 0.514444 if f[7] else None
                p = TrackPoint(t, _coord(f[3], f[4]), _coord(f[5], f[6]), None, t, None, None, spd)
            else:
                p = TrackPoint(t, _coord(f[1], f[2]), _coord(f[3], f[4]), None, t)
        except (ValueError, IndexError):
            continue
        by_kind.setdefault(kind, []).append(p)
    for kind in ("RMC", "GGA", "GLL"):
        pts = by_kind.get(kind)
        if pts:
            pts.sort(key=lambda p: p.time)
            t0 = pts[0].time
            return [p.with_time(p.time - t0) for p in pts]
    return []


def _valid(kind: str, f: list[str]) -> bool:
    if kind == "RMC":
        ok = f[2] == "A"
        if len(f) > 12:
            ok = ok and f[12][:1] in tuple("ADEFMPRS")
        if len(f) > 13:
            ok = ok and f[13][:1] in tuple("SCU")
        return ok
    if kind == "GGA":
        try:
            return int(f[6]) in range(1, 6)
        except ValueError:
            return False
    if kind == "GLL":
        return len(f) > 6 and f[6] == "A"
    return False


def model_of_cprt(cprt: bytes) -> str:
    """The camera model in a BlackVue ``cprt`` box.

    >>> model_of_cprt(b' {"model":"DR900X Plus","ver":0.918,"lang":"English"}')
    'DR900X Plus'
    >>> model_of_cprt(b' Pittasoft Co., Ltd.;DR900S-1CH;1.008;English;1;D90SS1HAE00661;T69;')
    'DR900S-1CH'
    """
    b = cprt.strip().strip(b"\0")
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    try:
        j = json.loads(s)
    except ValueError:
        j = None
    if isinstance(j, dict):
        return str(j.get("model", "")).strip()
    fields = s.split(";")
    return fields[1].strip() if len(fields) >= 2 else ""
