"""The official uploader, ``mapillary_tools`` 0.14.7, uploads to our server unchanged.

It is driven as a user would drive it against the real service: a profile in its config file
(``MAPILLARY_CONFIG_PATH``, section ``[name]`` with ``user_upload_token``) selected with
``--user_name``, and the endpoints from ``MAPILLARY_GRAPH_API_ENDPOINT`` /
``MAPILLARY_UPLOAD_ENDPOINT``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from amly import synth
from amly.description import parse_capture_time, validate_embedded
from amly.server.testing import RunningServer, running_server

pytest.importorskip("mapillary_tools")


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "srv") as s:
        yield s


def official(
    srv: RunningServer, tmp: Path, *args: str, user: bool = True, write_config: bool = True
) -> subprocess.CompletedProcess[str]:
    config = tmp / "mapillary-config"
    if write_config:
        config.write_text(f"[amly]\nuser_upload_token = {srv.token}\n")
    env = dict(
        os.environ,
        HOME=str(tmp),
        MAPILLARY_GRAPH_API_ENDPOINT=srv.url,
        MAPILLARY_UPLOAD_ENDPOINT=srv.url + "/upload",
        MAPILLARY_CONFIG_PATH=str(config),
        MAPILLARY_UPLOAD_HISTORY_PATH=str(tmp / "history"),
        MAPILLARY_TOOLS_UPLOAD_CACHE_DIR=str(tmp / "cache"),
        MAPILLARY_TOOLS_PROMPT_DISABLED="YES",
    )
    return subprocess.run(
        [sys.executable, "-m", "mapillary_tools.commands", *args]
        + (["--user_name", "amly"] if user else []),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def photos(folder: Path, n: int) -> list[Path]:
    points = synth.drive(synth.DrivePlan(n=n, seed=5))
    return synth.write_photos(folder, points, size=(320, 180))


def check_cluster(srv: RunningServer, names: list[str]) -> list[sqlite3.Row]:
    """The one cluster holds every image, in capture order, bytes as the session key says."""
    con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    con.row_factory = sqlite3.Row
    (cluster,) = con.execute("SELECT id FROM clusters").fetchall()
    (seq,) = con.execute("SELECT id FROM sequences WHERE cluster_id = ?", (cluster[0],))
    rows = con.execute(
        "SELECT * FROM images WHERE sequence_id = ? ORDER BY seq_index", (seq[0],)
    ).fetchall()
    assert [r["seq_index"] for r in rows] == list(range(len(names)))
    descs = [json.loads(r["description"]) for r in rows]
    assert [d["MAPFilename"] for d in descs] == names
    assert all(validate_embedded(d) == [] for d in descs)
    times = [r["captured_at"] for r in rows]
    assert times == sorted(times)
    assert times == [int(parse_capture_time(d["MAPCaptureTime"]).timestamp() * 1000) for d in descs]
    keys = {k for k in srv.stats.bytes_by_key if k.endswith(".jpg")}
    md5s = []
    for r in rows:
        data = (srv.store_dir / r["path"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == r["md5"]
        md5s.append(r["md5"])
    assert {f"mly_tools_{m}.jpg" for m in md5s} == keys
    return rows


def test_process_and_upload_to_our_server(srv: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    paths = photos(folder, 8)
    p = official(srv, tmp_path, "process_and_upload", str(folder))
    assert p.returncode == 0, p.stderr[-3000:]
    assert srv.token not in p.stdout + p.stderr
    rows = check_cluster(srv, [x.name for x in paths])
    # exiftool reads back what the server stored: the description the official tool embedded
    out = subprocess.run(
        ["exiftool", "-j", "-ImageDescription", str(srv.store_dir / rows[0]["path"])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(json.loads(out.stdout)[0]["ImageDescription"]) == json.loads(
        rows[0]["description"]
    )
    stats = srv.stats
    assert stats.clusters == 1 and stats.by_status.keys() == {200}
    assert stats.by_route["/me"] >= 1  # it verified the profile against our /me


def test_official_tool_resumes_after_dropped_connections(
    srv: RunningServer, tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    paths = photos(folder, 4)
    sizes = sum(p.stat().st_size for p in paths)
    # every image needs at least two POSTs
    srv.faults.drop_after_bytes = min(p.stat().st_size for p in paths) * 2 // 3
    p = official(srv, tmp_path, "process_and_upload", str(folder))
    assert p.returncode == 0, p.stderr[-3000:]
    check_cluster(srv, [x.name for x in paths])
    assert srv.stats.dropped >= len(paths)
    # it resumed at our offset: (almost) nothing was sent twice
    jpg_bytes = sum(v for k, v in srv.stats.bytes_by_key.items() if k.endswith(".jpg"))
    assert jpg_bytes <= 1.1 * sizes * 1.01


def test_process_zip_then_upload_zip(srv: RunningServer, tmp_path: Path) -> None:
    folder, zips = tmp_path / "imgs", tmp_path / "zips"
    paths = photos(folder, 5)
    for args in (["process", str(folder)], ["zip", str(folder), str(zips)]):
        p = official(srv, tmp_path, *args, user=False)
        assert p.returncode == 0, p.stderr[-3000:]
    (archive,) = zips.glob("*.zip")
    empty = tmp_path / "no-images.json"  # its upload wants a description file; zips need none
    empty.write_text("[]")
    p = official(srv, tmp_path, "upload", str(zips), "--desc_path", str(empty))
    assert p.returncode == 0, p.stderr[-3000:]
    con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    assert con.execute("SELECT file_type FROM clusters").fetchall() == [("zip",)]
    rows = con.execute("SELECT description, md5, path FROM images ORDER BY seq_index").fetchall()
    assert [json.loads(d)["MAPFilename"] for d, _, _ in rows] == [x.name for x in paths]
    for _, md5, path in rows:
        assert hashlib.md5((srv.store_dir / path).read_bytes()).hexdigest() == md5


def test_authenticate_with_jwt_verifies_against_our_me(srv: RunningServer, tmp_path: Path) -> None:
    config = tmp_path / "mapillary-config"
    p = official(srv, tmp_path, "authenticate", "--jwt", srv.token, write_config=False)
    assert p.returncode == 0, p.stderr[-3000:]
    text = config.read_text()  # written by mapillary_tools after asking our /me
    assert srv.token in text and "amly-user" in text
    bad = "MLY|1|" + "0" * 40
    p = official(srv, tmp_path, "authenticate", "--jwt", bad, write_config=False)
    assert p.returncode != 0 and bad not in config.read_text()


def test_authenticate_with_email_logs_in_at_our_login(srv: RunningServer, tmp_path: Path) -> None:
    from amly.server.auth import STORE_KEY, ensure_user

    uid = srv.call(ensure_user, srv.app[STORE_KEY], "carol", email="c@x.org", password="pw pw pw")
    args = ("authenticate", "--user_email", "c@x.org", "--user_password", "pw pw pw")
    p = official(srv, tmp_path, *args, write_config=False)
    assert p.returncode == 0, p.stderr[-3000:]
    text = (tmp_path / "mapillary-config").read_text()
    assert "user_upload_token = MLY|" in text and f"MAPSettingsUserKey = {uid}" in text


# -- organizations --------------------------------------------------------------------------


def add_org(srv: RunningServer, name: str, org_id: str) -> str:
    from amly.server.auth import STORE_KEY

    store = srv.app[STORE_KEY]
    return str(srv.call(lambda: store.add_organization(name, org_id=org_id)))


def graph_get(srv: RunningServer, path: str) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(srv.url + path, headers={"Authorization": f"OAuth {srv.token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_get_organization_answers_what_the_official_tool_asks(srv: RunningServer) -> None:
    oid = add_org(srv, "Street Views of Berlin", "1234567")
    # exactly the request of mapillary_tools.api_v4.fetch_organization
    status, body = graph_get(srv, f"/{oid}?fields=slug,description,name")
    assert status == 200, body
    assert body == {
        "id": "1234567",
        "slug": "street-views-of-berlin",
        "description": "",
        "name": "Street Views of Berlin",
    }
    status, body = graph_get(srv, f"/{oid}?fields=name,geometry")
    assert status == 400 and "(Organization)" in str(body["error"])
    status, body = graph_get(srv, "/7654321?fields=slug,description,name")
    assert status == 404 and body["error"]["error_subcode"] == 33  # type: ignore[index]


def test_process_and_upload_with_organization_key(srv: RunningServer, tmp_path: Path) -> None:
    oid = add_org(srv, "Team Mapillary", "987654321")
    folder = tmp_path / "imgs"
    paths = photos(folder, 3)
    p = official(srv, tmp_path, "process_and_upload", str(folder), "--organization_key", oid)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Team Mapillary" in p.stderr  # it logged the name our GET /{id} answered
    rows = check_cluster(srv, [x.name for x in paths])
    assert {r["organization_id"] for r in rows} == {oid}
    con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    assert con.execute("SELECT organization_id FROM clusters").fetchall() == [(oid,)]
    assert con.execute("SELECT organization_id FROM sequences").fetchall() == [(oid,)]
    assert srv.stats.unknown_organizations == 0


def test_official_tool_refuses_an_unknown_organization_key(
    srv: RunningServer, tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    photos(folder, 2)
    p = official(srv, tmp_path, "process_and_upload", str(folder), "--organization_key", "55555")
    assert p.returncode != 0
    assert srv.stats.by_status[404] >= 1 and srv.stats.clusters == 0


def test_cli_add_org(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    env = dict(os.environ, AMLY_HOME=str(tmp_path / "home"))

    def amly(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "amly", "server", "--data", str(data), *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    p = amly("--add-org", "Alpha Team", "--json")
    assert p.returncode == 0, p.stderr
    org = json.loads(p.stdout)["organization"]
    assert org["name"] == "Alpha Team" and org["slug"] == "alpha-team" and org["id"].isdigit()
    p = amly("--add-org", "Beta", "--org-id", "42")
    assert (p.returncode, p.stdout.strip()) == (0, "organization Beta: id 42"), p.stderr
    assert amly("--add-org", "Gamma", "--org-id", "4x2").returncode == 2
    assert amly("--org-id", "42").returncode == 2
    with running_server(data) as s:
        assert graph_get(s, "/42?fields=name") == (200, {"id": "42", "name": "Beta"})


def test_seeded_organizations_exist(tmp_path: Path) -> None:
    from amly.server.seed import seed_store
    from amly.server.store import Store

    store = Store(tmp_path / "srv")
    try:
        summary = seed_store(store, 40, (13.40, 52.50, 13.409, 52.509), seed=3, org_share=1.0)
        used = {r[0] for r in store.db.execute("SELECT DISTINCT organization_id FROM images")}
        assert used and used <= set(summary["organizations"])
        for oid in summary["organizations"]:
            row = store.organization(oid)
            assert row is not None and row["name"] and row["slug"]
    finally:
        store.close()
    with running_server(tmp_path / "srv") as s:
        oid = summary["organizations"][0]
        status, body = graph_get(s, f"/{oid}?fields=slug,description,name")
        assert status == 200 and body["id"] == oid
