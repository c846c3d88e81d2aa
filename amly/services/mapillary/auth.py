"""Where the access token comes from: saved profiles, the environment, or a login.

:func:`resolve_token` is what every verb calls. Its order:

1. ``MAPILLARY_ACCESS_TOKEN`` (the environment wins: CI, containers, one-off runs);
2. the saved profile (``amly auth`` writes ``config_dir()/profiles.json``, mode 0600);
3. ``MAPILLARY_EMAIL`` + ``MAPILLARY_PASSWORD``: a login against ``/login``.

Tokens travel as :class:`~amly.config.Secret` and are never printed whole. The legacy
``MAPILLARY_PERMISSION_HASH``/``MAPILLARY_SIGNATURE_HASH`` (2014 upload hashes) are refused
with a message that says what replaced them. ``/me`` and ``/login`` go through the same
:class:`~amly.net.Transport` as every other request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from ..._atomic import fsync_dir
from ...config import CLIENT_TOKEN_DEFAULT, Secret, config_dir
from ...errors import APIError, AuthError, UsageError
from ...net import Transport

PROFILES_FILE = "profiles.json"
DEFAULT_PROFILE = "default"
OBSOLETE_VARS = ("MAPILLARY_PERMISSION_HASH", "MAPILLARY_SIGNATURE_HASH")


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


# -- on the network (through the one transport: its retry policy, limiter, error mapping) ---


async def me(transport: Transport, token: Secret | None = None) -> dict[str, Any]:
    """``{"id", "username"}`` of the token's user (``GET /me``): checks the token.
    :class:`AuthError` with what to do when it is refused."""
    try:
        answer = await transport.request(
            "GET", f"{transport.endpoints.graph}/me", params={"fields": "id,username"}, token=token
        )
    except AuthError as e:
        raise AuthError(
            f"the access token was refused: {e.message}",
            status=e.status,
            code=e.code,
            hint="create a new one with `amly auth`, or set MAPILLARY_ACCESS_TOKEN",
        ) from None
    if not isinstance(answer, dict) or "id" not in answer:
        raise AuthError("the server did not say who this token belongs to (/me answered no id)")
    return answer


async def login(
    transport: Transport, email: str, password: Secret, *, client_token: str | None = None
) -> tuple[Secret, str]:
    """Log in with email and password; returns (access token, user id)."""
    client = client_token or os.environ.get("MAPILLARY_CLIENT_TOKEN") or CLIENT_TOKEN_DEFAULT
    body = {"email": email, "password": password.reveal(), "locale": "en_US"}
    try:
        answer = await transport.request(
            "POST", f"{transport.endpoints.graph}/login", json_body=body, token=Secret(client)
        )
    except AuthError as e:
        raise AuthError(
            f"login failed for {email}: {e.message}", status=e.status, code=e.code
        ) from None
    try:
        return Secret(str(answer["access_token"])), str(answer.get("user_id", ""))
    except (KeyError, ValueError, TypeError):
        raise APIError("the login answer carries no access token") from None


def saved_token(profile: str | None = None) -> Secret | None:
    """The token that needs no network: ``MAPILLARY_ACCESS_TOKEN``, else the saved
    ``profile`` (default profile when None); None when neither has one."""
    check_obsolete_environment()
    if value := os.environ.get("MAPILLARY_ACCESS_TOKEN", "").strip():
        return Secret(value)
    token = load_token(profile)
    if token is None and profile and profile != DEFAULT_PROFILE:
        raise AuthError(
            f"no saved profile {profile!r}",
            hint=f"create it with `amly auth --profile {profile}`",
        )
    return token


async def resolve_token(transport: Transport, profile: str | None = None) -> Secret:
    """The token to use, the one order every verb and the :class:`~amly.Client` follow:
    ``MAPILLARY_ACCESS_TOKEN``, else the saved ``profile``, else a login with
    ``MAPILLARY_EMAIL``/``MAPILLARY_PASSWORD``. :class:`AuthError` with what to do when
    there is none. The profile file is read off the event loop."""
    token = await asyncio.to_thread(saved_token, profile)
    if token is not None:
        return token
    email, password = os.environ.get("MAPILLARY_EMAIL"), os.environ.get("MAPILLARY_PASSWORD")
    if email and password:
        return (await login(transport, email, Secret(password)))[0]
    raise AuthError(
        "no access token",
        hint="run `amly auth`, or set MAPILLARY_ACCESS_TOKEN "
        "(or MAPILLARY_EMAIL and MAPILLARY_PASSWORD)",
    )
