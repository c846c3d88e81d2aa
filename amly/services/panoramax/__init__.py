"""Panoramax (geovisio): the upload protocol as a :class:`PanoramaxTarget` of the upload engine.
Reach it through :meth:`amly.Client.panoramax_target`."""

from __future__ import annotations

import os

from ...config import Secret
from .api import PanoramaxAPI
from .upload import PanoramaxTarget, SetStatus, WaitProgress

TOKEN_ENV = "PANORAMAX_TOKEN"

__all__ = [
    "TOKEN_ENV",
    "PanoramaxAPI",
    "PanoramaxTarget",
    "SetStatus",
    "WaitProgress",
    "profile_name",
    "resolve_token",
    "same_instance",
]


def profile_name(profile: str | None) -> str:
    """Panoramax tokens live next to Mapillary's in the profiles file, under their own names.

    >>> profile_name(None), profile_name("work")
    ('panoramax:default', 'panoramax:work')
    """
    return f"panoramax:{profile or 'default'}"


def same_instance(a: str | None, b: str) -> bool:
    """
    >>> same_instance("https://x.org/api/", "https://x.org"), same_instance(None, "https://x")
    (True, False)
    """

    def norm(u: str) -> str:
        u = u.rstrip("/")
        return u[: -len("/api")] if u.endswith("/api") else u

    return a is not None and norm(a) == norm(b)


def resolve_token(api_url: str, profile: str | None = None) -> Secret | None:
    """``PANORAMAX_TOKEN``, else the profile saved by ``amly auth --service panoramax`` for this
    instance, else None (an instance with auth off takes anonymous uploads)."""
    from ..mapillary.auth import load_profiles

    if env := os.environ.get(TOKEN_ENV, "").strip():
        return Secret(env)
    entry = load_profiles().get(profile_name(profile))
    if entry and entry.get("token") and same_instance(entry.get("endpoint"), api_url):
        return Secret(str(entry["token"]))
    return None
