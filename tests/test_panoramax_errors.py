"""Answers the real geovisio cannot be made to give on demand (an instance older than upload
sets, a set whose pictures it marks broken): a small HTTP proxy of ours in front of the real
server passes everything through and rewrites only that one answer."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _upload_helpers import photos, tree
from panoramax_support import PanoramaxServer
from test_panoramax_upload import out, run_amly, upload_cmd

Rewrite = Callable[[str, str, Any], Any]  # (method, path, JSON answer) -> JSON answer


class LostAnswer(Exception):
    """Raised by a rewrite: the proxy answers 503 in place of what the server said."""


HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


@contextmanager
def rewriting_proxy(backend: str, rewrite: Rewrite) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` forwarding every request to ``backend``; JSON answers go
    through ``rewrite``."""
    target = urlsplit(backend)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["Accept-Encoding"] = "identity"
            conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP]
            finally:
                conn.close()
            if "json" in (resp.getheader("Content-Type") or ""):
                try:
                    doc = json.loads(data)
                except ValueError:
                    pass
                else:
                    try:
                        data = json.dumps(rewrite(self.command, self.path, doc)).encode()
                    except LostAnswer:
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
            self.send_response(resp.status)
            for k, v in kept:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def test_instance_too_old_for_upload_sets(panoramax: PanoramaxServer, tmp_path: Path) -> None:
    def old(method: str, path: str, doc: Any) -> Any:
        if path.startswith("/api/configuration") and isinstance(doc, dict):
            doc["version"] = "2.6.0"
        return doc

    photos(tmp_path / "t" / "a", 2)
    with rewriting_proxy(panoramax.url, old) as url:
        cmd = upload_cmd(tmp_path / "t", panoramax)
        cmd[cmd.index(panoramax.url)] = url
        run = run_amly(tmp_path / "h", *cmd, token=panoramax.token)
    assert run.returncode == 5, run.stderr
    assert "2.6.0" in run.stderr and "too old" in run.stderr and "2.7" in run.stderr
    assert "Traceback" not in run.stderr and panoramax.token not in run.stderr + run.stdout
    found = panoramax.get("/api/search?limit=10")
    assert isinstance(found, dict) and found["features"] == []  # nothing was sent


def test_set_marked_broken_others_go_on(panoramax: PanoramaxServer, tmp_path: Path) -> None:
    broken_title = "b"

    def breaks_b(method: str, path: str, doc: Any) -> Any:
        # the set of folder "b": the server says it prepared none and broke every picture
        if (
            method == "GET"
            and path.startswith("/api/upload_sets/")
            and isinstance(doc, dict)
            and doc.get("title") == broken_title
            and isinstance(doc.get("items_status"), dict)
        ):
            items = doc["items_status"]
            n = sum(int(items.get(k) or 0) for k in ("prepared", "not_processed", "preparing"))
            items.update(prepared=0, not_processed=0, preparing=0, broken=n)
            doc.update(ready=False, dispatched=True)
        return doc

    tree(tmp_path / "t", {"a": 3, "b": 4})
    with rewriting_proxy(panoramax.url, breaks_b) as url:
        cmd = upload_cmd(tmp_path / "t", panoramax, "--wait")
        cmd[cmd.index(panoramax.url)] = url
        run = run_amly(tmp_path / "h", *cmd, token=panoramax.token)
    assert run.returncode == 6, run.stderr
    summary = out(run)
    assert summary["counts"]["ready_sets"] == 1  # "a" went on and is ready
    (failure,) = summary["failures"]
    assert failure["type"] == "broken upload set"
    assert "could not prepare 4 picture(s)" in failure["error"]
    assert "Traceback" not in run.stderr
    by_title = {}
    for entry in summary["sequences"]:
        us = panoramax.get(f"/api/upload_sets/{entry['upload_set_id']}")
        assert isinstance(us, dict)
        by_title[us["title"]] = entry
    assert by_title["a"]["ready"] is True and by_title["b"]["broken"] == 4
    assert failure["file"] == by_title["b"]["name"]  # the summary names the broken one


def api(srv: PanoramaxServer, method: str, path: str, body: Any = None) -> Any:
    """The real server, as the token's account."""
    req = urllib.request.Request(
        srv.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {srv.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def unfinished_sets(srv: PanoramaxServer) -> list[dict[str, Any]]:
    return list(api(srv, "GET", "/api/users/me/upload_sets?limit=100")["upload_sets"])


def test_lost_creation_answer_makes_no_second_set(
    panoramax: PanoramaxServer, tmp_path: Path
) -> None:
    """The server creates the set but its answer is lost (a 503 in its place): the retry
    finds the set by its key instead of creating another, which would stay behind empty."""
    posts: list[str] = []

    def lose_first_creation(method: str, path: str, doc: Any) -> Any:
        if method == "POST" and path.rstrip("/") == "/api/upload_sets":
            posts.append(path)
            if len(posts) == 1:
                raise LostAnswer
        return doc

    photos(tmp_path / "t" / "a", 3)
    with rewriting_proxy(panoramax.url, lose_first_creation) as url:
        cmd = upload_cmd(tmp_path / "t", panoramax, "--wait")
        cmd[cmd.index(panoramax.url)] = url
        run = run_amly(tmp_path / "h", *cmd, token=panoramax.token)
    assert run.returncode == 0, run.stderr
    assert len(posts) == 1  # created once, found again on the retry
    assert len(out(run)["upload_set_ids"]) == 1
    assert unfinished_sets(panoramax) == []  # no empty set left behind
    found = panoramax.get("/api/search?limit=10")
    assert isinstance(found, dict) and len(found["features"]) == 3


def test_set_of_a_run_that_died_before_recording_it_is_reused(
    panoramax: PanoramaxServer, tmp_path: Path
) -> None:
    photos(tmp_path / "t" / "a", 3)
    dry = run_amly(tmp_path / "h", *upload_cmd(tmp_path / "t", panoramax, "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    (seq,) = out(dry)["sequences"]
    # what a run that died right after the creation leaves: a set with amly's key, no record
    orphan = api(
        panoramax,
        "POST",
        "/api/upload_sets",
        {"title": "a", "estimated_nb_files": 3, "metadata": {"amly_sequence": seq["name"]}},
    )
    run = run_amly(tmp_path / "h", *upload_cmd(tmp_path / "t", panoramax, "--wait"),
                   token=panoramax.token)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert out(run)["upload_set_ids"] == [orphan["id"]]
    assert unfinished_sets(panoramax) == []
