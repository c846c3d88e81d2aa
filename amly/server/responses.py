"""The two error dialects of the service, shared by every route of the local server.

The Graph API answers ``{"error": {...}}``; the upload service answers ``{"debug_info": {...}}``.
Clients (ours, and the official tool) branch on exactly these shapes, so they are built in one
place.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

#: Graph error code of an invalid, expired or missing access token.
CODE_BAD_TOKEN = 190
#: Graph error subcode of a search that took too long ("please retry").
SUBCODE_SEARCH_TIMEOUT = 3404014


def graph_error_body(
    message: str,
    *,
    code: int = 100,
    subcode: int | None = None,
    type: str = "OAuthException",
    transient: bool = False,
    user_title: str | None = None,
    user_msg: str | None = None,
) -> dict[str, Any]:
    """The Graph error object.

    >>> graph_error_body("nope", code=190)["error"]["code"]
    190
    """
    return {
        "error": {
            "message": message,
            "type": type,
            "code": code,
            "error_subcode": subcode,
            "is_transient": transient,
            "error_user_title": user_title or "",
            "error_user_msg": user_msg or "",
            "fbtrace_id": secrets.token_urlsafe(8),
        }
    }


def graph_error(status: int, message: str, **kw: Any) -> web.Response:
    """A Graph-style error response (``kw`` as in :func:`graph_error_body`)."""
    return web.json_response(graph_error_body(message, **kw), status=status)


def upload_error(
    status: int,
    type: str,
    message: str,
    *,
    retriable: bool = False,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """An upload-service error: ``{"debug_info": {"type", "message", "retriable"}}``."""
    body: dict[str, Any] = {
        "debug_info": {"type": type, "message": message, "retriable": retriable},
        **extra,
    }
    return web.json_response(body, status=status, headers=headers)


def search_timeout() -> web.Response:
    """What Graph answers when a search ran too long: 400 with subcode 3404014 (retry it)."""
    return graph_error(
        400,
        "Please reduce the amount of data you're asking for, then retry your request",
        code=1,
        subcode=SUBCODE_SEARCH_TIMEOUT,
        transient=True,
    )
