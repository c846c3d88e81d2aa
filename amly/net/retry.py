"""The one retry policy, used by every request amly makes (uploads, search, tiles, downloads).

Classification (from the protocol notes):

* 412 ``OffsetInvalidError`` -> retry at once (the retry asks the server for its offset);
* 429, ``RequestRateLimitedError`` or Graph code 4 -> wait ``backoff`` ms, else ``Retry-After``,
  else ``rate_limit_wait`` seconds;
* 5xx, connection reset, timeout, search timeout (400/3404014) -> capped exponential backoff
  with full jitter;
* 401/403, Graph code 190, ``NotAuthorizedError`` -> :class:`~amly.errors.AuthError`, no retry;
* other 4xx -> :class:`~amly.errors.APIError`, unless ``debug_info.retriable`` is true.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from ..errors import APIError, AuthError

T = TypeVar("T")

SEARCH_TIMEOUT_SUBCODE = 3404014


class Retry(Exception):
    """Raised inside an attempt to ask :func:`with_retries` for another one.

    ``wait`` is the server-mandated delay (``None``: use the policy's backoff). An upload's
    every retry asks the server where to resume, so an offset mismatch needs no flag.
    """

    def __init__(
        self,
        reason: str,
        *,
        wait: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.rate_limited = rate_limited


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``max_attempts`` counts the first try (failures in a
    row without progress); ``max_rate_limited`` bounds consecutive rate-limit waits."""

    max_attempts: int = 10
    #: Connection attempts to a host that has never answered before giving up: a wrong
    #: endpoint or a server that is not running fails in seconds, not after the full budget.
    first_contact_attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 30.0
    rate_limit_wait: float = 10.0
    max_rate_limited: int = 60

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the ``attempt``-th retry (0-based).

        >>> 0 <= RetryPolicy(base_delay=1, max_delay=4).backoff(10) <= 4
        True
        """
        return random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    10.0
    >>> parse_retry_after("soon") is None
    True
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def classify(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Exception:
    """The exception an error response maps to: :class:`Retry`, :class:`AuthError` or
    :class:`APIError`. Never returns for a success status.

    >>> isinstance(classify(503, None), Retry)
    True
    >>> classify(412, {"debug_info": {"type": "OffsetInvalidError", "retriable": True}}
    ...          ).wait
    0.0
    >>> classify(429, {"backoff": 1500}).wait
    1.5
    >>> type(classify(401, {"error": {"code": 190, "message": "expired"}})).__name__
    'AuthError'
    >>> type(classify(400, {"error": {"code": 100, "message": "bad bbox"}})).__name__
    'APIError'
    >>> isinstance(classify(400, {"error": {"code": 1, "error_subcode": 3404014}}), Retry)
    True
    """
    headers = headers or {}
    payload = payload if isinstance(payload, dict) else {}
    error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    debug = payload.get("debug_info") if isinstance(payload.get("debug_info"), dict) else {}
    dtype = debug.get("type", "")
    code = error.get("code")
    subcode = error.get("error_subcode")
    message = error.get("message") or debug.get("message") or f"HTTP {status}"

    if status == 412 or dtype == "OffsetInvalidError":
        return Retry(f"offset mismatch: {message}", wait=0.0)
    if status == 429 or dtype == "RequestRateLimitedError" or code in (4, 17, 32, 613):
        wait: float | None = None
        if isinstance(payload.get("backoff"), (int, float)):
            wait = payload["backoff"] / 1000.0
        if wait is None:
            wait = parse_retry_after(headers.get("Retry-After"))
        return Retry(f"rate limited: {message}", wait=wait, rate_limited=True)
    if status in (401, 403) or code == 190 or dtype == "NotAuthorizedError":
        return AuthError(
            f"not authorised: {message}",
            status=status,
            code=code,
            hint="the token is missing, invalid or expired: run 'amly auth' or set "
            "MAPILLARY_ACCESS_TOKEN",
        )
    if subcode == SEARCH_TIMEOUT_SUBCODE or error.get("is_transient") is True:
        return Retry(f"transient server error: {message}")
    if status >= 500:
        return Retry(f"server error {status}: {message}")
    if debug.get("retriable") is True:
        return Retry(f"retriable error {status}: {message}")
    return APIError(message, status=status, code=code, subcode=subcode)


#: Exceptions that mean "the transfer broke, try again" rather than "the request is wrong".
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    asyncio.TimeoutError,
    ConnectionError,
)


async def with_retries(
    attempt: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[int, BaseException, float], Awaitable[None] | None] | None = None,
    what: str = "request",
    progressed: Callable[[], bool] | None = None,
) -> T:
    """Run ``attempt(n)`` until it returns, retrying :class:`Retry` and transient transport
    errors under ``policy``. ``on_retry(n, error, wait)`` is told of each retry (a rate
    limiter uses it to pause everyone on a 429). Fatal errors propagate at once.

    The attempt budget (``max_attempts``) counts failures since the job last moved forward:
    ``progressed()``, asked after each failure, says whether it did (an upload whose server
    offset grew), so a large upload over a flaky link is not abandoned while it advances.
    Rate limiting is the server pacing us, not a failure: it has its own budget
    (``max_rate_limited`` waits in a row).
    """
    n = 0  # attempts made
    failures = 0  # failures since the last progress: the budget and the backoff exponent
    limited = 0
    while True:
        try:
            return await attempt(n)
        except Retry as r:
            err: BaseException = r
            if r.rate_limited:
                limited += 1
                wait = r.wait if r.wait is not None else policy.rate_limit_wait
            else:
                limited = 0
                wait = r.wait if r.wait is not None else policy.backoff(failures)
                failures += 1
        except TRANSIENT_EXCEPTIONS as e:
            err = e
            limited = 0
            wait = policy.backoff(failures)
            failures += 1
        n += 1
        if progressed is not None and progressed():
            failures = 0
        if failures >= policy.max_attempts or limited >= policy.max_rate_limited:
            raise APIError(
                f"{what} failed after {n} attempts: {err or type(err).__name__}",
                hint="the server kept failing; rerun later: finished work is not redone",
            ) from err
        if on_retry is not None:
            res = on_retry(n, err, wait)
            if res is not None:
                await res
        await asyncio.sleep(wait)
