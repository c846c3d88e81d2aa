"""The local server's upload side over real sockets: the resumable protocol, finish_upload,
auth, fault injection and stats."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import piexif
import pytest

from amly import synth
from amly.config import CLIENT_TOKEN_DEFAULT
from amly.description import dumps, validate_embedded
from amly.server.faults import Faults
from amly.server.testing import RunningServer, running_server

# -- helpers ----------------------------------------------------------------------------------


class Client:
    """A tiny HTTP client on http.client: what we send is exactly what we wrote here."""

    def __init__(self, srv: RunningServer, token: str | None = None) -> None:
        u = urlsplit(srv.url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.token = srv.token if token is None else token

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        *,
        auth: str | None = "OAuth",
    ) -> tuple[int, Any, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = dict(headers or {})
        if auth:
            h["Authorization"] = f"{auth} {self.token}"
        chunked = body is not None and not isinstance(body, (bytes, bytearray))
        conn.request(method, path, body=body, headers=h, encode_chunked=chunked)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw
        return resp.status, data, resp

    def offset(self, key: str) -> int:
        status, data, _ = self.request("GET", f"/upload/{key}")
        assert status == 200, data
        return int(data["offset"])

    def post(self, key: str, offset: int, body: bytes | Iterable[bytes], **headers: str) -> Any:
        h = {"Offset": str(offset), "X-Entity-Name": key}
        h.update({k.replace("_", "-"): v for k, v in headers.items()})
        return self.request("POST", f"/upload/{key}", body, h)

    def upload(self, data: bytes, key: str | None = None) -> str:
        key = key or jpg_key(data)
        status, body, _ = self.post(key, self.offset(key), data[self.offset(key) :])
        assert status == 200, body
        return str(body["h"])

    def finish(self, handle: str, file_type: str = "mly_bundle_manifest", **extra: Any) -> Any:
        payload = json.dumps({"file_handle": handle, "file_type": file_type, **extra}).encode()
        return self.request("POST", "/finish_upload", payload, {"Content-Type": "application/json"})


def jpg_key(data: bytes) -> str:
    return f"mly_tools_{hashlib.md5(data).hexdigest()}.jpg"


def manifest_bytes(handles: list[str]) -> bytes:
    m = {"image_handles": handles, "upload_type": "images", "version": "1"}
    return json.dumps(m, sort_keys=True, separators=(",", ":")).encode()


def with_description(jpeg: bytes, desc: dict[str, Any] | str) -> bytes:
    text = desc if isinstance(desc, str) else dumps(desc)
    exif = piexif.load(jpeg)
    exif["0th"][piexif.ImageIFD.ImageDescription] = text.encode()
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), jpeg, out)
    return out.getvalue()


def description(p: synth.Point, name: str) -> dict[str, Any]:
    from amly.description import format_capture_time

    return {
        "MAPLatitude": round(p.lat, 7),
        "MAPLongitude": round(p.lon, 7),
        "MAPCaptureTime": format_capture_time(p.time),
        "MAPAltitude": round(p.alt or 0.0, 3),
        "MAPCompassHeading": {
            "TrueHeading": round(p.heading or 0, 3),
            "MagneticHeading": round(p.heading or 0, 3),
        },
        "MAPDeviceMake": "AmlyCam",
        "MAPDeviceModel": "Synth 1",
        "MAPFilename": name,
        "MAPOrientation": 1,
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, dict[str, Any]]]:
    """Five small synthetic JPEGs, each with a valid embedded description."""
    folder = tmp_path_factory.mktemp("photos")
    points = synth.drive(synth.DrivePlan(n=5, seed=11))
    paths = synth.write_photos(folder, points, size=(160, 96))
    out = []
    for p, path in zip(points, paths, strict=True):
        d = description(p, path.name)
        out.append((with_description(path.read_bytes(), d), d))
    return out


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "srv") as s:
        yield s


def db(srv: RunningServer) -> sqlite3.Connection:
    con = sqlite3.connect(srv.store_dir / "amly-server.sqlite3")
    con.row_factory = sqlite3.Row
    return con


# -- the resumable upload protocol ------------------------------------------------------------


def test_offset_unknown_is_zero_and_wrong_offset_is_412(srv: RunningServer) -> None:
    c = Client(srv)
    key = "uuid_" + "ab" * 16 + ".json"
    assert c.offset(key) == 0
    status, body, _ = c.post(key, 5, b"hello")
    assert status == 412
    assert body["debug_info"]["type"] == "OffsetInvalidError"
    assert body["debug_info"]["retriable"] is True
    assert c.offset(key) == 0
    assert srv.stats.offset_errors == 1


def test_upload_in_one_post_then_same_bytes_give_same_handle(
    srv: RunningServer, photos: list[tuple[bytes, dict[str, Any]]]
) -> None:
    c = Client(srv)
    data = photos[0][0]
    key = jpg_key(data)
    status, body, _ = c.post(key, 0, data)
    assert status == 200 and body["h"]
    handle = body["h"]
    assert c.offset(key) == len(data)
    # the official tool asks the offset first, then posts from there: nothing left to send
    status, again, _ = c.post(key, len(data), b"")
    assert (status, again) == (200, {"h": handle})
    # a client that sends everything again from 0 is told the right offset
    status, body, _ = c.post(key, 0, data)
    assert status == 412
    assert (srv.store_dir / "uploads" / key).read_bytes() == data


def test_chunked_transfer_body(srv: RunningServer, photos: list[tuple[bytes, Any]]) -> None:
    c = Client(srv)
    data = photos[1][0]
    key = jpg_key(data)
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    status, body, _ = c.post(key, 0, iter(chunks))
    assert status == 200, body
    assert (srv.store_dir / "uploads" / key).read_bytes() == data


def test_entity_length_style_completes_when_all_bytes_arrived(
    srv: RunningServer, photos: list[tuple[bytes, Any]]
) -> None:
    c = Client(srv)
    data = photos[2][0]
    key = jpg_key(data)
    n = len(data)
    first, second = data[: n // 3], data[n // 3 :]
    status, body, _ = c.post(key, 0, first, X_Entity_Length=str(n), X_Entity_Type="image/jpeg")
    assert status == 200 and "h" not in body and body["offset"] == len(first)
    status, body, _ = c.post(key, len(first), second, X_Entity_Length=str(n))
    assert status == 200 and body["h"]


def test_md5_mismatch_is_rejected_and_discarded(
    srv: RunningServer, photos: list[tuple[bytes, Any]]
) -> None:
    c = Client(srv)
    data = photos[0][0]
    key = jpg_key(data + b"x")
    status, body, _ = c.post(key, 0, data)
    assert status == 400
    assert "md5" in body["debug_info"]["message"]
    assert c.offset(key) == 0


def test_connection_dropped_mid_body_keeps_the_bytes_then_resumes(
    srv: RunningServer, photos: list[tuple[bytes, Any]]
) -> None:
    data = photos[3][0]
    key = jpg_key(data)
    c = Client(srv)
    sent = len(data) // 2
    head = (
        f"POST /upload/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: OAuth {srv.token}\r\n"
        f"Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(head + data[:sent])
        time.sleep(0.2)
    for _ in range(100):  # the server notices the close asynchronously
        if c.offset(key) == sent:
            break
        time.sleep(0.05)
    assert c.offset(key) == sent
    status, body, _ = c.post(key, sent, data[sent:])
    assert status == 200, body
    assert (srv.store_dir / "uploads" / key).read_bytes() == data
    assert srv.stats.bytes_by_key[key] == len(data)  # nothing re-sent


def test_injected_drop_keeps_prefix_and_client_resumes(
    srv: RunningServer, photos: list[tuple[bytes, Any]]
) -> None:
    data = photos[4][0]
    key = jpg_key(data)
    c = Client(srv)
    srv.faults.drop_after_bytes = 10_000
    attempts = 0
    handle = None
    while handle is None and attempts < 50:
        attempts += 1
        off = c.offset(key)
        try:
            status, body, _ = c.post(key, off, data[off:])
        except (ConnectionError, http.client.HTTPException):
            continue
        assert status == 200, body
        handle = body["h"]
    assert handle is not None
    assert attempts == -(-len(data) // 10_000)  # every attempt moved 10,000 bytes forward
    assert srv.stats.dropped == attempts - 1
    assert srv.stats.bytes_by_key[key] == len(data)


@pytest.mark.parametrize(
    "key",
    [
        "..",
        "...%2F..%2Fetc",
        "..%2F..%2Fpasswd",
        "a%2Fb",
        "%2e%2e",
        "x" * 201,
        "a%20b",
        "~x",
        "%00",
    ],
)
def test_bad_session_keys_are_rejected(srv: RunningServer, key: str) -> None:
    c = Client(srv)
    for method, body in (("GET", None), ("POST", b"evil")):
        status, _, _ = c.request(method, f"/upload/{key}", body, {"Offset": "0"})
        assert status in (400, 404)
    uploads = srv.store_dir / "uploads"
    assert list(uploads.iterdir()) == []
    assert not (srv.store_dir / "passwd").exists()
    assert not (srv.store_dir.parent / "passwd").exists()


# -- auth ----------------------------------------------------------------------------------------


def test_missing_or_bad_token_is_401_code_190(srv: RunningServer) -> None:
    for path in ("/me", "/upload/x.bin"):
        status, body, _ = Client(srv).request("GET", path, auth=None)
        assert status == 401 and body["error"]["code"] == 190
        status, body, _ = Client(srv, "MLY|1|" + "0" * 64).request("GET", path)
        assert status == 401 and body["error"]["code"] == 190
    status, body, _ = Client(srv, "nope").request("POST", "/upload/x.bin", b"x", {"Offset": "0"})
    assert status == 401 and body["debug_info"]["type"] == "NotAuthorizedError"
    # the client (app) token cannot upload or ask /me
    status, _, _ = Client(srv, CLIENT_TOKEN_DEFAULT).request("GET", "/me")
    assert status == 401
    status, _, _ = Client(srv, CLIENT_TOKEN_DEFAULT).request(
        "POST", "/upload/x.bin", b"x", {"Offset": "0"}
    )
    assert status == 401


def test_bearer_is_accepted_and_me_answers(srv: RunningServer) -> None:
    status, body, _ = Client(srv).request("GET", "/me?fields=id,username", auth="Bearer")
    assert status == 200 and body["username"] == "amly-user" and body["id"].isdigit()


def test_token_is_reused_on_restart_and_explicit_token_works(tmp_path: Path) -> None:
    with running_server(tmp_path) as a:
        first = a.token
    with running_server(tmp_path) as b:
        assert b.token == first
        assert Client(b).request("GET", "/me")[0] == 200
    with running_server(tmp_path, token="MLY|9|" + "f" * 40) as c:
        assert c.token == "MLY|9|" + "f" * 40
        assert Client(c).request("GET", "/me")[0] == 200


# -- finish_upload --------------------------------------------------------------------------


def test_finish_manifest_creates_one_sequence_in_order_and_is_idempotent(
    srv: RunningServer, photos: list[tuple[bytes, dict[str, Any]]]
) -> None:
    c = Client(srv)
    handles = [c.upload(data) for data, _ in photos]
    manifest = manifest_bytes(handles)
    m_handle = c.upload(manifest, "uuid_" + "12" * 16 + ".json")
    status, body, _ = c.finish(m_handle, organization_id="1234")
    assert status == 200, body
    cluster = body["cluster_id"]
    status, body, _ = c.finish(m_handle)
    assert (status, body) == (200, {"cluster_id": cluster})
    assert srv.stats.unknown_organizations == 1  # accepted (as the spec allows), but counted
    con = db(srv)
    seqs = con.execute("SELECT * FROM sequences WHERE cluster_id = ?", (cluster,)).fetchall()
    assert len(seqs) == 1 and seqs[0]["organization_id"] == "1234"
    rows = con.execute(
        "SELECT * FROM images WHERE sequence_id = ? ORDER BY seq_index", (seqs[0]["id"],)
    ).fetchall()
    assert len(rows) == len(photos)
    for row, (data, desc) in zip(rows, photos, strict=True):
        assert row["id"].isdigit()
        stored = (srv.store_dir / row["path"]).read_bytes()
        assert stored == data and row["md5"] == hashlib.md5(data).hexdigest()
        assert row["lat"] == desc["MAPLatitude"] and row["lon"] == desc["MAPLongitude"]
        assert row["compass_angle"] == desc["MAPCompassHeading"]["TrueHeading"]
        assert (row["make"], row["model"]) == ("AmlyCam", "Synth 1")
        assert (row["width"], row["height"]) == (160, 96)
        assert json.loads(row["description"]) == desc and validate_embedded(desc) == []
    times = [r["captured_at"] for r in rows]
    assert times == sorted(times) and times[0] > 1_700_000_000_000
    assert con.execute("SELECT COUNT(*) FROM clusters").fetchone()[0] == 1
    assert srv.stats.clusters == 1


def test_finish_zip(srv: RunningServer, photos: list[tuple[bytes, dict[str, Any]]]) -> None:
    c = Client(srv)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, (data, _) in enumerate(photos[:3]):
            z.writestr(f"{i}.jpg", data)
        z.comment = b'{"sequence_md5sum": "x"}'
    raw = buf.getvalue()
    h = c.upload(raw, f"mly_tools_{hashlib.md5(raw).hexdigest()}.zip")
    status, body, _ = c.finish(h, "zip")
    assert status == 200, body
    rows = (
        db(srv)
        .execute(
            "SELECT i.md5, i.path FROM images i JOIN sequences s ON s.id = i.sequence_id "
            "WHERE s.cluster_id = ? ORDER BY seq_index",
            (body["cluster_id"],),
        )
        .fetchall()
    )
    assert [r["md5"] for r in rows] == [hashlib.md5(d).hexdigest() for d, _ in photos[:3]]
    assert not [p for p in (srv.store_dir / "images").iterdir() if p.name.startswith(".")]


def graph_error_of(status: int, body: Any) -> dict[str, Any]:
    assert status == 400, body
    err = body["error"]
    assert set(err) == {
        "message",
        "type",
        "code",
        "error_subcode",
        "is_transient",
        "error_user_title",
        "error_user_msg",
        "fbtrace_id",
    }
    return err


def test_finish_rejects_malformed_input(
    srv: RunningServer, photos: list[tuple[bytes, dict[str, Any]]]
) -> None:
    c = Client(srv)
    good = c.upload(photos[0][0])

    def finish_manifest(raw: bytes, n: int) -> dict[str, Any]:
        h = c.upload(raw, "uuid_" + f"{n:032x}" + ".json")
        return graph_error_of(*c.finish(h)[:2])

    assert "unknown file handle" in graph_error_of(*c.finish("nope")[:2])["message"]
    assert "file_type" in graph_error_of(*c.finish(good, "mly_nothing")[:2])["message"]
    status, body, _ = c.request("POST", "/finish_upload", b"{not json")
    graph_error_of(status, body)
    assert "not JSON" in finish_manifest(b"[1, 2", 1)["message"]
    assert "unknown or incomplete" in finish_manifest(manifest_bytes([good, "zzz"]), 2)["message"]
    assert "non-empty" in finish_manifest(manifest_bytes([]), 3)["message"]
    # an image without a description, one with a key the schema forbids, a truncated one
    bare = synth.splice_exif(synth.base_frames(64, 48)[0], synth.exif_bytes(time=None))
    bad_key = with_description(photos[1][0], {**photos[1][1], "MAPSequenceUUID": "0"})
    truncated = photos[2][0][:-500]
    for i, (data, words) in enumerate(
        [(bare, "no description"), (bad_key, "MAPSequenceUUID"), (truncated, "truncat")]
    ):
        err = finish_manifest(manifest_bytes([good, c.upload(data)]), 10 + i)
        assert "image_handles[1]" in err["message"] and words in err["message"], err
    # nothing half-created
    assert db(srv).execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0
    # a zip with a gap in its entry names
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("0.jpg", photos[0][0])
        z.writestr("2.jpg", photos[1][0])
    h = c.upload(buf.getvalue(), "gap.zip")
    assert "0.jpg, 1.jpg" in graph_error_of(*c.finish(h, "zip")[:2])["message"]


# -- faults and stats ---------------------------------------------------------------------------


def test_rate_limit_and_errors_and_admin_endpoint(srv: RunningServer) -> None:
    c = Client(srv)
    status, body, _ = c.request(
        "POST", "/_amly/faults", json.dumps({"rate_limit_every": 3, "backoff_ms": 2500}).encode()
    )
    assert status == 200 and body["rate_limit_every"] == 3
    statuses = []
    for _ in range(6):
        status, body, resp = c.request("GET", "/upload/x.bin")
        statuses.append(status)
        if status == 429:
            assert body["backoff"] == 2500
            assert body["debug_info"]["type"] == "RequestRateLimitedError"
            assert resp.getheader("Retry-After") == "3"  # never shorter than backoff
    assert statuses == [200, 200, 429, 200, 200, 429]
    c.request("GET", "/me")
    c.request("GET", "/me")
    status, body, resp = c.request("GET", "/me")  # the 9th request: Graph style
    assert status == 429 and body["error"]["code"] == 4 and resp.getheader("Retry-After")
    srv.faults.clear()
    srv.faults.error_rate = 1.0
    status, body, _ = c.request("GET", "/me")
    assert status == 503 and body["error"]["is_transient"] is True
    assert c.request("GET", "/_amly/stats")[0] == 200  # admin is never faulted
    status, _, _ = c.request("POST", "/_amly/faults", b'{"no_such_fault": 1}')
    assert status == 400
    srv.faults.clear()
    stats = c.request("GET", "/_amly/stats")[1]
    assert stats["rate_limited"] == 3 and stats["injected_errors"] == 1
    assert stats["by_status"]["429"] == 3


def test_faults_are_deterministic_per_seed() -> None:
    a = Faults(error_rate=0.3, search_timeout_rate=0.5, seed=42)
    b = Faults(error_rate=0.3, search_timeout_rate=0.5, seed=42)
    seq_a = [(a.roll_error(), a.search_timeout()) for _ in range(50)]
    assert seq_a == [(b.roll_error(), b.search_timeout()) for _ in range(50)]
    assert any(x for x, _ in seq_a) and not all(x for x, _ in seq_a)
    a.seed = 42  # setting the seed restarts the pattern
    assert [(a.roll_error(), a.search_timeout()) for _ in range(50)] == seq_a


def test_latency_is_added(srv: RunningServer) -> None:
    c = Client(srv)
    srv.faults.latency_ms = 300
    t0 = time.perf_counter()
    assert c.request("GET", "/me")[0] == 200
    assert time.perf_counter() - t0 >= 0.3  # the sleep is a lower bound, not a timing


# -- login and the CLI ---------------------------------------------------------------------------


def amly(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amly", *args], capture_output=True, text=True, timeout=60, **kw
    )


def test_add_user_then_login(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    p = amly(
        "server",
        "--data",
        str(data),
        "--add-user",
        "alice",
        "--email",
        "a@x.org",
        "--password",
        "-",
        input="s3cret pass\n",
    )
    assert p.returncode == 0, p.stderr
    assert "s3cret" not in p.stdout + p.stderr
    with running_server(data) as srv:
        app = Client(srv, CLIENT_TOKEN_DEFAULT)
        login = json.dumps({"email": "a@x.org", "password": "s3cret pass", "locale": "en_US"})
        status, body, _ = app.request("POST", "/login", login.encode())
        assert status == 200, body
        token, user_id = body["access_token"], body["user_id"]
        status, me, _ = Client(srv, token).request("GET", "/me?fields=id,username")
        assert me == {"id": user_id, "username": "alice"}
        wrong = json.dumps({"email": "a@x.org", "password": "nope"}).encode()
        status, body, _ = app.request("POST", "/login", wrong)
        assert status == 401 and body["error"]["error_subcode"] == 1348028
        status, body, _ = app.request("POST", "/login", b'{"email": "b@x.org"}')
        assert status == 400
        stored = (
            sqlite3.connect(data / "amly-server.sqlite3")
            .execute("SELECT password FROM users WHERE username = 'alice'")
            .fetchone()[0]
        )
        assert stored.startswith("pbkdf2$") and "s3cret" not in stored


def test_cli_server_prints_url_and_token_and_stops_on_sigint(tmp_path: Path) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "amly", "server", "--data", str(tmp_path), "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["url"].startswith("http://127.0.0.1:")
        u = urlsplit(info["url"])
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        conn.request("GET", "/me", headers={"Authorization": f"OAuth {info['token']}"})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert info["token"] not in err


def test_cli_server_refuses_non_loopback(tmp_path: Path) -> None:
    p = amly("server", "--data", str(tmp_path), "--host", "0.0.0.0", "--port", "0")
    assert p.returncode == 2 and "--public" in p.stderr
