"""Report of 50,000 photos: file size, build time, and time to the first complete draw in
headless Chromium, against the nearest peer a person would write: the same map as SVG, one
DOM node per photo (what the canvas design avoids).

    .venv/bin/python bench/bench_report.py [--photos 50000] [--runs 5]

The description file (50 sequences of 1,000 photos: 2% duplicates, 0.2% GPS jumps, 0.2%
failures with a position) is generated under ``bench/out/`` (gitignored). ``amly report``
runs as a user runs it (its own process: wall time and peak RSS from ``wait4``). Each page
load is a fresh Chromium (its own profile, offline); the time is the page's own
``performance.now()`` (milliseconds since navigation started: reading the file, parsing,
decoding the data, projecting, drawing) when the first draw has finished, and the wall time
from ``Page.navigate`` to that moment. Medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _chromium import Chromium  # noqa: E402

from amly import synth  # noqa: E402
from amly.description import format_capture_time  # noqa: E402

OUT = ROOT / "bench" / "out" / "report"


def entries(n: int, per_sequence: int = 1000, seed: int = 3) -> list[dict[str, Any]]:
    """A description file's entries: ``n`` photos in sequences of ``per_sequence``."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    t0 = datetime(2024, 6, 1, 8, tzinfo=timezone.utc)
    for k in range((n + per_sequence - 1) // per_sequence):
        count = min(per_sequence, n - k * per_sequence)
        plan = synth.DrivePlan(
            n=count,
            seed=k,
            start_lat=52.45 + (k % 10) * 0.012,
            start_lon=13.30 + (k // 10) * 0.03,
            start=t0 + timedelta(hours=k),
        )
        seq = f"seq-{k:04d}"
        for i, p in enumerate(synth.drive(plan)):
            name = f"/data/drive{k:03d}/IMG_{i:05d}.jpg"
            base = {
                "filename": name,
                "filetype": "image",
                "MAPLatitude": round(p.lat, 7),
                "MAPLongitude": round(p.lon, 7),
                "MAPCaptureTime": format_capture_time(p.time),
                "MAPCompassHeading": {"TrueHeading": p.heading, "MagneticHeading": p.heading},
            }
            r = rnd.random()
            if r < 0.02:
                kind, msg = "MapillaryDuplicationError", f"{name}: duplicate of the previous"
            elif r < 0.022:
                kind, msg = "MapillaryCaptureSpeedTooFastError", f"{name}: 900 km/h"
                base["MAPLatitude"] += 0.01
            elif r < 0.024:
                kind, msg = "MapillaryExifError", f"{name}: truncated JPEG"
            else:
                out.append({**base, "MAPSequenceUUID": seq})
                continue
            # A position on a failed entry is amly's in-memory extension (the file has none).
            out.append({**base, "error": {"type": kind, "message": msg, "vars": {}}})
    return out


def svg_page(doc: list[dict[str, Any]], path: Path) -> None:
    """The peer: the same photos as an SVG map, one <circle> per photo, a polyline per
    sequence (what a report built from DOM nodes is)."""
    pts = [(e["MAPLongitude"], e["MAPLatitude"]) for e in doc]
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    k = min(1000 / (x1 - x0), 800 / (y1 - y0))

    def xy(e: dict[str, Any]) -> str:
        return f"{(e['MAPLongitude'] - x0) * k:.1f},{(y1 - e['MAPLatitude']) * k:.1f}"

    seqs: dict[str, list[str]] = {}
    for e in doc:
        if "MAPSequenceUUID" in e:
            seqs.setdefault(e["MAPSequenceUUID"], []).append(xy(e))
    parts = ['<!DOCTYPE html><html><body><svg width="1100" height="900">']
    for i, line in enumerate(seqs.values()):
        parts.append(
            f'<polyline fill="none" stroke="hsl({i * 37 % 360},70%,45%)" stroke-width="3" '
            f'points="{" ".join(line)}"/>'
        )
    for e in doc:
        x, y = xy(e).split(",")
        title = os.path.basename(e["filename"])
        parts.append(f'<circle cx="{x}" cy="{y}" r="3"><title>{title}</title></circle>')
    parts.append(
        "</svg><script>requestAnimationFrame(() => requestAnimationFrame(() => "
        "{ window.amlyReport = {ready: true, firstDrawMs: performance.now()}; }));</script>"
        "</body></html>"
    )
    path.write_text("".join(parts))


async def load(url: str, runs: int) -> dict[str, float]:
    first, wall, redraw = [], [], []
    for _ in range(runs):
        async with Chromium(offline=True) as page:
            t = time.perf_counter()
            await page.open(url)
            await page.wait_for("window.amlyReport && window.amlyReport.ready", timeout=120)
            wall.append((time.perf_counter() - t) * 1000)
            first.append(await page.evaluate("window.amlyReport.firstDrawMs"))
            if await page.evaluate("typeof window.amlyReport.draw === 'function'"):
                redraw.append(await page.evaluate("amlyReport.zoom(3), amlyReport.draw()"))
            assert page.errors == [], page.errors
    out = {"first_draw_ms": statistics.median(first), "wall_ms": statistics.median(wall)}
    if redraw:
        out["redraw_ms"] = statistics.median(redraw)
    return out


def run_report(desc: Path, html: Path, png: Path) -> dict[str, float]:
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "amly", "report", desc, "-o", html, "--png", png, "-q"],
        stdout=subprocess.DEVNULL,
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return {"seconds": time.perf_counter() - t, "rss_mb": usage.ru_maxrss / 1024}


def with_exif_thumbnails(src: Path, dst: Path) -> Path:
    """Copies of the dataset's photos carrying a 160x90 EXIF thumbnail, as cameras write."""
    import io

    import piexif
    from PIL import Image

    if (dst / "done").exists():
        return dst
    for photo in sorted(src.rglob("*.jpg")):
        out = dst / photo.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with Image.open(photo) as im:
            im.draft("RGB", (160, 90))
            im.convert("RGB").resize((160, 90)).save(buf, "JPEG", quality=75)
        exif = piexif.load(str(photo))
        exif["1st"] = {
            piexif.ImageIFD.JPEGInterchangeFormat: 0,
            piexif.ImageIFD.JPEGInterchangeFormatLength: 0,
        }
        exif["thumbnail"] = buf.getvalue()
        piexif.insert(piexif.dump(exif), str(photo), str(out))
    (dst / "done").write_text("")
    return dst


def thumbnails(n: int, runs: int) -> None:
    """What ``--thumbnails`` costs on real-sized photos (1920x1080 JPEGs, bench/gen_dataset),
    without and with the EXIF thumbnail cameras write."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gen_dataset import generate

    plain = generate(ROOT / "bench" / "data" / f"process_{n}", n)
    exif = with_exif_thumbnails(plain, ROOT / "bench" / "data" / f"report_thumbs_{n}")
    for data, label in ((plain, "decoded"), (exif, "EXIF thumbnail")):
        thumbnail_row(data, n, runs, label)


def thumbnail_row(data: Path, n: int, runs: int, label: str) -> None:
    desc = OUT / f"thumbs_{n}_{data.name}.json"
    subprocess.run(
        [sys.executable, "-m", "amly", "process", data, "--desc-path", desc, "-q"], check=False
    )
    rows = {}
    for flag in ([], ["--thumbnails"]):
        times, html = [], OUT / f"thumbs_{n}_{data.name}{'_t' if flag else ''}.html"
        for _ in range(runs):
            t = time.perf_counter()
            cmd = [sys.executable, "-m", "amly", "report", desc, "-o", html, "-q", *flag]
            subprocess.run(cmd, check=True)
            times.append(time.perf_counter() - t)
        rows[bool(flag)] = (statistics.median(times), html.stat().st_size)
    (t0, s0), (t1, s1) = rows[False], rows[True]
    print(
        f"| {n:,} photos 1920x1080, {label} | {t0:.2f} s, {s0 / 1e6:.2f} MB "
        f"| {t1:.2f} s, {s1 / 1e6:.2f} MB "
        f"| {(s1 - s0) / n / 1e3:.1f} KB | {n / max(t1 - t0, 1e-9):,.0f} photos/s |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--thumbnails", type=int, metavar="N", help="instead: --thumbnails on N real-sized photos"
    )
    args = ap.parse_args()
    if args.thumbnails:
        OUT.mkdir(parents=True, exist_ok=True)
        thumbnails(args.thumbnails, args.runs)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    doc = entries(args.photos)
    desc = OUT / "mapillary_image_description.json"
    desc.write_text(json.dumps(doc))
    html, png, svg = OUT / "report.html", OUT / "report.png", OUT / "svg.html"
    builds = [run_report(desc, html, png) for _ in range(args.runs)]
    svg_page(doc, svg)
    amly = asyncio.run(load(html.as_uri(), args.runs))
    peer = asyncio.run(load(svg.as_uri(), args.runs))
    row = {
        "photos": args.photos,
        "html_mb": round(html.stat().st_size / 1e6, 2),
        "svg_mb": round(svg.stat().st_size / 1e6, 2),
        "build_s": round(statistics.median(b["seconds"] for b in builds), 2),
        "build_rss_mb": round(max(b["rss_mb"] for b in builds), 1),
        "amly_first_draw_ms": round(amly["first_draw_ms"]),
        "amly_wall_ms": round(amly["wall_ms"]),
        "amly_redraw_ms": round(amly.get("redraw_ms", 0), 1),
        "svg_first_draw_ms": round(peer["first_draw_ms"]),
        "svg_wall_ms": round(peer["wall_ms"]),
        "ratio": round(peer["wall_ms"] / amly["wall_ms"], 2),
    }
    print(json.dumps(row, indent=2))
    print(
        f"| {row['photos']:,} | {row['html_mb']} | {row['build_s']} | {row['build_rss_mb']} "
        f"| {row['amly_first_draw_ms']} | {row['amly_wall_ms']} | {row['amly_redraw_ms']} "
        f"| {row['svg_mb']} | {row['svg_first_draw_ms']} | {row['svg_wall_ms']} "
        f"| **{row['ratio']}x** |"
    )


if __name__ == "__main__":
    main()
