"""Injected faults and request counters, so clients can be tested against a misbehaving server.

A :class:`Faults` is mutable at run time (``running_server(...).faults``, ``POST /_amly/faults``)
and deterministic: every random decision comes from one seeded generator. :class:`Stats`
counts what clients did (requests, bytes per upload session, 412s...) so a test can assert,
for example, that a resumed upload re-sent no more than 10 % of its bytes.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .responses import graph_error, graph_error_body, search_timeout, upload_error

#: Paths never subject to faults (the admin surface must stay reachable).
ADMIN_PREFIX = "/_amly/"


#: The faults the middleware applies to every request.
_PER_REQUEST = ("latency_ms", "error_rate", "rate_limit_every")


@dataclasses.dataclass
class Faults:
    """What goes wrong, and how often. All off by default.

    - ``latency_ms``: added to every request.
    - ``error_rate``: fraction of requests answered with a 5xx (before the handler runs).
    - ``drop_after_bytes``: an upload POST's connection is dropped after this many body bytes
      (the bytes that arrived are kept, as on the real service).
    - ``rate_limit_every``: every N-th request gets a 429 with ``backoff`` (ms) and
      ``Retry-After``.
    - ``search_timeout_rate``: fraction of searches answered with the Graph search timeout
      (the read side asks :meth:`search_timeout` per search).
    - ``backoff_ms``: the backoff a 429 asks for.
    - ``seed``: seeds the generator (set again to restart the same pattern).

    >>> a, b = Faults(error_rate=0.5, seed=1), Faults(error_rate=0.5, seed=1)
    >>> [a.roll_error() for _ in range(8)] == [b.roll_error() for _ in range(8)]
    True
    >>> f = Faults(rate_limit_every=3)
    >>> [f.count_request() for _ in range(6)]
    [False, False, True, False, False, True]
    >>> Faults().quiet, f.quiet  # quiet: the per-request middleware has nothing to inject
    (True, False)
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    drop_after_bytes: int | None = None
    rate_limit_every: int = 0
    search_timeout_rate: float = 0.0
    backoff_ms: int = 1000
    seed: int | None = 0
    _rng: random.Random = dataclasses.field(init=False, repr=False, compare=False)
    _count: int = dataclasses.field(init=False, default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.latency_ms = self.latency_ms  # sets quiet

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "seed":
            super().__setattr__("_rng", random.Random(value))
            super().__setattr__("_count", 0)
        if name in _PER_REQUEST:
            super().__setattr__("quiet", not any(getattr(self, k, 0) for k in _PER_REQUEST))

    #: No per-request fault is on (kept by ``__setattr__``).
    quiet: bool = dataclasses.field(init=False, default=True, repr=False, compare=False)

    FIELDS = (
        "latency_ms",
        "error_rate",
        "drop_after_bytes",
        "rate_limit_every",
        "search_timeout_rate",
        "backoff_ms",
        "seed",
    )

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from a JSON object (unknown keys raise ``ValueError``)."""
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        for k, v in values.items():
            if v is not None and k != "seed" and (not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"{k} must be a non-negative number")
            setattr(self, k, v)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def clear(self) -> None:
        """Everything off (the seed is kept)."""
        self.update(
            {
                "latency_ms": 0,
                "error_rate": 0,
                "drop_after_bytes": None,
                "rate_limit_every": 0,
                "search_timeout_rate": 0,
            }
        )

    def count_request(self) -> bool:
        """Count one request; True when it is to be rate limited."""
        self._count += 1
        return bool(self.rate_limit_every) and self._count % int(self.rate_limit_every) == 0

    def roll_error(self) -> bool:
        return bool(self.error_rate) and self._rng.random() < self.error_rate

    def search_timeout(self) -> bool:
        """Whether this search is to time out. For the read side: ``if faults.search_timeout():
        return responses.search_timeout()`` (or use :func:`maybe_search_timeout`)."""
        return bool(self.search_timeout_rate) and self._rng.random() < self.search_timeout_rate


@dataclasses.dataclass
class Stats:
    """Counters of what the server saw. ``GET /_amly/stats`` returns :meth:`as_dict`."""

    requests: int = 0
    by_status: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    by_route: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    bytes_received: int = 0
    bytes_by_key: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    offset_errors: int = 0
    rate_limited: int = 0
    injected_errors: int = 0
    dropped: int = 0
    search_timeouts: int = 0
    uploads_completed: int = 0
    clusters: int = 0
    unknown_organizations: int = 0  # finish_upload named an organization the store lacks

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["by_status"] = {str(k): v for k, v in self.by_status.items()}
        d["by_route"] = dict(self.by_route)
        d["bytes_by_key"] = dict(self.bytes_by_key)
        return d

    def reset(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, collections.Counter):
                value.clear()
            else:
                setattr(self, f.name, 0)


FAULTS_KEY = web.AppKey("faults", Faults)
STATS_KEY = web.AppKey("stats", Stats)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def maybe_search_timeout(request: web.Request) -> web.Response | None:
    """The read side's hook: the search-timeout response to return, or None to go on."""
    if request.app[FAULTS_KEY].search_timeout():
        request.app[STATS_KEY].search_timeouts += 1
        return search_timeout()
    return None


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts every request and applies latency, rate limiting and 5xx errors."""
    app = request.app
    stats, faults = app[STATS_KEY], app[FAULTS_KEY]
    stats.requests += 1
    route = request.match_info.route.resource
    stats.by_route[route.canonical if route is not None else "?"] += 1
    try:
        if faults.quiet:  # nothing to inject: only count (the rate-limit pattern's place)
            if not request.path.startswith(ADMIN_PREFIX):
                faults._count += 1
            resp = await handler(request)
        else:
            resp = await _inject(request, handler)
    except web.HTTPException as e:
        stats.by_status[e.status] += 1
        raise
    stats.by_status[resp.status] += 1
    return resp


async def _inject(request: web.Request, handler: Handler) -> web.StreamResponse:
    stats, faults = request.app[STATS_KEY], request.app[FAULTS_KEY]
    if request.path.startswith(ADMIN_PREFIX):
        return await handler(request)
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    is_upload = request.path.startswith("/upload/")
    if faults.count_request():
        stats.rate_limited += 1
        headers = {"Retry-After": str(max(1, math.ceil(faults.backoff_ms / 1000)))}
        if is_upload:
            return upload_error(
                429,
                "RequestRateLimitedError",
                "Request rate limited",
                retriable=True,
                headers=headers,
                backoff=faults.backoff_ms,
            )
        body = graph_error_body("Application request limit reached", code=4, transient=True)
        body["backoff"] = faults.backoff_ms
        body["debug_info"] = {"type": "RequestRateLimitedError", "retriable": True}
        return web.json_response(body, status=429, headers=headers)
    if faults.roll_error():
        stats.injected_errors += 1
        if is_upload:
            return upload_error(503, "ServiceUnavailableError", "injected fault", retriable=True)
        return graph_error(
            503, "Service temporarily unavailable (injected)", code=2, transient=True
        )
    return await handler(request)
