"""``amly upload`` / ``process-and-upload`` over real sockets against the local server."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _upload_helpers import (
    amly,
    check_cluster,
    cluster_names,
    clusters,
    env_for,
    md5,
    photos,
    summary,
    tree,
)

from amly.description import describe, dumps, embeddable
from amly.metadata import inject_description, read_image
from amly.server.testing import RunningServer, running_server

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "srv") as s:
        yield s


def test_subfolder_tree_one_cluster_per_sequence_exact_contents(
    srv: RunningServer, tmp_path: Path
) -> None:
    local = tree(tmp_path / "trips", {"a": 12, "b": 7, "c": 9})
    before = {p: md5(p) for ps in local.values() for p in ps}
    proc = amly(srv, tmp_path / "home", "upload", str(tmp_path / "trips"), "--subfolders", "--json")
    assert proc.returncode == 0, proc.stderr
    out = summary(proc)
    found = clusters(srv)
    assert sorted(out["cluster_ids"]) == sorted(found) and len(found) == 3
    for ps in local.values():
        (rows,) = [r for r in found.values() if cluster_names(r) == [p.name for p in ps]]
        check_cluster(srv, rows, ps)
    # the photos on disk are untouched; the description travelled only in the bytes sent
    assert {p: md5(p) for p in before} == before
    # read one received image back with exiftool: the embedded description is the DB's
    rows = next(iter(found.values()))
    received = srv.store_dir / rows[0]["path"]
    exif = json.loads(
        subprocess.run(
            ["exiftool", "-j", "-ImageDescription", str(received)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    assert json.loads(exif["ImageDescription"]) == json.loads(rows[0]["description"])
    assert out["counts"]["images"] == 28 and out["counts"]["sequences"] == 3


def test_rerun_skips_finished_and_reupload_makes_new_clusters(
    srv: RunningServer, tmp_path: Path
) -> None:
    tree(tmp_path / "t", {"a": 6, "b": 5})
    home = tmp_path / "home"
    assert amly(srv, home, "upload", str(tmp_path / "t"), "--subfolders").returncode == 0
    received = srv.stats.bytes_received
    proc = amly(srv, home, "upload", str(tmp_path / "t"), "--subfolders", "--json")
    assert proc.returncode == 0, proc.stderr
    out = summary(proc)
    assert out["counts"]["skipped_sequences"] == 2 and out["counts"]["bytes_sent"] == 0
    assert srv.stats.bytes_received == received and len(clusters(srv)) == 2
    proc = amly(srv, home, "upload", str(tmp_path / "t"), "--subfolders", "--reupload", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(clusters(srv)) == 4
    # the images themselves were not sent again (the server had every byte): manifests only
    assert srv.stats.bytes_received - received < 2000


def test_upload_folder_processed_by_amly_process(srv: RunningServer, tmp_path: Path) -> None:
    ps = photos(tmp_path / "p", 15)
    home = tmp_path / "home"
    env = env_for(srv, home)
    done = subprocess.run(
        [sys.executable, "-m", "amly", "process", str(tmp_path / "p"), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p" / "mapillary_image_description.json").exists()
    proc = amly(srv, home, "upload", str(tmp_path / "p"), "--json")
    assert proc.returncode == 0, proc.stderr
    (rows,) = clusters(srv).values()
    check_cluster(srv, rows, ps)


def test_upload_folder_processed_by_mapillary_tools(srv: RunningServer, tmp_path: Path) -> None:
    pytest.importorskip("mapillary_tools")
    ps = photos(tmp_path / "p", 10)
    env = env_for(srv, tmp_path / "home")
    env.update(HOME=str(tmp_path), MAPILLARY_TOOLS_PROMPT_DISABLED="YES")
    done = subprocess.run(
        [sys.executable, "-m", "mapillary_tools.commands", "process", str(tmp_path / "p")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    proc = amly(srv, tmp_path / "home", "upload", str(tmp_path / "p"), "--json")
    assert proc.returncode == 0, proc.stderr
    (rows,) = clusters(srv).values()
    check_cluster(srv, rows, ps)


def _zip_sequence(paths: list[Path], out: Path) -> None:
    """A sequence zip as the official tool writes one (descriptions embedded, md5 comment)."""
    with zipfile.ZipFile(out, "w") as z:
        for i, p in enumerate(paths):
            d = dumps(embeddable(describe(read_image(p))))
            z.writestr(f"{i}.jpg", inject_description(p.read_bytes(), d))
        z.comment = json.dumps({"sequence_md5sum": "0" * 32}).encode()


def test_upload_zip_files(srv: RunningServer, tmp_path: Path) -> None:
    a = photos(tmp_path / "a", 6, seed=3)
    b = photos(tmp_path / "b", 4, seed=4, lat=53.0)
    _zip_sequence(a, tmp_path / "a.zip")
    _zip_sequence(b, tmp_path / "b.zip")
    home = tmp_path / "home"
    proc = amly(srv, home, "upload", str(tmp_path / "a.zip"), str(tmp_path / "b.zip"), "--json")
    assert proc.returncode == 0, proc.stderr
    found = clusters(srv)
    assert sorted(cluster_names(r) for r in found.values()) == sorted(
        [[p.name for p in a], [p.name for p in b]]
    )
    again = amly(srv, home, "upload", str(tmp_path / "a.zip"), str(tmp_path / "b.zip"), "--json")
    assert summary(again)["counts"]["skipped_sequences"] == 2 and len(clusters(srv)) == 2


def test_dry_run_sends_nothing(srv: RunningServer, tmp_path: Path) -> None:
    tree(tmp_path / "t", {"a": 5, "b": 4})
    proc = amly(
        srv, tmp_path / "home", "upload", str(tmp_path / "t"), "--subfolders", "--dry-run", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    out = summary(proc)
    assert out["counts"]["images"] == 9 and out["counts"]["sequences"] == 2
    assert srv.stats.requests == 0 and clusters(srv) == {}


def test_unreadable_file_others_still_go(srv: RunningServer, tmp_path: Path) -> None:
    local = tree(tmp_path / "t", {"a": 8, "b": 6})
    bad = local["a"][3]
    bad.write_bytes(bad.read_bytes()[:500])  # truncated: no longer a readable JPEG
    proc = amly(srv, tmp_path / "home", "upload", str(tmp_path / "t"), "--subfolders", "--json")
    assert proc.returncode == 1, proc.stderr
    out = summary(proc)
    assert [f["file"] for f in out["failures"]] == [str(bad)]
    found = clusters(srv)
    names = sorted(cluster_names(r) for r in found.values())
    assert names == sorted([[p.name for p in local["a"] if p != bad], [p.name for p in local["b"]]])


def test_bad_token_exit_3_without_leaking(srv: RunningServer, tmp_path: Path) -> None:
    photos(tmp_path / "p", 3)
    token = "MLYsecretTOKENvalue0123456789"
    proc = amly(srv, tmp_path / "home", "upload", str(tmp_path / "p"), token=token)
    assert proc.returncode == 3
    assert "not authorised" in proc.stderr and "MAPILLARY_ACCESS_TOKEN" in proc.stderr
    assert token not in proc.stdout + proc.stderr and token[-10:] not in proc.stderr
    assert clusters(srv) == {}


def test_process_and_upload_tree(srv: RunningServer, tmp_path: Path) -> None:
    local = tree(tmp_path / "t", {"a": 10, "b": 8, "c": 5})
    (tmp_path / "t" / "c" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe1 not really")
    proc = amly(srv, tmp_path / "home", "process-and-upload", str(tmp_path / "t"), "--json")
    assert proc.returncode == 1, proc.stderr  # the broken photo is reported, the rest goes
    out = summary(proc)
    assert [f["file"] for f in out["failures"]] == [str(tmp_path / "t" / "c" / "broken.jpg")]
    found = clusters(srv)
    assert len(found) == 3 and sorted(out["cluster_ids"]) == sorted(found)
    for ps in local.values():
        (rows,) = [r for r in found.values() if cluster_names(r) == [p.name for p in ps]]
        check_cluster(srv, rows, ps)


def test_legacy_upload_scripts(srv: RunningServer, tmp_path: Path) -> None:
    tree(tmp_path / "t", {"a": 4, "b": 3})
    env = env_for(srv, tmp_path / "home")
    env.update(MAPILLARY_GRAPH_API_ENDPOINT=srv.url, MAPILLARY_UPLOAD_ENDPOINT=srv.url + "/upload")
    script = str(REPO / "scripts" / "upload.py")
    proc = subprocess.run(
        [sys.executable, script, str(tmp_path / "t"), "--upload_subfolders"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(clusters(srv)) == 2
    env.update(MAPILLARY_PERMISSION_HASH="x", MAPILLARY_SIGNATURE_HASH="y")
    env.pop("MAPILLARY_ACCESS_TOKEN")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "upload_with_authentication.py"),
            str(tmp_path / "t"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3 and "MAPILLARY_PERMISSION_HASH" in proc.stderr, proc.stderr


def test_legacy_upload_with_preprocessing(srv: RunningServer, tmp_path: Path) -> None:
    photos(tmp_path / "p", 12)
    env = env_for(srv, tmp_path / "home")
    env.update(MAPILLARY_GRAPH_API_ENDPOINT=srv.url, MAPILLARY_UPLOAD_ENDPOINT=srv.url + "/upload")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "upload_with_preprocessing.py"),
            str(tmp_path / "p"),
            "--remove_duplicates",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    ((rows),) = clusters(srv).values()
    assert len(rows) == 12
    heads = [json.loads(r["description"]).get("MAPCompassHeading") for r in rows]
    assert all(h is not None for h in heads)


def test_description_file_path_and_a_rejected_sequence(srv: RunningServer, tmp_path: Path) -> None:
    """A description file given directly; a sequence the server refuses (bad description)
    fails alone with exit 1 while the other one is uploaded."""
    good = photos(tmp_path / "good", 5, seed=1)
    bad = photos(tmp_path / "bad", 4, seed=2, lat=53.0)
    entries = []
    for seq, ps in (("0", good), ("1", bad)):
        for p in ps:
            d = describe(read_image(p))
            if seq == "1":
                d["MAPOrientation"] = 9  # the server validates and refuses the cluster
            entries.append({"filename": str(p), "filetype": "image", "MAPSequenceUUID": seq, **d})
    desc = tmp_path / "desc.json"
    desc.write_text(json.dumps(entries))
    proc = amly(srv, tmp_path / "home", "upload", str(desc), "--json")
    assert proc.returncode == 1, proc.stderr
    out = summary(proc)
    assert len(out["cluster_ids"]) == 1 and len(out["failures"]) == 1
    assert "MAPOrientation" in out["failures"][0]["error"]
    (rows,) = clusters(srv).values()
    check_cluster(srv, rows, good)
