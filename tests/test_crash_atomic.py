"""Crash safety of update_exif: a writer killed with SIGKILL at random moments leaves every
photo either exactly as it was or exactly as it should become, and no temp file that looks
like a photo.

A subprocess rewrites the EXIF of many files in a loop (first pass: old -> new; later passes
rewrite new -> new, which also goes through temp + fsync + rename). The test kills it at a
random moment, several times, and compares every file with both precomputed versions.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from amly import synth
from amly.metadata import read_image, set_exif_bytes

N_FILES = 40
ROUNDS = 6

WORKER = """
import sys
from datetime import datetime, timedelta, timezone
from amly.metadata import update_exif
sys.path.insert(0, {tests!r})
from test_crash_atomic import fields_for

paths = sys.argv[1:]
print("ready", flush=True)
while True:
    for i, p in enumerate(paths):
        update_exif(p, **fields_for(i))
"""


def fields_for(i: int) -> dict[str, Any]:
    """The EXIF written to file ``i`` (shared with the worker, so both sides agree)."""
    t = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc) + timedelta(seconds=i)
    return {
        "capture_time": t,
        "lat": 40.0 + i * 1e-4,
        "lon": -3.7 - i * 1e-4,
        "heading": (i * 17) % 360,
        "description": f'{{"MAPFilename":"IMG_{i:05d}.jpg","MAPOrientation":1}}',
    }


@pytest.mark.timeout(120)
def test_kill_9_mid_run_leaves_old_or_new(tmp_path: Path) -> None:
    points = synth.drive(synth.DrivePlan(n=N_FILES))
    paths = synth.write_photos(tmp_path, points, size=(640, 360), geotag=False)
    old = [p.read_bytes() for p in paths]
    new = [set_exif_bytes(data, **fields_for(i)) for i, data in enumerate(old)]
    assert all(a != b for a, b in zip(old, new, strict=True))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    script = WORKER.format(tests=str(Path(__file__).parent))
    rnd = random.Random(2024)
    mixed_rounds = 0
    leftovers: set[str] = set()
    for r in range(ROUNDS):
        for p, data in zip(paths, old, strict=True):
            p.write_bytes(data)
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *map(str, paths)],
            stdout=subprocess.PIPE, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        # ~1 ms per file: most kills land in the first pass, the last one in a later pass.
        time.sleep(rnd.uniform(0.002, 0.04) if r < ROUNDS - 1 else 0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL  # it was still running: killed mid-loop
        states = []
        for i, p in enumerate(paths):
            data = p.read_bytes()
            assert data in (old[i], new[i]), f"{p.name} is neither the old nor the new version"
            states.append(data == new[i])
        mixed_rounds += any(states) and not all(states)
        names = {q.name for q in tmp_path.iterdir()} - {p.name for p in paths}
        # A kill between mkstemp and rename may leave a temp file: never one named *.jpg.
        assert all(n.startswith(".amly-") and n.endswith(".tmp") for n in names), names
        leftovers |= names
        for n in names:  # what a cleanup would do: these are never anyone's photo
            (tmp_path / n).unlink()
    # At least one kill landed in the first pass, with some files rewritten and some not.
    assert mixed_rounds >= 1
    print(f"{mixed_rounds}/{ROUNDS} kills mid first pass; temp files left: {len(leftovers)}")
    # And the new version is what we meant to write.
    check = tmp_path / "check.jpg"
    check.write_bytes(new[3])
    m = read_image(check)
    assert (m.lat, m.lon) == pytest.approx((40.0003, -3.7003), abs=1e-9)
    assert m.capture_time == fields_for(3)["capture_time"]
