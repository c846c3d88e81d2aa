"""The local Mapillary-compatible server as an :class:`aiohttp.web.Application`.

Routes (Graph at ``/``, uploads under ``/upload``, tiles under ``/tiles``):

- ``GET /me``, ``POST /login``, ``POST /logging`` (auth, :mod:`amly.server.auth`)
- ``GET|POST /upload/{session_key}``, ``POST /finish_upload`` (:mod:`amly.server.upload`)
- ``GET /_amly/stats``, ``GET|POST /_amly/faults`` (admin; faults in :mod:`.faults`)
- the read side (``/images``, ``/image_ids``, ``/{id}``, tiles, ``/cdn/...``) from
  :mod:`amly.server.read`, registered last so the Graph ``/{id}`` catch-all comes after the
  fixed routes.
"""

from __future__ import annotations

import importlib
import logging

from aiohttp import web

from . import auth, upload
from .faults import FAULTS_KEY, STATS_KEY, Faults, Stats, fault_middleware
from .responses import graph_error
from .store import Store

log = logging.getLogger(__name__)

TOKEN_KEY = web.AppKey("token", str)
#: Request bodies are streamed to disk; this only bounds JSON bodies read whole.
MAX_JSON_BODY = 64 * 1024 * 1024


async def stats_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS_KEY].as_dict())


async def stats_reset(request: web.Request) -> web.Response:
    request.app[STATS_KEY].reset()
    return web.json_response(request.app[STATS_KEY].as_dict())


async def faults_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS_KEY].as_dict())


async def faults_set(request: web.Request) -> web.Response:
    """``POST /_amly/faults`` JSON with any :class:`Faults` fields; answers the new state."""
    try:
        values = await request.json()
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        request.app[FAULTS_KEY].update(values)
    except ValueError as e:
        return graph_error(400, f"bad faults: {e}", code=100)
    return web.json_response(request.app[FAULTS_KEY].as_dict())


def create_app(
    store: Store, *, token: str | None = None, faults: Faults | None = None
) -> web.Application:
    """The server over ``store``. ``token`` becomes the default user's token (created, or the
    one stored on an earlier start, when None); it is at ``app[TOKEN_KEY]``."""
    app = web.Application(
        middlewares=[fault_middleware, auth.auth_middleware], client_max_size=MAX_JSON_BODY
    )
    app[auth.STORE_KEY] = store
    app[auth.CLIENT_TOKENS_KEY] = auth.client_tokens()
    app[FAULTS_KEY] = faults if faults is not None else Faults()
    app[STATS_KEY] = Stats()
    app[TOKEN_KEY] = auth.default_token(store, token)
    r = app.router
    r.add_get("/_amly/stats", stats_view)
    r.add_post("/_amly/stats/reset", stats_reset)
    r.add_get("/_amly/faults", faults_view)
    r.add_post("/_amly/faults", faults_set)
    r.add_get("/me", auth.me)
    r.add_post("/login", auth.login)
    r.add_post("/logging", auth.logging_event)
    upload.add_routes(app)
    try:
        read = importlib.import_module(".read", __package__)
    except ModuleNotFoundError as e:  # only while the read side is being written
        if e.name != f"{__package__}.read":
            raise
        log.debug("amly.server.read not available: no read routes")
    else:
        read.add_routes(app)
    return app
