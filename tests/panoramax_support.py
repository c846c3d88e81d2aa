"""A real Panoramax backend (geovisio) for tests and benchmarks.

One PostgreSQL 15 + PostGIS cluster per session (``initdb`` in a temporary folder, a free port on
127.0.0.1, durability off: it is scratch data), one database migrated once by geovisio's own
``panoramax_backend db upgrade`` and kept as a template, then per test a fresh copy of it
(``CREATE DATABASE ... TEMPLATE``: a file copy, no migration) served by gunicorn the way upstream
deploys geovisio (``geovisio:create_app()``, several workers x threads: the Flask development
server deadlocks its database pool under concurrent uploads). Pictures are prepared by the
server's own background worker (``panoramax_backend picture-worker``, polling the job queue), as
upstream's compose file runs it.

geovisio lives in its own virtualenv (it needs Python >= 3.11 and pins a large dependency set):
``.venv-geovisio`` at the repository root, installed by ``.ci/run``; ``AMLY_GEOVISIO_VENV``
points elsewhere. The official client, panoramax-cli, is in ``.venv-panoramax-cli`` the same way
(``AMLY_PANORAMAX_CLI_VENV``).

Auth: with ``auth=True`` uploads need a token (``API_FORCE_AUTH_ON_UPLOAD``); a token is a JWT
signed (HS256) with the instance's secret key whose subject is a row of the ``tokens`` table.
The template holds the default account's token (created by the migrations) and one extra
account, ``amly-test``, with its own token; both JWTs are valid on every copy.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GEOVISIO_VENV = Path(os.environ.get("AMLY_GEOVISIO_VENV", REPO / ".venv-geovisio"))
PANORAMAX_CLI_VENV = Path(os.environ.get("AMLY_PANORAMAX_CLI_VENV", REPO / ".venv-panoramax-cli"))
PG_BIN = Path(os.environ.get("AMLY_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE_DB = "geovisio_template"
# A fixed secret: the instance is throw-away and local; tokens are derived from it below.
SECRET_KEY = "amly-tests-not-a-secret-0123456789abcdef"
TEST_ACCOUNT = "amly-test"

_counter = itertools.count()


def missing() -> str | None:
    """Why the real server cannot run here (None when it can)."""
    if not (GEOVISIO_VENV / "bin" / "gunicorn").exists():
        return f"geovisio venv missing at {GEOVISIO_VENV} (run .ci/run)"
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 missing at {PG_BIN} (apt-get install postgresql-15)"
    if not Path("/usr/share/postgresql/15/extension/postgis.control").exists():
        return "PostGIS missing (apt-get install postgresql-15-postgis-3)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_for(token_id: str, secret: str = SECRET_KEY) -> str:
    """The JWT geovisio issues for a ``tokens`` row (its ``_generate_jwt_token``: HS256)."""
    header = _b64(json.dumps({"alg": "HS256"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps({"iss": "geovisio", "sub": token_id}, separators=(",", ":")).encode())
    signing = f"{header}.{payload}".encode()
    sig = hmac.new(secret.encode(), signing, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


def _demote() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


@dataclass
class PostgresCluster:
    """A scratch PostgreSQL cluster with a migrated geovisio template database."""

    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    default_token: str = ""
    test_token: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        ids = _demote()
        return subprocess.run(
            args,
            check=True,
            capture_output=True,
            text=True,
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            **kw,  # type: ignore[arg-type]
        )

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def start(self) -> None:
        t0 = time.monotonic()
        data = self.root / "data"
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        ids = _demote()
        if ids:
            os.chown(self.root, *ids)
            os.chown(self.socket_dir, *ids)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        self.timings["initdb"] = time.monotonic() - t0
        self.port = free_port()
        log = open(self.root / "postgres.log", "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
                # scratch data: durability buys nothing here and costs most of the time
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            ok = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"]
            )
            if ok.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "PostgreSQL did not start:\n" + (self.root / "postgres.log").read_text()
                )
            time.sleep(0.1)
        self.timings["postgres up"] = time.monotonic() - t0
        self.psql(f"CREATE DATABASE {TEMPLATE_DB}")
        env = _geovisio_env(self.url(TEMPLATE_DB), self.root / "fs-template")
        subprocess.run(
            [str(GEOVISIO_VENV / "bin" / "panoramax_backend"), "db", "upgrade"],
            check=True,
            capture_output=True,
            env=env,
        )
        self.timings["db upgrade"] = time.monotonic() - t0
        self.default_token = jwt_for(
            self.psql(
                "SELECT t.id FROM tokens t JOIN accounts a ON t.account_id = a.id "
                "WHERE a.is_default LIMIT 1",
                TEMPLATE_DB,
            )
        )
        test_token_id = self.psql(
            f"WITH a AS (INSERT INTO accounts (name) VALUES ('{TEST_ACCOUNT}') RETURNING id) "
            "INSERT INTO tokens (account_id, description) SELECT id, 'amly tests' FROM a "
            "RETURNING id",
            TEMPLATE_DB,
        )
        self.test_token = jwt_for(test_token_id.splitlines()[0])
        # no connection may stay open on a template while it is copied
        self.psql(f"ALTER DATABASE {TEMPLATE_DB} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
        self.timings["template ready"] = time.monotonic() - t0

    def fresh_database(self) -> str:
        name = f"pmx_{os.getpid()}_{next(_counter)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: "smart" shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _geovisio_env(db_url: str, fs_root: Path, **extra: str) -> dict[str, str]:
    fs_root.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{GEOVISIO_VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "DB_URL": db_url,
        "FS_URL": str(fs_root),
        "FLASK_SECRET_KEY": SECRET_KEY,
        "DB_CHECK_SCHEMA": "false",
        "API_LOG_LEVEL": "warning",
        "API_WEBSITE_URL": "false",
    }
    env.update(extra)
    return env


@dataclass
class PanoramaxServer:
    """One geovisio instance (gunicorn) on its own fresh database."""

    cluster: PostgresCluster
    auth: bool = False
    workers: int = 2
    threads: int = 4
    # separate picture-worker processes (each one thread), as upstream's compose file runs them
    picture_workers: int = 1
    db: str = ""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    pworkers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    root: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """A valid token of the amly-test account."""
        return self.cluster.test_token

    def start(self, timeout: float = 60) -> PanoramaxServer:
        self.db = self.cluster.fresh_database()
        self.root = Path(tempfile.mkdtemp(prefix="pmx-fs-", dir=self.cluster.root))
        self.port = free_port()
        env = _geovisio_env(
            self.cluster.url(self.db),
            self.root / "fs",
            API_FORCE_AUTH_ON_UPLOAD="true" if self.auth else "false",
            # No preparation threads inside the API processes: their executor only runs when a
            # request kicks it and can strand a set's dispatch job (seen here with 3 sets in
            # flight). Upstream runs separate picture workers that poll the job queue.
            PICTURE_PROCESS_THREADS_LIMIT="0",
            DB_MAX_CNX=str(self.threads + 2),
        )
        wlog = open(self.root / "worker.log", "wb")  # noqa: SIM115 - lives as long as the server
        for _ in range(self.picture_workers):
            self.pworkers.append(
                subprocess.Popen(
                    [str(GEOVISIO_VENV / "bin" / "panoramax_backend"), "picture-worker"],
                    env={**env, "PICTURE_PROCESS_THREADS_LIMIT": "1"},
                    stdout=wlog,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        log = open(self.root / "gunicorn.log", "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [
                str(GEOVISIO_VENV / "bin" / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--timeout",
                "300",
                # gunicorn's 2 s default closes idle connections just as a client polling
                # every ~2 s reuses one ("Server disconnected" in panoramax-cli --wait); a
                # real instance sits behind a proxy with a longer keep-alive
                "--keep-alive",
                "30",
                "geovisio:create_app()",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/api/configuration", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("geovisio did not start:\n" + self.log_tail())
            time.sleep(0.1)
        return self

    def log_tail(self, n: int = 4000) -> str:
        if self.root is None or not (self.root / "gunicorn.log").exists():
            return ""
        return (self.root / "gunicorn.log").read_text(errors="replace")[-n:]

    def get(self, path: str) -> object:
        """GET a JSON document of the API (test-side reads, independent of amly)."""
        req = urllib.request.Request(self.url + path, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        for p in [*self.pworkers, *([self.proc] if self.proc is not None else [])]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.pworkers, *([self.proc] if self.proc is not None else [])]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.proc = None
        self.pworkers = []
        if self.db:
            self.cluster.drop_database(self.db)
            self.db = ""
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[PostgresCluster]:
    root = Path(tempfile.mkdtemp(prefix="amly-pmx-"))
    c = PostgresCluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def server(c: PostgresCluster, **kw: object) -> Iterator[PanoramaxServer]:
    s = PanoramaxServer(c, **kw)  # type: ignore[arg-type]
    try:
        yield s.start()
    finally:
        s.stop()


if __name__ == "__main__":  # manual check: python tests/panoramax_support.py
    why = missing()
    if why:
        sys.exit(why)
    with cluster() as c:
        print("cluster", c.timings)
        t = time.monotonic()
        with server(c, auth=True) as s:
            print(f"server up in {time.monotonic() - t:.1f}s at {s.url}")
            print(json.dumps(s.get("/api/configuration"), indent=1)[:3000])
