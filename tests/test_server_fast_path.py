"""The server's per-request shortcuts keep their guarantees: the cached token lookup sees
every token change (through the server's own connection or another one), and a client
going away mid-body is one quiet log line with its bytes kept."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from amly.server.auth import STORE_KEY, add_token, ensure_user
from amly.server.testing import RunningServer, running_server


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "srv") as s:
        yield s


def status(srv: RunningServer, path: str, token: str) -> int:
    req = urllib.request.Request(srv.url + path, headers={"Authorization": "OAuth " + token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def other_connection(srv: RunningServer, sql: str, *args: object) -> None:
    """A change by another process (e.g. ``amly server --add-user`` on the same data dir)."""
    con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3", isolation_level=None)
    try:
        con.execute(sql, args)
    finally:
        con.close()


def test_token_changes_are_seen_at_once(srv: RunningServer) -> None:
    store = srv.app[STORE_KEY]
    assert status(srv, "/me", srv.token) == 200
    assert status(srv, "/me", srv.token) == 200  # now cached
    other_connection(
        srv, "UPDATE tokens SET expires = ? WHERE token = ?", time.time() - 1, srv.token
    )
    assert status(srv, "/me", srv.token) == 401
    other_connection(srv, "UPDATE tokens SET expires = NULL WHERE token = ?", srv.token)
    assert status(srv, "/me", srv.token) == 200
    other_connection(srv, "DELETE FROM tokens WHERE token = ?", srv.token)
    assert status(srv, "/me", srv.token) == 401
    srv.call(add_token, store, srv.call(ensure_user, store, "amly-user"), srv.token)
    assert status(srv, "/me", srv.token) == 200
    srv.call(lambda: store.db.execute("DELETE FROM tokens"))  # the server's own connection
    assert status(srv, "/me", srv.token) == 401
    assert status(srv, "/upload/x.bin", srv.token) == 401


def test_client_gone_mid_body_is_quiet_and_keeps_bytes(
    srv: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key, sent = "gone.bin", 70_000
    head = (
        f"POST /upload/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: OAuth {srv.token}\r\n"
        f"Offset: 0\r\nContent-Length: 200000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(head + b"x" * sent)
        time.sleep(0.2)
    for _ in range(100):  # the server notices the close asynchronously
        if any("went away" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.05)
    req = urllib.request.Request(
        f"{srv.url}/upload/{key}", headers={"Authorization": "OAuth " + srv.token}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.load(r) == {"offset": sent}
    assert (srv.store_dir / "uploads" / key).stat().st_size == sent
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno <= logging.INFO
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


def post(
    srv: RunningServer, key: str, offset: int, body: bytes, **headers: str
) -> tuple[int, dict]:
    h = {"Authorization": "OAuth " + srv.token, "Offset": str(offset), **headers}
    req = urllib.request.Request(f"{srv.url}/upload/{key}", data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status), json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_bodies_bigger_than_the_memory_buffer_stream_to_disk_and_are_checked(
    srv: RunningServer,
) -> None:
    import hashlib
    import random

    data = random.Random(5).randbytes(2_600_000)  # several 1 MiB flushes
    key = f"mly_tools_{hashlib.md5(data).hexdigest()}.jpg"
    status, body = post(srv, key, 0, data)
    assert status == 200 and body["h"]
    assert (srv.store_dir / "uploads" / key).read_bytes() == data
    # the same, in two POSTs (the second cannot hash from the start: the file is hashed)
    key2 = f"mly_tools_{hashlib.md5(data[::-1]).hexdigest()}.jpg"
    status, body = post(srv, key2, 0, data[::-1][:1_500_000], **{"X-Entity-Length": "2600000"})
    assert (status, body) == (200, {"offset": 1_500_000})
    status, body = post(srv, key2, 1_500_000, data[::-1][1_500_000:])
    assert status == 200 and body["h"]
    assert (srv.store_dir / "uploads" / key2).read_bytes() == data[::-1]
    # bytes that do not match the key's md5 are refused and dropped
    bad = f"mly_tools_{'0' * 32}.jpg"
    status, body = post(srv, bad, 0, data)
    assert status == 400 and body["debug_info"]["type"] == "InvalidChecksumError"
    assert not (srv.store_dir / "uploads" / bad).exists()
