"""``amly process`` and the pipeline under it: the description file in the official format
(checked with mapillary_tools' own schema and reader), GeoJSON, summary, exit codes, no photo
modified; the scanner, the bounded pool and the asyncio producer."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from _process_helpers import add_bad_files, amly, amly_json, drive, write_drive

from amly import pipeline, synth
from amly.errors import FileError

DESC = "mapillary_image_description.json"


def make_tree(root: Path) -> dict[str, list[Path]]:
    """Two drives in two subfolders (each: a red-light stop, a parking gap) + bad files."""
    a = write_drive(root / "day1", drive(60))
    b = write_drive(root / "day2" / "cam", drive(40, start_lat=48.1, start_lon=11.5, seed=3))
    bad = add_bad_files(root / "day1")
    (root / ".hidden.jpg").write_bytes(b"not scanned")
    (root / "day1" / ".amly-tmp123.jpg").write_bytes(b"not scanned")
    (root / "notes.txt").write_text("not a photo")
    return {"day1": a, "day2": b, "bad": list(bad.values())}


def validate_official(entries: list[dict]) -> None:
    from mapillary_tools.serializer.description import (
        DescriptionJSONSerializer,
        ImageDescriptionFileSchemaValidator,
    )

    for e in entries:
        if "error" in e:
            assert set(e) <= {"filename", "filetype", "error"}
            assert isinstance(e["error"]["type"], str) and isinstance(e["error"]["message"], str)
            json.dumps(e)
        else:
            ImageDescriptionFileSchemaValidator.validate(e)
    # and the official reader accepts the file as a whole
    metas = DescriptionJSONSerializer.deserialize(json.dumps(entries).encode())
    assert len(metas) == sum("error" not in e for e in entries)


def test_process_tree(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    photos = [*tree["day1"], *tree["day2"], *tree["bad"]]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in photos}
    geojson = tmp_path / "out.geojson"
    code, summary = amly_json("process", tmp_path, "--geojson", geojson)
    assert code == 1
    # nothing modified
    assert all((p.read_bytes(), p.stat().st_mtime_ns) == before[p] for p in photos)
    c = summary["counts"]
    assert c["images"] == 104 and c["sequences"] == 4
    by_type = summary["errors_by_type"]
    assert by_type["MapillaryExifError"] == 4  # zero, truncated, not a JPEG, no EXIF
    assert by_type["MapillaryDuplicationError"] == c["duplicates"] == 12  # 6 + 6 at the lights
    assert c["ready"] == 104 - 4 - 12
    assert {os.path.basename(f["file"]) for f in summary["failures"]} == {
        p.name for p in tree["bad"]
    }
    entries = json.loads((tmp_path / DESC).read_text())
    validate_official(entries)
    assert sorted(e["filename"] for e in entries) == sorted(str(p) for p in photos)
    ready = [e for e in entries if "error" not in e]
    seqs = Counter(e["MAPSequenceUUID"] for e in ready)
    assert len(seqs) == 4
    # each sequence lives in one folder; the parking gap splits each day in two
    for uuid in seqs:
        assert (
            len({os.path.dirname(e["filename"]) for e in ready if e["MAPSequenceUUID"] == uuid})
            == 1
        )
    doc = json.loads(geojson.read_text())
    lines = [f for f in doc["features"] if f["properties"]["kind"] == "sequence"]
    points = [f for f in doc["features"] if f["properties"]["kind"] == "flagged"]
    assert len(lines) == 4 and all(f["geometry"]["type"] == "LineString" for f in lines)
    assert sum(f["properties"]["images"] for f in lines) == c["ready"]
    assert len(points) == 12
    assert {f["properties"]["type"] for f in points} == {"MapillaryDuplicationError"}
    lon, lat = points[0]["geometry"]["coordinates"]
    assert 52 < lat < 53 and 13 < lon < 14


def test_process_is_deterministic_and_matches_async(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert amly("process", tmp_path, "--desc-path", tmp_path / "1.json", "-q").returncode == 1
    assert amly("process", tmp_path, "--desc-path", tmp_path / "2.json", "-q").returncode == 1
    one = json.loads((tmp_path / "1.json").read_text())
    assert one == json.loads((tmp_path / "2.json").read_text())

    async def collect() -> list[tuple[str, list[str]]]:
        report = pipeline.Report()
        out = [
            (s.uuid, [m.path for m in s.images])
            async for s in pipeline.iter_sequences([tmp_path], report=report)
        ]
        assert report.images == 104 and report.sequences == len(out) == 4
        return out

    seqs = asyncio.run(collect())
    from_file: dict[str, list[str]] = {}
    for e in one:
        if "error" not in e:
            from_file.setdefault(e["MAPSequenceUUID"], []).append(e["filename"])
    assert {u: sorted(p) for u, p in seqs} == {u: sorted(p) for u, p in from_file.items()}


def test_producer_emits_folder_by_folder(tmp_path: Path) -> None:
    for k in range(3):
        write_drive(tmp_path / f"f{k}", drive(30, seed=k))

    async def main() -> tuple[int, int, int]:
        report = pipeline.Report()
        folders_when_first, n = 0, 0
        async for seq in pipeline.iter_sequences([tmp_path], report=report):
            if n == 0:
                folders_when_first = report.folders  # the first folder's sequences come first
                assert seq.images
            n += 1
        return folders_when_first, n, report.folders

    when_first, n, total = asyncio.run(main())
    assert when_first == 1 and total == 3 and n == 6  # 2 sequences per folder (parking gap)


def test_process_outputs_and_multiple_dirs(tmp_path: Path) -> None:
    a = write_drive(tmp_path / "a", drive(20, park_at=None, stop_at=None))
    b = write_drive(tmp_path / "b", drive(20, park_at=None, stop_at=None, seed=2))
    code, summary = amly_json("process", tmp_path / "a", tmp_path / "b")
    assert code == 0 and summary["counts"]["sequences"] == 2
    for folder, photos in (("a", a), ("b", b)):  # one file per DIR, listing its photos
        entries = json.loads((tmp_path / folder / DESC).read_text())
        validate_official(entries)
        assert sorted(e["filename"] for e in entries) == [str(p) for p in photos]
    out = amly("process", tmp_path / "a", "--desc-path", "-")
    assert out.returncode == 0
    validate_official(json.loads(out.stdout))
    assert amly("process", tmp_path / "a", "--desc-path", "-", "--json").returncode == 2


def test_process_geotags_from_gpx_in_memory(tmp_path: Path) -> None:
    pts = drive(30, park_at=None)
    photos = write_drive(tmp_path / "p", pts, geotag=False, clock_offset=-4.0)
    (tmp_path / "t.gpx").write_text(synth.gpx_text(pts))
    before = [p.read_bytes() for p in photos]
    code, _ = amly_json(
        "process", tmp_path / "p", "--gpx", tmp_path / "t.gpx", "--offset-time", "4"
    )
    assert code == 0
    assert [p.read_bytes() for p in photos] == before
    entries = {e["filename"]: e for e in json.loads((tmp_path / "p" / DESC).read_text())}
    validate_official(list(entries.values()))
    for p, pt in zip(photos, pts, strict=True):
        e = entries[str(p)]
        if "error" in e:
            assert e["error"]["type"] == "MapillaryDuplicationError"
            continue
        assert abs(e["MAPLatitude"] - pt.lat) < 1e-6 and abs(e["MAPLongitude"] - pt.lon) < 1e-6
    # without the offset the first photos are before the track
    code, summary = amly_json("process", tmp_path / "p", "--gpx", tmp_path / "t.gpx")
    assert code == 1
    assert summary["errors_by_type"]["MapillaryOutsideGPXTrackError"] == 4


def test_scan_order_and_filters(tmp_path: Path) -> None:
    for name in [
        "b/2.JPG",
        "b/1.jpeg",
        "a.jpg",
        "c/d/e.Jpg",
        ".h/x.jpg",
        "b/.x.jpg",
        "b/.amly-1.jpg",
        "z.png",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    files = [os.path.relpath(f, tmp_path) for f in pipeline.scan_files([tmp_path])]
    assert files == ["a.jpg", "b/1.jpeg", "b/2.JPG", "c/d/e.Jpg"]
    flat = [os.path.relpath(f, tmp_path) for f in pipeline.scan_files([tmp_path], recursive=False)]
    assert flat == ["a.jpg"]
    with pytest.raises(FileNotFoundError):
        pipeline.scan([tmp_path / "missing"])


def _square(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x * x


def test_pool_keeps_order_and_turns_errors_into_values() -> None:
    with pipeline.Pool(2) as pool:
        out = list(pool.map(_square, range(200), chunk=3))
    assert [o for i, o in enumerate(out) if i != 7] == [i * i for i in range(200) if i != 7]
    assert isinstance(out[7], FileError) and "seven" in out[7].vars["exception"]
    assert "seven" not in out[7].message  # a person gets words, not the exception's text


def _relabel(image):  # type: ignore[no-untyped-def]
    """A per-image step for the pool: runs in the worker after reading."""
    import dataclasses

    from amly.errors import MetadataError

    if image.path.endswith("00003.jpg"):
        raise MetadataError(image.path, "rejected by the custom step")
    return dataclasses.replace(image, make="Relabelled")


def test_per_image_work_runs_in_the_pool(tmp_path: Path) -> None:
    write_drive(tmp_path, drive(20, park_at=None, stop_at=None))
    opts = pipeline.Options(work=_relabel, workers=2)
    groups = list(pipeline.iter_groups([tmp_path], opts))
    images = [m for g in groups for s in g.sequences for m in s.images]
    assert len(images) == 19 and {m.make for m in images} == {"Relabelled"}
    assert [e.message for g in groups for e in g.errors] == ["rejected by the custom step"]


_PARENT = os.getpid()


def _die_on_13(x: int) -> int:
    if x == 13 and os.getpid() != _PARENT:
        os._exit(3)  # a worker killed mid-chunk (OOM killer, kill -9...)
    return x + 1


def test_pool_survives_a_dying_worker() -> None:
    with pipeline.Pool(2) as pool:
        out = list(pool.map(_die_on_13, range(100), chunk=10))
    assert [o for i, o in enumerate(out) if i != 13] == [i + 1 for i in range(100) if i != 13]
    assert isinstance(out[13], FileError) and "died" in out[13].message

    async def run() -> list:
        with pipeline.Pool(2) as p:
            return [x async for part in p.amap(_die_on_13, range(60), chunk=10) for x in part]

    out = asyncio.run(run())
    assert out[12] == 13 and out[14] == 15 and isinstance(out[13], FileError)


def test_pool_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """``kill -9`` of amly must not leave its process-pool workers running."""
    import signal
    import textwrap
    import time

    script = textwrap.dedent(
        """
        import os, sys, time
        from amly.pipeline import Pool
        def slow(x):
            time.sleep(60)
            return x
        if __name__ == "__main__":
            with Pool(2) as pool:
                futures = [pool.executor.submit(slow, i) for i in range(4)]
                time.sleep(0.5)
                print(" ".join(str(p) for p in pool.executor._processes), flush=True)
                futures[0].result()
        """
    )
    (tmp_path / "s.py").write_text(script)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "s.py")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    workers = [int(p) for p in line.split()]
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [w for w in workers if os.path.exists(f"/proc/{w}") and _not_zombie(w)]
    assert not alive


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
