"""The HTTP transport: one aiohttp session per client, auth, JSON decoding, error mapping,
and every request routed through the one retry policy and the per-surface rate limiters.

Higher layers (upload, search, tiles, download) call :meth:`Transport.request` or the
``graph_*`` helpers and never see retries, tokens or status codes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from ..config import Endpoints, Secret
from ..errors import APIError, AuthError, UsageError
from .limits import Limits, RateLimiter
from .retry import Retry, RetryPolicy, classify, with_retries

log = logging.getLogger("amly.api")

USER_AGENT = "amly/0.1"

T = TypeVar("T")


class Transport:
    """Owns the aiohttp sessions, one per host (so slow uploads never queue Graph calls behind
    them). Use as ``async with Transport(...) as t:``.

    ``concurrency`` bounds open connections per host; callers bound their own work with
    semaphores on top, so memory stays flat however large the job is.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        token: Secret | None = None,
        *,
        concurrency: int = 32,
        policy: RetryPolicy | None = None,
        limits: Limits | None = None,
        timeout: float = 60.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.token = token
        self.policy = policy or RetryPolicy()
        self.limiters: dict[str, RateLimiter] = (limits or Limits()).limiters()
        self.concurrency = concurrency
        self.timeout = timeout
        self._session = session
        self._own_session = session is None
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._reached = False  # has any host answered yet? (see RetryPolicy.first_contact_attempts)
        #: Counters for summaries and tests: requests, retries, bytes_sent, bytes_received.
        self.stats: dict[str, int] = {
            "requests": 0,
            "retries": 0,
            "bytes_sent": 0,
            "bytes_received": 0,
        }

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            headers={"User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> Transport:
        if self._session is None:
            self._session = self._new_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for s in self._sessions.values():
            if s is not self._session:
                await s.close()
        self._sessions.clear()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Transport used outside 'async with'")
        return self._session

    def session_for(self, url: str) -> aiohttp.ClientSession:
        """The session (connection pool) of ``url``'s host; the first host gets the default
        session, others their own (a caller-supplied session is shared by all hosts)."""
        if self._session is None:
            raise RuntimeError("Transport used outside 'async with'")
        if not self._own_session:
            return self._session
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.netloc}"
        s = self._sessions.get(host)
        if s is None:
            s = self._session if not self._sessions else self._new_session()
            self._sessions[host] = s
        return s

    async def retrying(
        self,
        attempt: Callable[[int], Awaitable[T]],
        *,
        surface: str = "graph",
        what: str = "request",
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        progressed: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``attempt(n)`` under the one retry policy and ``surface``'s rate limiter (a 429
        pauses the whole surface). For requests :meth:`request` cannot express, such as
        resumable upload POSTs; ``attempt`` raises :func:`error_from_response` on errors."""
        limiter = self.limiters[surface]

        async def limited(n: int) -> T:
            await limiter.acquire()
            self.stats["requests"] += 1
            try:
                result = await attempt(n)
            except aiohttp.ClientConnectorError as e:
                if not self._reached and n + 1 >= self.policy.first_contact_attempts:
                    raise APIError(
                        f"cannot connect to {e.host}:{e.port}: {e.os_error or e}",
                        hint="is the server running? check the endpoint (or the "
                        "MAPILLARY_*_ENDPOINT variables) and the network",
                        options=("endpoint",),
                    ) from e
                raise
            except (Retry, APIError):
                self._reached = True  # an HTTP answer, even an error, means the host is there
                raise
            self._reached = True
            return result

        async def retried(n: int, err: BaseException, wait: float) -> None:
            await self._on_retry(surface, n, err, wait)
            if on_retry is not None:
                on_retry(n, err, wait)

        return await with_retries(
            limited, self.policy, on_retry=retried, what=what, progressed=progressed
        )

    def auth_headers(self, token: Secret | None = None) -> dict[str, str]:
        token = token or self.token
        if token is None:
            raise AuthError(
                "no access token",
                hint="give a token, save one with `amly auth`, or set MAPILLARY_ACCESS_TOKEN",
                options=("token",),
            )
        return {"Authorization": f"OAuth {token.reveal()}"}

    async def _on_retry(self, surface: str, n: int, err: BaseException, wait: float) -> None:
        self.stats["retries"] += 1
        if isinstance(err, Retry) and err.rate_limited:
            self.limiters[surface].pause(wait)
        log.debug("retry %d on %s after %.2fs: %s", n, surface, wait, err)

    async def request(
        self,
        method: str,
        url: str,
        *,
        surface: str = "graph",
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        token: Secret | None = None,
        read: Callable[[aiohttp.ClientResponse], Awaitable[Any]] | None = None,
        timeout: float | None = None,
        what: str | None = None,
    ) -> Any:
        """One logical request with retries. Returns the decoded JSON body, or whatever
        ``read(response)`` returns for a successful response (for binary bodies)."""
        if params and any(k.lower() == "access_token" for k in params):
            raise UsageError("refusing to put a token in a URL")
        hdrs = dict(headers or {})
        if auth:
            hdrs.update(self.auth_headers(token))
        body = None if json_body is None else json.dumps(json_body).encode()
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        session = self.session_for(url)

        async def attempt(n: int) -> Any:
            if body is not None:
                self.stats["bytes_sent"] += len(body)
            async with session.request(
                method,
                url,
                params=params,
                data=body,
                headers=hdrs,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as resp:
                if resp.status >= 400:
                    raise await error_from_response(resp)
                if read is not None:
                    value = await read(resp)
                    if isinstance(value, (bytes, bytearray)):
                        self.stats["bytes_received"] += len(value)
                    return value
                raw = await resp.read()
                self.stats["bytes_received"] += len(raw)
                return decode_json(raw, resp.status)

        return await self.retrying(
            attempt, surface=surface, what=what or f"{method} {redact_url(url)}"
        )

    async def graph_get(
        self, path: str, params: Mapping[str, Any] | None = None, *, surface: str = "graph"
    ) -> Any:
        return await self.request(
            "GET", f"{self.endpoints.graph}/{path.lstrip('/')}", params=params, surface=surface
        )

    async def graph_post(self, path: str, json_body: Any, *, surface: str = "graph") -> Any:
        return await self.request(
            "POST",
            f"{self.endpoints.graph}/{path.lstrip('/')}",
            json_body=json_body,
            surface=surface,
        )


async def read_bytes(resp: aiohttp.ClientResponse) -> bytes:
    """A ``read=`` callback for :meth:`Transport.request`: the raw body (images, tiles)."""
    return bytes(await resp.read())


def decode_json(raw: bytes, status: int = 200) -> Any:
    """Decode a JSON body; a non-JSON success is a retriable server fault (a proxy page)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise Retry(f"HTTP {status} with a body that is not JSON") from e


async def error_from_response(resp: aiohttp.ClientResponse) -> Exception:
    """Read an error response and map it through the retry policy's classification."""
    try:
        raw = await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        raw = b""
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = None
    err = classify(resp.status, payload, resp.headers)
    if isinstance(err, APIError) and not isinstance(err, AuthError) and payload is None:
        err = APIError(
            f"HTTP {resp.status} from {redact_url(str(resp.url))}: {raw[:200]!r}",
            status=resp.status,
        )
    return err


def redact_url(url: str) -> str:
    """Drop query parameters that could carry secrets before a URL reaches a log or error.

    >>> redact_url("https://x/y?access_token=MLY|1|2&sig=abc&bbox=1,2,3,4")
    'https://x/y?access_token=***&sig=***&bbox=1,2,3,4'
    """
    if "?" not in url:
        return url
    base, _, query = url.partition("?")
    parts = []
    for item in query.split("&"):
        key, sep, _value = item.partition("=")
        if key.lower() in {"access_token", "sig", "signature", "token", "oh", "oe"}:
            parts.append(f"{key}{sep}***")
        else:
            parts.append(item)
    return f"{base}?{'&'.join(parts)}"
