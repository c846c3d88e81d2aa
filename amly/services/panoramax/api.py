"""The Panoramax (geovisio) HTTP API: the few calls amly makes, each one request under the one
retry policy and rate limiter of the transport, with Panoramax's error bodies mapped to amly's
errors (``{"message": ..., "details": {"error": ...}}`` rather than Graph's ``error`` object).

Upload protocol (geovisio >= 2.7): ``POST /api/upload_sets`` (JSON) creates a set; each photo is
``POST /api/upload_sets/{id}/files`` (multipart, field ``file`` plus ``override_*`` fields);
``POST /api/upload_sets/{id}/complete`` closes it; ``GET /api/upload_sets/{id}`` says how far
the server's own preparation got. A 409 on a file means the server already has those bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from ...config import Secret
from ...errors import APIError, AuthError
from ...net import Transport
from ...net.retry import Retry, classify
from ...net.transport import decode_json, redact_url

TOKEN_HINT = (
    "the Panoramax token is missing, invalid or expired: run 'amly auth --service panoramax' "
    "or set PANORAMAX_TOKEN"
)
#: The first geovisio release with upload sets (older instances only know collections).
MIN_VERSION = (2, 7)


class TooOldError(APIError):
    """The instance predates upload sets: no sequence can go there, so the run stops."""

    exit_code = 5


@dataclasses.dataclass(frozen=True)
class FileAnswer:
    """What the server said about one file: ``status`` 202 (accepted), 409 (it already has these
    bytes), or a rejection (``rejected`` holds the server's reason)."""

    status: int
    picture_id: str | None = None
    rejected: str | None = None


def error_from(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Exception:
    """Map a Panoramax error answer to :class:`Retry`, :class:`AuthError` or :class:`APIError`.

    >>> type(error_from(401, {"message": "Token not valid"})).__name__
    'AuthError'
    >>> e = error_from(400, {"message": "Picture has invalid metadata",
    ...                      "details": {"error": "No GPS"}})
    >>> e.message, e.status
    ('Picture has invalid metadata: No GPS', 400)
    >>> isinstance(error_from(503, None), Retry)
    True
    """
    body = payload if isinstance(payload, dict) else {}
    message = str(body.get("message") or f"HTTP {status}")
    details = body.get("details")
    if isinstance(details, dict) and details.get("error"):
        message = f"{message}: {details['error']}"
    if status in (401, 403):
        return AuthError(f"not authorised: {message}", status=status, hint=TOKEN_HINT)
    if status == 429 or status >= 500:
        return classify(status, None, headers)
    return APIError(message, status=status)


class PanoramaxAPI:
    """One Panoramax instance (``api_url``: its base, e.g. ``https://panoramax.openstreetmap.fr``)
    through a :class:`Transport` (sessions, retries, limiters). ``token`` may be None where the
    instance lets anyone upload."""

    def __init__(self, transport: Transport, api_url: str, token: Secret | None = None) -> None:
        self.transport = transport
        self.base = api_url.rstrip("/")
        if self.base.endswith("/api"):
            self.base = self.base[: -len("/api")]
        self.token = token

    def url(self, path: str) -> str:
        return f"{self.base}/api/{path.lstrip('/')}"

    def headers(self) -> dict[str, str]:
        h = {"Accept": "application/json"}
        if self.token is not None:
            h["Authorization"] = f"Bearer {self.token.reveal()}"
        return h

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        surface: str = "graph",
        timeout: float | None = None,
        again: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """One JSON request with retries; errors mapped by :func:`error_from`. ``again``, if
        given, runs before each retry: an answer from it ends the call (a creation whose first
        answer was lost may have happened)."""
        url = self.url(path)
        headers = self.headers()
        body = None if json_body is None else json.dumps(json_body).encode()
        if body is not None:
            headers["Content-Type"] = "application/json"
        elif method == "POST":
            body = b""  # an explicit empty body (Content-Length: 0)
        session = self.transport.session_for(url)

        async def attempt(n: int) -> Any:
            if n and again is not None:
                found = await again()
                if found is not None:
                    return found
            async with session.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout or self.transport.timeout),
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise error_from(resp.status, _json_or_none(raw), resp.headers)
                self.transport.stats["bytes_received"] += len(raw)
                return decode_json(raw, resp.status)

        return await self.transport.retrying(
            attempt, surface=surface, what=f"{method} {redact_url(url)}"
        )

    # -- the calls ------------------------------------------------------------------------------

    async def configuration(self) -> dict[str, Any]:
        """``GET /api/configuration``, checked: a Panoramax instance recent enough for upload
        sets (a clear :class:`APIError` for any other server)."""
        try:
            conf = await self.call("GET", "configuration")
        except APIError as e:
            if isinstance(e, AuthError):
                raise
            raise APIError(
                f"{self.base} is not a Panoramax instance ({e.message})",
                status=e.status,
                hint="--api-url is the instance's base URL, e.g. https://panoramax.openstreetmap.fr",
            ) from None
        if not isinstance(conf, dict) or "version" not in conf:
            raise APIError(
                f"{self.base} is not a Panoramax instance (no version in /api/configuration)",
                hint="--api-url is the instance's base URL, e.g. https://panoramax.openstreetmap.fr",
            )
        if version_tuple(str(conf["version"])) < MIN_VERSION:
            raise TooOldError(
                f"Panoramax {conf['version']} at {self.base} is too old: upload sets need "
                f"{'.'.join(map(str, MIN_VERSION))} or later",
                hint="ask the instance to upgrade, or upload with its own web interface",
            )
        return conf

    async def me(self) -> dict[str, Any] | None:
        """The token's account (``{"id", "name"}``), None without a token. Checks the token."""
        if self.token is None:
            return None
        answer = await self.call("GET", "users/me")
        if not isinstance(answer, dict) or "id" not in answer:
            raise AuthError("the server did not say who this token belongs to", hint=TOKEN_HINT)
        return answer

    async def create_upload_set(
        self, body: dict[str, Any], *, key: str | None = None
    ) -> dict[str, Any]:
        """A new upload set, unless one of the token's unfinished sets carries ``key`` (its
        ``metadata.amly_sequence``): a creation whose answer was lost, by a crash or on the
        wire, is found again instead of leaving an empty set behind and making a second."""
        if key is not None:
            found = await self.find_upload_set(key)
            if found is not None:
                return found

        async def again() -> dict[str, Any] | None:
            return None if key is None else await self.find_upload_set(key)

        answer = await self.call("POST", "upload_sets", json_body=body, again=again)
        if not isinstance(answer, dict) or "id" not in answer:
            raise APIError(f"upload set creation answered without an id: {answer!r:.200}")
        return answer

    async def find_upload_set(self, key: str) -> dict[str, Any] | None:
        """The token's unfinished (not dispatched) upload set whose ``metadata.amly_sequence``
        is ``key``; None without a token (sets are listed per account)."""
        if self.token is None:
            return None
        answer = await self.call("GET", "users/me/upload_sets", params={"limit": "1000"})
        sets = answer.get("upload_sets") if isinstance(answer, dict) else None
        for us in sets or []:
            meta = us.get("metadata") if isinstance(us, dict) else None
            if isinstance(meta, dict) and meta.get("amly_sequence") == key and "id" in us:
                return dict(us)
        return None

    async def upload_set(self, set_id: str) -> dict[str, Any]:
        answer = await self.call("GET", f"upload_sets/{set_id}")
        if not isinstance(answer, dict):
            raise APIError(f"upload set {set_id}: unexpected answer {answer!r:.200}")
        return answer

    async def upload_set_files(self, set_id: str) -> list[dict[str, Any]]:
        answer = await self.call("GET", f"upload_sets/{set_id}/files")
        files = answer.get("files") if isinstance(answer, dict) else None
        return [f for f in files or [] if isinstance(f, dict)]

    async def complete(self, set_id: str) -> dict[str, Any]:
        answer = await self.call("POST", f"upload_sets/{set_id}/complete")
        return answer if isinstance(answer, dict) else {}

    async def add_file(
        self,
        set_id: str,
        filename: str,
        data: bytes,
        fields: Mapping[str, str],
        *,
        timeout: float,
        on_retry: Any = None,
    ) -> FileAnswer:
        """POST one photo (multipart). 202 and 409 are successes; a 4xx the server tracks as a
        rejection comes back as ``FileAnswer.rejected``; auth and exhausted retries raise."""
        url = self.url(f"upload_sets/{set_id}/files")
        session = self.transport.session_for(url)

        async def attempt(n: int) -> FileAnswer:
            form = aiohttp.FormData()
            for k, v in fields.items():
                form.add_field(k, v)
            form.add_field("file", data, filename=filename, content_type="image/jpeg")
            self.transport.stats["bytes_sent"] += len(data)
            async with session.post(
                url,
                data=form,
                headers=self.headers(),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                payload = _json_or_none(raw)
                if resp.status == 409:
                    existing = (payload or {}).get("existing_item") or {}
                    return FileAnswer(409, picture_id=existing.get("id"))
                if resp.status >= 400:
                    err = error_from(resp.status, payload, resp.headers)
                    if isinstance(err, APIError) and not isinstance(err, AuthError):
                        if resp.status in (400, 413, 415, 422):
                            return FileAnswer(resp.status, rejected=err.message)
                    raise err
                if not isinstance(payload, dict):
                    raise Retry(f"HTTP {resp.status} with a body that is not JSON")
                return FileAnswer(resp.status, picture_id=payload.get("picture_id"))

        return await self.transport.retrying(
            attempt, surface="upload", what=f"upload of {filename}", on_retry=on_retry
        )


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def version_tuple(v: str) -> tuple[int, ...]:
    """``"2.15.1"`` -> ``(2, 15, 1)``; unparsable parts end the tuple.

    >>> version_tuple("2.15.1"), version_tuple("2.7.0-12-gabc"), version_tuple("x")
    ((2, 15, 1), (2, 7, 0), ())
    """
    out = []
    for part in v.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)
