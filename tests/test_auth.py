"""Client-side auth against the real local server: ``amly auth`` profiles (0600, token never
printed), login, and the token resolution order every verb uses."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amly.config import Endpoints, Secret
from amly.errors import AuthError
from amly.net import Transport
from amly.server.auth import STORE_KEY, ensure_user
from amly.server.testing import RunningServer, running_server
from amly.services.mapillary import auth


def _resolve(ends: Endpoints | None = None, profile: str | None = None) -> Secret:
    async def main() -> Secret:
        async with Transport(ends or Endpoints.from_env()) as t:
            return await auth.resolve_token(t, profile)

    return asyncio.run(main())


def _verify(token: Secret, ends: Endpoints) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with Transport(ends) as t:
            return await auth.me(t, token)

    return asyncio.run(main())


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "srv") as s:
        s.call(ensure_user, s.app[STORE_KEY], "bob", email="bob@x.org", password="hunter2 hunter2")
        yield s


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("AMLY_HOME", str(h))
    for var in (
        "MAPILLARY_ACCESS_TOKEN",
        "MAPILLARY_EMAIL",
        "MAPILLARY_PASSWORD",
        "MAPILLARY_PERMISSION_HASH",
        "MAPILLARY_SIGNATURE_HASH",
        "MAPILLARY_GRAPH_API_ENDPOINT",
    ):
        monkeypatch.delenv(var, raising=False)
    return h


def amly(home: Path, *args: str, input: str | None = None, **env: str) -> Any:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY_")}
    e.update(AMLY_HOME=str(home), **env)
    return subprocess.run(
        [sys.executable, "-m", "amly", "auth", *args],
        input=input,
        capture_output=True,
        text=True,
        env=e,
        timeout=60,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_from_stdin_is_verified_and_saved_0600(srv: RunningServer, home: Path) -> None:
    p = amly(home, "--endpoint", srv.url, "--token", "-", input=srv.token + "\n")
    assert p.returncode == 0, p.stderr
    assert srv.token not in p.stdout + p.stderr
    assert "amly-user" in p.stderr
    f = home / "profiles.json"
    assert mode(f) == 0o600
    entry = json.loads(f.read_text())["profiles"]["default"]
    assert entry["token"] == srv.token and entry["username"] == "amly-user"
    assert not [x for x in home.iterdir() if x.name.startswith(".")]  # no temp file left
    shown = amly(home, "--show")
    assert shown.returncode == 0 and srv.token not in shown.stdout + shown.stderr
    assert "default: amly-user" in shown.stdout and srv.token[-4:] in shown.stdout
    shown = amly(home, "--show", "--json")
    assert json.loads(shown.stdout)["profiles"][0]["token"] == "***" + srv.token[-4:]


def test_token_on_argv_warns_and_bad_token_saves_nothing(srv: RunningServer, home: Path) -> None:
    p = amly(home, "--endpoint", srv.url, "--profile", "w", "--token", srv.token)
    assert p.returncode == 0 and "--token-file" in p.stderr
    assert srv.token not in p.stdout + p.stderr
    p = amly(
        home,
        "--endpoint",
        srv.url,
        "--profile",
        "bad",
        "--token",
        "-",
        input="MLY|1|" + "0" * 64 + "\n",
    )
    assert p.returncode == 3 and "refused" in p.stderr
    assert "0" * 64 not in p.stderr
    assert set(json.loads((home / "profiles.json").read_text())["profiles"]) == {"w"}


def test_token_file_and_existing_wide_file_is_narrowed(
    srv: RunningServer, home: Path, tmp_path: Path
) -> None:
    home.mkdir()
    f = home / "profiles.json"
    f.write_text('{"version": 1, "profiles": {}}')
    f.chmod(0o644)
    tf = tmp_path / "tok"
    tf.write_text(srv.token + "\n")
    p = amly(home, "--endpoint", srv.url, "--token-file", str(tf))
    assert p.returncode == 0, p.stderr
    assert mode(f) == 0o600


def test_login_with_email_and_password(srv: RunningServer, home: Path) -> None:
    p = amly(
        home,
        "--endpoint",
        srv.url,
        "--profile",
        "bob",
        "--email",
        "bob@x.org",
        "--password",
        "-",
        input="hunter2 hunter2\n",
    )
    assert p.returncode == 0, p.stderr
    assert "hunter2" not in p.stdout + p.stderr
    entry = json.loads((home / "profiles.json").read_text())["profiles"]["bob"]
    assert entry["username"] == "bob"
    token = Secret(entry["token"])
    assert _verify(token, Endpoints.local(srv.url))["username"] == "bob"
    p = amly(
        home, "--endpoint", srv.url, "--email", "bob@x.org", "--password", "-", input="wrong\n"
    )
    assert p.returncode == 3 and "login failed" in p.stderr
    p = amly(home, "--profile", "bob", "--delete")
    assert p.returncode == 0
    assert "bob" not in json.loads((home / "profiles.json").read_text())["profiles"]


def test_resolution_order(srv: RunningServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ends = Endpoints.local(srv.url)
    with pytest.raises(AuthError, match="amly auth"):
        _resolve()
    # a login from the environment
    monkeypatch.setenv("MAPILLARY_EMAIL", "bob@x.org")
    monkeypatch.setenv("MAPILLARY_PASSWORD", "hunter2 hunter2")
    logged_in = _resolve(ends)
    assert _verify(logged_in, ends)["username"] == "bob"
    # a saved profile beats the login
    auth.save_profile("default", Secret(srv.token))
    assert _resolve(ends) == Secret(srv.token)
    with pytest.raises(AuthError, match="no saved profile 'other'"):
        _resolve(ends, "other")
    # the environment beats everything
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "MLY|7|" + "e" * 32)
    assert _resolve(ends).reveal() == "MLY|7|" + "e" * 32
    # the 2014 hashes are refused with what to do instead
    monkeypatch.setenv("MAPILLARY_SIGNATURE_HASH", "abc")
    with pytest.raises(AuthError, match="obsolete") as e:
        _resolve()
    assert "MAPILLARY_ACCESS_TOKEN" in str(e.value) and "2014" in str(e.value)


def test_obsolete_hashes_in_cli(home: Path) -> None:
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, amly\nasync def m():\n    async with amly.Client(journal=False) as c:\n        await c.token()\nasyncio.run(m())",
        ],
        env={**os.environ, "AMLY_HOME": str(home), "MAPILLARY_PERMISSION_HASH": "x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode != 0 and "obsolete" in p.stderr
