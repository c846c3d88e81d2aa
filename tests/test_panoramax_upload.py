"""``amly upload --to panoramax`` against a real geovisio: what lands (read back through its API),
reruns, interrupted runs, 409s, rejections, auth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _upload_helpers import photos, tree
from panoramax_support import PanoramaxServer

from amly.metadata import read_image


def run_amly(
    home: Path, *args: str, token: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAPILLARY_", "PANORAMAX_"))}
    env["AMLY_HOME"] = str(home)
    if token:
        env["PANORAMAX_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "amly", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def upload_cmd(root: Path, srv: PanoramaxServer, *extra: str) -> list[str]:
    return [
        "upload",
        str(root),
        "--subfolders",
        "--to",
        "panoramax",
        "--api-url",
        srv.url,
        "--json",
        "--no-progress",
        *extra,
    ]


def out(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), proc.stderr
    return dict(json.loads(proc.stdout))


def items_of(srv: PanoramaxServer, collection: str) -> list[dict[str, Any]]:
    """Every item of a collection through its STAC API, following ``next`` links."""
    found: list[dict[str, Any]] = []
    path: str | None = f"/api/collections/{collection}/items?limit=100"
    while path:
        page = srv.get(path)
        assert isinstance(page, dict)
        found.extend(page["features"])
        nxt = [link["href"] for link in page.get("links", []) if link.get("rel") == "next"]
        path = nxt[0].replace(srv.url, "") if nxt else None
    return found


def check_lands(srv: PanoramaxServer, summary: dict[str, Any], local: dict[str, list[Path]]):
    """Each local folder is one ready upload set with one collection whose pictures carry the
    photos' own positions, times and headings (as exiftool-independent amly reads them)."""
    seqs = summary["sequences"]
    assert len(seqs) == len(local)
    by_name = {}
    for s in seqs:
        us = srv.get(f"/api/upload_sets/{s['upload_set_id']}")
        assert isinstance(us, dict)
        assert us["completed"] and us["dispatched"] and us["ready"], us
        assert us["no_split"] is True and us["no_deduplication"] is True
        assert len(us["associated_collections"]) == 1
        assert s["collections"] == [us["associated_collections"][0]["id"]]
        feats = items_of(srv, s["collections"][0])
        names = sorted(f["properties"]["original_file:name"] for f in feats)
        by_name[tuple(names)] = feats
    for _folder, paths in local.items():
        feats = by_name[tuple(sorted(p.name for p in paths))]
        by_file = {f["properties"]["original_file:name"]: f for f in feats}
        for p in paths:
            meta = read_image(p)
            f = by_file[p.name]
            lon, lat = f["geometry"]["coordinates"]
            assert abs(lat - meta.lat) < 1e-6 and abs(lon - meta.lon) < 1e-6
            assert meta.capture_time is not None and meta.heading is not None
            from datetime import datetime

            t = datetime.fromisoformat(f["properties"]["datetime"])
            assert abs((t - meta.capture_time).total_seconds()) < 0.01, (t, meta.capture_time)
            assert abs(f["properties"]["view:azimuth"] - meta.heading) <= 1
        # the server kept amly's order: capture time
        ranks = sorted(feats, key=lambda f: f["properties"]["geovisio:rank_in_collection"])
        times = [f["properties"]["datetime"] for f in ranks]
        assert times == sorted(times)


def test_tree_lands_as_one_set_per_sequence_then_rerun_sends_nothing(
    panoramax: PanoramaxServer, tmp_path: Path
) -> None:
    local = tree(tmp_path / "t", {"a": 6, "b": 5, "c": 4})
    home = tmp_path / "home"
    first = run_amly(home, *upload_cmd(tmp_path / "t", panoramax, "--wait"), token=panoramax.token)
    assert first.returncode == 0, first.stderr
    summary = out(first)
    assert summary["counts"]["images"] == 15
    assert summary["counts"]["sequences"] == 3
    assert summary["counts"]["ready_sets"] == 3
    assert summary["counts"]["bytes_sent"] == sum(
        p.stat().st_size for ps in local.values() for p in ps
    )
    check_lands(panoramax, summary, local)

    again = run_amly(home, *upload_cmd(tmp_path / "t", panoramax), token=panoramax.token)
    assert again.returncode == 0, again.stderr
    s2 = out(again)
    assert s2["counts"]["bytes_sent"] == 0
    assert s2["counts"]["skipped_sequences"] == 3
    assert sorted(s2["upload_set_ids"]) == sorted(summary["upload_set_ids"])
    found = panoramax.get("/api/search?limit=100")
    assert isinstance(found, dict) and len(found["features"]) == 15


def test_lost_journal_409s_are_not_errors(panoramax: PanoramaxServer, tmp_path: Path) -> None:
    """Without its journal a rerun creates new sets, but the server refuses the same bytes
    (409: it has them) and amly counts them as already there, exit 0."""
    local = {"a": photos(tmp_path / "t" / "a", 5)}
    first = run_amly(
        tmp_path / "h1", *upload_cmd(tmp_path / "t", panoramax, "--wait"), token=panoramax.token
    )
    assert first.returncode == 0, first.stderr
    again = run_amly(tmp_path / "h2", *upload_cmd(tmp_path / "t", panoramax), token=panoramax.token)
    assert again.returncode == 0, again.stderr
    s2 = out(again)
    assert s2["counts"]["already_uploaded"] == len(local["a"])
    assert s2["counts"].get("failed", 0) == 0
    found = panoramax.get("/api/search?limit=100")
    assert isinstance(found, dict) and len(found["features"]) == 5


def test_rejected_file_reported_with_the_servers_reason(
    panoramax: PanoramaxServer, tmp_path: Path
) -> None:
    good = photos(tmp_path / "t" / "a", 4)
    # a photo without a position (the server needs one): amly's processing would drop it, so
    # send it through a description file that lists it with a position the file lacks...
    # simpler and closer to real life: a JPEG the server cannot open.
    bad = tmp_path / "t" / "a" / "IMG_99999.jpg"
    bad.write_bytes(good[0].read_bytes()[:400])
    proc = run_amly(
        tmp_path / "h", *upload_cmd(tmp_path / "t", panoramax, "--wait"), token=panoramax.token
    )
    summary = out(proc)
    # the truncated file is refused by amly's own reader or by the server; either way it is
    # named with a reason, the others land, and the exit code says something failed
    assert proc.returncode == 1, proc.stderr
    assert [f["file"] for f in summary["failures"]] == [str(bad)]
    assert summary["counts"]["images"] == 4
    found = panoramax.get("/api/search?limit=100")
    assert isinstance(found, dict) and len(found["features"]) == 4


def test_bad_token_and_not_panoramax(panoramax: PanoramaxServer, tmp_path: Path) -> None:
    photos(tmp_path / "t" / "a", 2)
    bad = run_amly(tmp_path / "h", *upload_cmd(tmp_path / "t", panoramax), token="x.y.z")
    assert bad.returncode == 3, bad.stderr
    assert "PANORAMAX_TOKEN" in bad.stderr and "x.y.z" not in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr
    none = run_amly(tmp_path / "h", *upload_cmd(tmp_path / "t", panoramax))
    assert none.returncode == 3, none.stderr
    other = run_amly(
        tmp_path / "h",
        *upload_cmd(tmp_path / "t", panoramax)[:6],
        f"{panoramax.url}/api/pictures",
        "--json",
        token=panoramax.token,
    )
    assert other.returncode == 4, other.stderr
    assert "not a Panoramax instance" in other.stderr
    gone = run_amly(
        tmp_path / "h", *upload_cmd(tmp_path / "t", panoramax)[:6], "http://127.0.0.1:9", "--json"
    )
    assert gone.returncode == 4, gone.stderr
    assert "cannot connect" in gone.stderr and "Traceback" not in gone.stderr


def test_anonymous_upload_where_auth_is_off(
    panoramax_open: PanoramaxServer, tmp_path: Path
) -> None:
    local = {"a": photos(tmp_path / "t" / "a", 3)}
    proc = run_amly(tmp_path / "h", *upload_cmd(tmp_path / "t", panoramax_open, "--wait"))
    assert proc.returncode == 0, proc.stderr
    check_lands(panoramax_open, out(proc), local)


@pytest.mark.slow
def test_killed_run_resumes_without_sending_twice(
    panoramax: PanoramaxServer, tmp_path: Path
) -> None:
    local = tree(tmp_path / "t", {"a": 30, "b": 25})
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAPILLARY_", "PANORAMAX_"))}
    env.update(AMLY_HOME=str(home), PANORAMAX_TOKEN=panoramax.token)
    cmd = [
        sys.executable,
        "-m",
        "amly",
        *upload_cmd(tmp_path / "t", panoramax, "--concurrency", "1"),
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the upload finished before it could be interrupted"
        # files the server has accepted so far (its own table: the search lists prepared ones)
        if int(panoramax.cluster.psql("SELECT count(*) FROM files", panoramax.db) or 0) >= 5:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run([*cmd, "--wait"], env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    summary = out(rerun)
    total = sum(len(v) for v in local.values())
    assert summary["counts"]["images"] == total
    # what the server had before the kill was not sent again
    assert summary["counts"]["already_uploaded"] >= 5
    assert summary["counts"]["bytes_sent"] < sum(
        p.stat().st_size for ps in local.values() for p in ps
    )
    check_lands(panoramax, summary, local)
    # one set per sequence, never a second one
    sets = {s["upload_set_id"] for s in summary["sequences"]}
    assert len(sets) == 2


def test_auth_service_panoramax_then_upload_with_the_profile(
    panoramax: PanoramaxServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAPILLARY_", "PANORAMAX_"))}
    env["AMLY_HOME"] = str(home)
    base = [sys.executable, "-m", "amly", "auth", "--service", "panoramax", "--api-url"]
    bad = subprocess.run(
        [*base, panoramax.url, "--token", "-"],
        input="x.y.z\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 3, bad.stderr
    assert not (home / "profiles.json").exists()
    good = subprocess.run(
        [*base, panoramax.url, "--token", "-", "--json"],
        input=panoramax.token + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["username"] == "amly-test"
    assert panoramax.token not in good.stdout + good.stderr
    assert (home / "profiles.json").stat().st_mode & 0o777 == 0o600
    photos(tmp_path / "t" / "a", 2)
    up = run_amly(home, *upload_cmd(tmp_path / "t", panoramax))  # no token given: the profile
    assert up.returncode == 0, up.stderr
    assert out(up)["counts"]["images"] == 2


def test_asyncio_api_upload_then_search(panoramax: PanoramaxServer, tmp_path: Path) -> None:
    """The library road: ``Client.upload(..., target=client.panoramax_target(...))`` and
    ``client.panoramax_images``."""
    import asyncio

    import amly

    local = photos(tmp_path / "t" / "a", 4)

    async def main() -> tuple[Any, list[Any]]:
        async with amly.Client(journal=tmp_path / "j.sqlite3") as client:
            target = client.panoramax_target(panoramax.url, panoramax.token)
            result = await client.upload([tmp_path / "t" / "a"], target=target)
            await target.wait_ready(result.cluster_ids)
            found = [i async for i in client.panoramax_images(panoramax.url, (-180, -85, 180, 85))]
            return result, found

    result, found = asyncio.run(main())
    assert result.ok and result.images == 4 and len(result.cluster_ids) == 1
    assert sorted(i["properties"]["original_file:name"] for i in found) == [p.name for p in local]
