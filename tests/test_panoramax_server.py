"""The real Panoramax backend of the tests: it is geovisio, it enforces auth, each test gets its
own empty instance, and the official client (panoramax-cli) uploads to it end to end."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _upload_helpers import tree
from panoramax_support import PANORAMAX_CLI_VENV, PanoramaxServer


def _post(url: str, body: dict[str, object], token: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_server_is_geovisio_with_auth_enforced(panoramax: PanoramaxServer) -> None:
    conf = panoramax.get("/api/configuration")
    assert isinstance(conf, dict) and conf["version"] == "2.15.1"
    status, body = _post(panoramax.url + "/api/upload_sets", {"title": "x"}, None)
    assert status == 401, body
    status, body = _post(panoramax.url + "/api/upload_sets", {"title": "x"}, "not-a-jwt")
    assert status == 401, body
    status, body = _post(panoramax.url + "/api/upload_sets", {"title": "x"}, panoramax.token)
    assert status == 200, body
    owner = panoramax.get(f"/api/users/{body['account_id']}")
    assert isinstance(owner, dict) and owner["name"] == "amly-test"


def test_each_test_gets_an_empty_instance(panoramax_open: PanoramaxServer) -> None:
    # the previous test created an upload set on its own copy of the template: none here
    status, body = _post(panoramax_open.url + "/api/upload_sets", {"title": "anon"}, None)
    assert status == 200, body
    search = panoramax_open.get("/api/search?limit=10")
    assert isinstance(search, dict) and search["features"] == []


@pytest.mark.slow
def test_official_cli_uploads_until_ready(panoramax: PanoramaxServer, tmp_path: Path) -> None:
    """panoramax-cli (the benchmarks' peer) uploads a tree; every picture ends up prepared by the
    server's background worker and searchable at its own position."""
    trees = tree(tmp_path / "photos", {"a": 4, "b": 3})
    proc = subprocess.run(
        [
            str(PANORAMAX_CLI_VENV / "bin" / "panoramax_cli"),
            "upload",
            str(tmp_path / "photos"),
            "--api-url",
            panoramax.url,
            "--token",
            panoramax.token,
            "--wait",
            "--parallel-uploads",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "200"},
        cwd=tmp_path,  # panoramax-cli writes trace files into its working folder on errors
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = panoramax.get("/api/search?limit=100")
    assert isinstance(found, dict)
    feats = found["features"]
    assert len(feats) == 7
    # the search lists only pictures the server has prepared
    assert {f["properties"]["original_file:name"] for f in feats} == {
        p.name for paths in trees.values() for p in paths
    }
    assert len({f["collection"] for f in feats}) == 2
