"""Users, passwords and tokens of the local server, and the middleware that checks every request.

Requests carry ``Authorization: OAuth <token>`` (``Bearer`` is accepted too). A user token
is looked up in the ``tokens`` table; the public client (app) tokens (``MLY|<app>|<hex>``)
may only log in, send telemetry and read public data (GET on Graph reads, tiles). Tokens are
never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from typing import Any

from aiohttp import web

from ..config import CLIENT_TOKEN_DEFAULT
from .faults import ADMIN_PREFIX, Handler
from .responses import CODE_BAD_TOKEN, graph_error, graph_error_body
from .store import Store

DEFAULT_USER = "amly-user"
PBKDF2_ITERATIONS = 120_000
#: Paths served without any token (signed thumbnail URLs carry their own signature).
PUBLIC_PREFIXES = ("/cdn/",)
#: Paths a client (app) token may use with any method.
CLIENT_PATHS = ("/login", "/logging")

STORE_KEY = web.AppKey("store", Store)
#: ``request[USER_KEY]``: ``{"id", "username"}`` of the caller, None for an app token.
USER_KEY: Any = web.RequestKey("user", object) if hasattr(web, "RequestKey") else "user"
CLIENT_TOKENS_KEY = web.AppKey("client_tokens", frozenset)


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    """``pbkdf2$<iterations>$<salt hex>$<hash hex>`` (PBKDF2-HMAC-SHA256, random salt).

    >>> h = hash_password("s3cret", iterations=1000)
    >>> h.startswith("pbkdf2$1000$"), verify_password("s3cret", h), verify_password("x", h)
    (True, True, False)
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check of ``password`` against :func:`hash_password`'s output."""
    try:
        scheme, iterations, salt, digest = (stored or "").split("$")
        if scheme != "pbkdf2":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def new_token(user_id: str) -> str:
    """A fresh user access token in Mapillary's shape, 256 random bits."""
    return f"MLY|{user_id}|{secrets.token_hex(32)}"


def ensure_user(
    store: Store, username: str, *, email: str | None = None, password: str | None = None
) -> str:
    """The id of user ``username``, created if missing; sets email/password when given."""
    row = store.db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
    if row is None:
        user_id = store.new_id()
        store.db.execute("INSERT INTO users (id, username) VALUES (?, ?)", (user_id, username))
    else:
        user_id = row["id"]
    if email is not None:
        store.db.execute("UPDATE users SET email = ? WHERE id = ?", (email, user_id))
    if password is not None:
        store.db.execute(
            "UPDATE users SET password = ? WHERE id = ?", (hash_password(password), user_id)
        )
    return str(user_id)


def add_token(store: Store, user_id: str, token: str | None = None) -> str:
    """Register ``token`` (or a new one) for ``user_id``; returns it."""
    token = token or new_token(user_id)
    store.db.execute(
        "INSERT OR REPLACE INTO tokens (token, user_id, expires) VALUES (?, ?, NULL)",
        (token, user_id),
    )
    return token


def default_token(store: Store, token: str | None = None) -> str:
    """The token of the default user: ``token`` if given (registered), else the one stored on
    an earlier start, else a new one. Creates the user on first start."""
    user_id = ensure_user(store, DEFAULT_USER)
    if token:
        return add_token(store, user_id, token)
    row = store.db.execute(
        "SELECT token FROM tokens WHERE user_id = ? AND expires IS NULL LIMIT 1", (user_id,)
    ).fetchone()
    return str(row["token"]) if row else add_token(store, user_id)


#: Known tokens cached at most (unknown ones are never cached: random tokens cannot fill it).
TOKEN_CACHE_SIZE = 4096


def user_for_token(store: Store, token: str) -> dict[str, Any] | None:
    """``{"id", "username"}`` of a valid user token, else None. Cached per :class:`Store`
    (every request asks; the cache is emptied whenever tokens or users change)."""
    cache = store.valid_token_cache()
    hit = cache.get(token)
    if hit is None:
        row = store.db.execute(
            "SELECT u.id, u.username, t.expires FROM tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token = ?",
            (token,),
        ).fetchone()
        if row is None:
            return None
        hit = ({"id": row["id"], "username": row["username"]}, row["expires"])
        if len(cache) < TOKEN_CACHE_SIZE:
            cache[token] = hit
    user, expires = hit
    if expires is not None and expires < time.time():
        return None
    return dict(user)


def client_tokens() -> frozenset[str]:
    """The app tokens accepted for login and public reads."""
    return frozenset({CLIENT_TOKEN_DEFAULT, os.environ.get("MAPILLARY_CLIENT_TOKEN", "")} - {""})


def bearer(request: web.Request) -> str | None:
    """The token of the ``Authorization`` header (``OAuth`` or ``Bearer``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("oauth", "bearer") and value.strip():
        return value.strip()
    return None


def _unauthorized(request: web.Request, message: str) -> web.Response:
    body = graph_error_body(message, code=CODE_BAD_TOKEN, type="OAuthException")
    if request.path.startswith("/upload/"):
        body["debug_info"] = {"type": "NotAuthorizedError", "message": message, "retriable": False}
    return web.json_response(body, status=401)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sets ``request[USER_KEY]`` (``{"id","username"}``, or None for an app token) or answers
    401 with Graph code 190."""
    path = request.path
    if path.startswith(PUBLIC_PREFIXES):
        request[USER_KEY] = None
        return await handler(request)
    token = bearer(request)
    if token is None and path.startswith("/tiles/"):
        token = request.query.get("access_token")
    if token is None:
        return _unauthorized(request, "An active access token must be used")
    user = user_for_token(request.app[STORE_KEY], token)
    if user is None:
        is_client = token in request.app[CLIENT_TOKENS_KEY]
        may_read = request.method in ("GET", "HEAD") and not path.startswith(
            ("/me", "/upload/", ADMIN_PREFIX)
        )
        if is_client and (path in CLIENT_PATHS or may_read):
            request[USER_KEY] = None
            return await handler(request)
        return _unauthorized(request, "Invalid OAuth access token")
    request[USER_KEY] = user
    return await handler(request)


# -- routes -----------------------------------------------------------------------------------


async def me(request: web.Request) -> web.Response:
    """``GET /me?fields=id,username``."""
    user = request[USER_KEY]
    fields = [f for f in request.query.get("fields", "id").split(",") if f] or ["id"]
    out = {f: user[f] for f in fields if f in user}
    out["id"] = user["id"]
    return web.json_response(out)


async def login(request: web.Request) -> web.Response:
    """``POST /login`` JSON ``{"email","password"}`` (app token) -> ``{"access_token","user_id"}``."""
    try:
        body = await request.json()
        email, password = body["email"], body["password"]
        if not isinstance(email, str) or not isinstance(password, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return graph_error(400, "email and password are required", code=100)
    store = request.app[STORE_KEY]
    row = store.db.execute("SELECT id, password FROM users WHERE email = ?", (email,)).fetchone()
    stored = row["password"] if row else None
    # Hash even for an unknown email so timing does not tell which emails exist.
    ok = verify_password(password, stored or hash_password("", iterations=PBKDF2_ITERATIONS))
    if row is None or not ok:
        return graph_error(
            401,
            "Invalid email or password",
            code=1,
            subcode=1348028,
            user_title="Wrong email or password",
            user_msg="The email or password you entered is incorrect.",
        )
    token = add_token(store, row["id"])
    return web.json_response({"access_token": token, "user_id": row["id"]})


async def logging_event(request: web.Request) -> web.Response:
    """``POST /logging``: the official tool's telemetry; accepted and dropped."""
    await request.read()
    return web.json_response({"success": True})
