"""Shared by the processing tests: synthetic drives on disk, bad files, running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from amly import synth
from amly.types import Point

SIZE = (320, 180)
REPO = Path(__file__).resolve().parents[1]


def drive(n: int = 60, **kw: Any) -> list[Point]:
    """A short drive with a red-light stop (duplicates) and a parking gap (two sequences)."""
    plan = dict(n=n, stop_at=n // 3, stop_photos=6, park_at=2 * n // 3, park_seconds=900.0)
    plan.update(kw)
    return synth.drive(synth.DrivePlan(**plan))  # type: ignore[arg-type]


def write_drive(folder: Path, points: list[Point], **kw: Any) -> list[Path]:
    return synth.write_photos(folder, points, size=SIZE, **kw)


def add_bad_files(folder: Path) -> dict[str, Path]:
    """One of each kind of broken file a card can hold, named so they sort among the photos."""
    folder.mkdir(parents=True, exist_ok=True)
    good = synth.splice_exif(
        synth.base_frames(*SIZE)[0],
        synth.exif_bytes(time=None, lat=None, lon=None),
    )
    bad = {
        "zero": folder / "BAD_zero.jpg",
        "truncated": folder / "BAD_truncated.jpg",
        "notjpeg": folder / "BAD_notjpeg.JPG",
        "noexif": folder / "BAD_noexif.jpeg",
    }
    bad["zero"].write_bytes(b"")
    bad["truncated"].write_bytes(good[: len(good) // 2])
    bad["notjpeg"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    bad["noexif"].write_bytes(synth.base_frames(*SIZE)[1])
    return bad


def amly(
    *args: str | os.PathLike[str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m amly ARGS`` as a user runs it (no progress bar, captured output)."""
    return subprocess.run(
        [sys.executable, "-m", "amly", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def amly_json(*args: str | os.PathLike[str]) -> tuple[int, dict[str, Any]]:
    out = amly(*args, "--json")
    assert out.stdout.strip(), out.stderr
    return out.returncode, json.loads(out.stdout)


def exiftool(*paths: Path) -> list[dict[str, Any]]:
    """Tags as exiftool reads them (numeric values), in the order given."""
    out = subprocess.run(
        ["exiftool", "-j", "-n", *map(str, paths)], capture_output=True, text=True, check=True
    )
    by_file = {d["SourceFile"]: d for d in json.loads(out.stdout)}
    return [by_file[str(p)] for p in paths]


def official_process_videos(folder: Path, desc: Path) -> dict[str, dict[str, Any]]:
    """``mapillary_tools process`` of the videos in ``folder``: its entries by file name."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mapillary_tools.commands",
            "process",
            str(folder),
            "--filetypes",
            "gopro,camm,blackvue",
            "--desc_path",
            str(desc),
            "--skip_process_errors",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return {Path(e["filename"]).name: e for e in json.loads(desc.read_text())}
