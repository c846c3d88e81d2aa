"""Where the access token comes from: saved profiles, the environment, or a login.

:func:`resolve_token` is what every verb calls. Its order:

1. ``MAPILLARY_ACCESS_TOKEN`` (the environment wins: CI, containers, one-off runs);
2. the saved profile (``amly auth`` writes ``config_dir()/profiles.json``, mode 0600);
3. ``MAPILLARY_EMAIL`` + ``MAPILLARY_PASSWORD``: a login against ``/login``.

Tokens travel as :class:`~amly.config.Secret` and are never printed whole. The legacy
``MAPILLARY_PERMISSION_HASH``/``MAPILLARY_SIGNATURE_HASH`` (2014 upload hashes) are refused
with a message that says what replaced them. Small synchronous HTTP (``urllib``): this runs
once per process, before any event loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .._atomic import fsync_dir
from ..config import CLIENT_TOKEN_DEFAULT, Endpoints, Secret, config_dir
from ..errors import APIError, AuthError, UsageError

PROFILES_FILE = "profiles.json"
DEFAULT_PROFILE = "default"
OBSOLETE_VARS = ("MAPILLARY_PERMISSION_HASH", "MAPILLARY_SIGNATURE_HASH")
TIMEOUT = 30.0


def profiles_path() -> Path:
    return config_dir() / PROFILES_FILE


def mask(token: str | Secret) -> str:
    """The printable form of a token.

    >>> mask("MLY|123|abcdef0123456789")
    '***6789'
    """
    return str(token if isinstance(token, Secret) else Secret(token))


def load_profiles() -> dict[str, dict[str, Any]]:
    """Every saved profile by name (empty when there is no file)."""
    try:
        raw = profiles_path().read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
        profiles = data["profiles"]
        if not isinstance(profiles, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            f"{profiles_path()} is damaged", hint="delete it and run 'amly auth' again"
        ) from None
    return profiles


def _write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only (0600) from the
    first byte: the temp file is created 0600, never widened."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # the umask could only have narrowed it; be explicit anyway
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(str(path.parent))


def _save_profiles(profiles: dict[str, dict[str, Any]]) -> Path:
    path = profiles_path()
    body = json.dumps({"version": 1, "profiles": profiles}, indent=2, sort_keys=True)
    _write_private(path, body.encode() + b"\n")
    return path


def save_profile(
    name: str,
    token: Secret,
    *,
    user_id: str | None = None,
    username: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """Store ``token`` under profile ``name`` (replacing it); returns the file's path."""
    profiles = load_profiles()
    profiles[name] = {
        "token": token.reveal(),
        "user_id": user_id,
        "username": username,
        "endpoint": endpoint,
    }
    return _save_profiles(profiles)


def delete_profile(name: str) -> bool:
    """Remove profile ``name``; False when there was none."""
    profiles = load_profiles()
    if profiles.pop(name, None) is None:
        return False
    _save_profiles(profiles)
    return True


def load_token(profile: str | None = None) -> Secret | None:
    """The token saved under ``profile`` (default profile when None), or None."""
    entry = load_profiles().get(profile or DEFAULT_PROFILE)
    if not entry or not entry.get("token"):
        return None
    return Secret(str(entry["token"]))


def check_obsolete_environment() -> None:
    """Refuse the 2014 upload hashes with a message that says what replaced them."""
    found = [v for v in OBSOLETE_VARS if os.environ.get(v)]
    if found:
        raise AuthError(
            f"{' and '.join(found)} {'is' if len(found) == 1 else 'are'} obsolete: these were "
            "the 2014 upload hashes, no longer accepted by Mapillary",
            hint="create a token with `amly auth` or set MAPILLARY_ACCESS_TOKEN (and unset "
            + " / ".join(found)
            + ")",
        )


# -- HTTP ----------------------------------------------------------------------------------------


def _call(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"OAuth {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return dict(json.load(resp))
    except urllib.error.HTTPError as e:
        try:
            err = json.load(e).get("error", {})
        except (ValueError, AttributeError):
            err = {}
        message = err.get("error_user_msg") or err.get("message") or e.reason
        if e.code in (401, 403) or err.get("code") == 190:
            raise AuthError(str(message), status=e.code, code=err.get("code")) from None
        raise APIError(
            f"{method} {url.split('?')[0]}: HTTP {e.code}: {message}",
            status=e.code,
            code=err.get("code"),
            subcode=err.get("error_subcode"),
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise APIError(
            f"cannot reach {url.split('?')[0]}: {reason}",
            hint="check the network, or --endpoint / MAPILLARY_GRAPH_API_ENDPOINT",
        ) from None


def verify_token(token: Secret, endpoints: Endpoints | None = None) -> dict[str, Any]:
    """``{"id", "username"}`` of the token's user (``GET /me``); AuthError when it is bad."""
    endpoints = endpoints or Endpoints.from_env()
    try:
        return _call("GET", f"{endpoints.graph}/me?fields=id,username", token.reveal())
    except AuthError as e:
        raise AuthError(
            f"the access token was refused: {e.message}",
            status=e.status,
            code=e.code,
            hint="create a new one with `amly auth`",
        ) from None


def login(
    email: str,
    password: Secret,
    endpoints: Endpoints | None = None,
    *,
    client_token: str | None = None,
) -> tuple[Secret, str]:
    """Log in with email and password; returns (access token, user id)."""
    endpoints = endpoints or Endpoints.from_env()
    client = client_token or os.environ.get("MAPILLARY_CLIENT_TOKEN") or CLIENT_TOKEN_DEFAULT
    body = {"email": email, "password": password.reveal(), "locale": "en_US"}
    try:
        answer = _call("POST", f"{endpoints.graph}/login", client, body)
    except AuthError as e:
        raise AuthError(
            f"login failed for {email}: {e.message}", status=e.status, code=e.code
        ) from None
    try:
        return Secret(str(answer["access_token"])), str(answer.get("user_id", ""))
    except (KeyError, ValueError):
        raise APIError("the login answer carries no access token") from None


def resolve_token(profile: str | None = None, *, endpoints: Endpoints | None = None) -> Secret:
    """The token to use: ``MAPILLARY_ACCESS_TOKEN``, else the saved ``profile`` (default
    profile when None), else a login with ``MAPILLARY_EMAIL``/``MAPILLARY_PASSWORD``.
    Raises :class:`AuthError` with what to do when there is none."""
    check_obsolete_environment()
    if value := os.environ.get("MAPILLARY_ACCESS_TOKEN", "").strip():
        return Secret(value)
    token = load_token(profile)
    if token is not None:
        return token
    if profile and profile != DEFAULT_PROFILE:
        raise AuthError(
            f"no saved profile {profile!r}",
            hint=f"create it with `amly auth --profile {profile}`",
        )
    email, password = os.environ.get("MAPILLARY_EMAIL"), os.environ.get("MAPILLARY_PASSWORD")
    if email and password:
        return login(email, Secret(password), endpoints)[0]
    raise AuthError(
        "no access token",
        hint="run `amly auth`, or set MAPILLARY_ACCESS_TOKEN "
        "(or MAPILLARY_EMAIL and MAPILLARY_PASSWORD)",
    )
