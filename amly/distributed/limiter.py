"""The per-token rate limits, held across every worker of a job (not N x the limit).

A :class:`TokenBank` holds one token bucket per API surface, refilled at the published rate.
It lives in one place for the whole cluster: on the Dask scheduler (:class:`LimiterPlugin`),
which outlives any worker, so a ``kill -9`` of a worker loses neither the bank nor its pauses.
Every worker's :class:`SharedRateLimiter` leases small batches of tokens from the bank (one
round trip per batch, not per request) and hands them out locally; a leased token unused
after :data:`LEASE_TTL` seconds is dropped, so tokens granted long ago never add up into a
burst. Over any window of T seconds the whole cluster sends at most
``rate x (T + LEASE_TTL) + burst`` requests on a surface.

A 429 on one worker pauses the surface everywhere: the worker pauses locally and tells the
bank, whose next lease answers carry the pause to the others.

:class:`SharedRateLimiter` has :class:`amly.net.RateLimiter`'s interface (``await
acquire()``, ``pause(seconds)``), so a transport's per-surface limiters can be swapped for
shared ones without the transport knowing.

>>> clock = [0.0]
>>> bank = TokenBank({"search": (10.0, 2.0)}, clock=lambda: clock[0])
>>> bank.lease("search", 5)   # the burst (2 tokens) is there at once
(2, 0.0)
>>> bank.lease("search", 5)   # then one token per 0.1 s
(0, 0.1)
>>> clock[0] = 0.35         # 3.5 tokens' worth, but never more than the burst
>>> bank.lease("search", 5)
(2, 0.0)
>>> bank.pause("search", 2.0); bank.lease("search", 1)
(0, 2.0)
>>> bank.lease("tiles", 1000)  # a surface without a limit
(1000, 0.0)
>>> bank.reconfigure({"search": (1.0, 1.0)}); bank.lease("search", 5)  # pause still on
(0, 2.0)
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..net import Limits

__all__ = [
    "LEASE_TTL",
    "LimiterPlugin",
    "SharedRateLimiter",
    "TokenBank",
    "bank_spec",
    "bank_key",
    "shared_limiters",
]

#: Seconds a leased token stays usable on a worker.
LEASE_TTL = 1.0
#: The largest batch one lease asks for (a fraction of a second's worth, see ``_batch``).
MAX_BATCH = 64

#: surface -> (tokens per second or None for no limit, burst capacity)
BankSpec = Mapping[str, "tuple[float | None, float]"]


def bank_spec(limits: Limits) -> dict[str, tuple[float | None, float]]:
    """The bank's buckets for ``limits`` (the same rates and bursts as
    :meth:`Limits.limiters`).

    >>> bank_spec(Limits(search_per_minute=600))["search"]
    (10.0, 10.0)
    """
    return {name: (lim.rate, lim.capacity) for name, lim in limits.limiters().items()}


def bank_key(endpoint: str, token: str) -> str:
    """Which bank a worker uses: one per (service, token), as the service counts per token.
    Only a digest of the token is ever sent or kept.

    >>> len(bank_key("https://graph.mapillary.com", "MLY|x"))
    32
    """
    return hashlib.sha256(f"{endpoint}\0{token}".encode()).hexdigest()[:32]


class TokenBank:
    """Token buckets per surface with pauses; pure (the clock is injectable), not thread-safe
    (the scheduler calls it from its one event loop)."""

    def __init__(self, spec: BankSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        now = clock()
        self.spec = {k: (r, float(c)) for k, (r, c) in spec.items()}
        self.tokens = {k: c for k, (_r, c) in self.spec.items()}
        self.stamp = dict.fromkeys(self.spec, now)
        self.paused_until: dict[str, float] = {}
        #: Tokens granted per surface, for reports and tests.
        self.granted: dict[str, int] = dict.fromkeys(self.spec, 0)

    def reconfigure(self, spec: BankSpec) -> None:
        """New rates and bursts; tokens in hand are kept up to the new bursts."""
        now = self.clock()
        self.spec = {k: (r, float(c)) for k, (r, c) in spec.items()}
        for k, (_r, c) in self.spec.items():
            self.tokens[k] = min(c, self.tokens.get(k, c))
            self.stamp[k] = self.stamp.get(k, now)
            self.granted.setdefault(k, 0)

    def pause(self, surface: str, seconds: float) -> None:
        until = self.clock() + max(0.0, seconds)
        self.paused_until[surface] = max(self.paused_until.get(surface, 0.0), until)

    def lease(self, surface: str, want: int) -> tuple[int, float]:
        """``(granted, wait)``: up to ``want`` tokens now; with none, how long until asking
        again makes sense (the pause left, or the time to the next token)."""
        now = self.clock()
        paused = self.paused_until.get(surface, 0.0) - now
        if paused > 0:
            return 0, round(paused, 6)
        rate, cap = self.spec.get(surface, (None, 1.0))
        if rate is None:
            return want, 0.0
        tokens = min(cap, self.tokens[surface] + (now - self.stamp[surface]) * rate)
        self.stamp[surface] = now
        n = min(want, math.floor(tokens + 1e-9))
        self.tokens[surface] = tokens - n
        if n <= 0:
            return 0, round((1.0 - tokens) / rate, 6)
        self.granted[surface] = self.granted.get(surface, 0) + n
        return n, 0.0


def _batch(rate: float | None, workers: int) -> int:
    """Tokens per lease: ~50 ms of the rate, shared among the workers, at least 1.

    >>> _batch(1000 / 1.0, 2), _batch(10.0, 4), _batch(None, 1)
    (25, 1, 64)
    """
    if rate is None:
        return MAX_BATCH
    return max(1, min(MAX_BATCH, int(rate * 0.05 / max(1, workers))))


#: ``call(op, **kwargs)``: one round trip to wherever the bank is.
Caller = Callable[..., Awaitable[Any]]


class SharedRateLimiter:
    """One surface's limiter on one worker, drawing from the shared bank via ``call``."""

    def __init__(
        self,
        surface: str,
        call: Caller,
        *,
        rate: float | None,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.surface = surface
        self.rate = rate
        self.capacity = float(_batch(rate, workers))
        self._call = call
        self._batch = _batch(rate, workers)
        self._clock = clock
        self._leased: list[float] = []  # expiry times of the tokens in hand
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every caller here for ``seconds`` and tell the bank, which holds the others."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._leased.clear()
        task = asyncio.ensure_future(self._call("pause", surface=self.surface, seconds=seconds))
        task.add_done_callback(_ignore_result)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                while self._leased and self._leased[-1] <= now:
                    self._leased.pop()
                if self._leased:
                    self._leased.pop()
                    return
                granted, wait = await self._call("lease", surface=self.surface, want=self._batch)
                if granted:
                    expiry = self._clock() + LEASE_TTL
                    self._leased.extend([expiry] * int(granted))
                    continue
                await asyncio.sleep(max(0.001, float(wait)))


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a lost pause message only costs one more 429


def local_caller(bank: TokenBank) -> Caller:
    """A caller for a bank in this process (tests, and ``--shard`` without a cluster)."""

    async def call(op: str, **kw: Any) -> Any:
        if op == "lease":
            return bank.lease(kw["surface"], kw["want"])
        bank.pause(kw["surface"], kw["seconds"])
        return None

    return call


def shared_limiters(
    limits: Limits, call: Caller, *, workers: int = 1
) -> dict[str, SharedRateLimiter]:
    """Limiters for every surface of ``limits``, all drawing on the bank behind ``call``;
    assign them to ``Transport.limiters``."""
    return {
        name: SharedRateLimiter(name, call, rate=rate, workers=workers)
        for name, (rate, _cap) in bank_spec(limits).items()
    }


# --- the bank on the Dask scheduler ---------------------------------------------------------

PLUGIN_NAME = "amly-limiter"

try:  # the cluster part needs amly[dask]; the rest of this module does not
    from distributed.diagnostics.plugin import SchedulerPlugin as _Base
except ImportError:  # pragma: no cover - exercised without the extra
    _Base = object  # type: ignore[assignment,misc]


class LimiterPlugin(_Base):
    """Keeps the token banks (one per service and token) and whole-job progress on the
    scheduler, answering the workers' ``amly_lease`` / ``amly_pause`` / ``amly_progress``
    calls. Register once per scheduler (:func:`amly.distributed.cluster.install`)."""

    idempotent = True
    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.banks: dict[str, TokenBank] = {}
        #: job -> tile key -> images finished (max over attempts: a re-run tile restarts)
        self.progress: dict[str, dict[str, int]] = {}

    async def start(self, scheduler: Any) -> None:
        scheduler.handlers["amly_lease"] = self.lease
        scheduler.handlers["amly_pause"] = self.pause
        scheduler.handlers["amly_progress"] = self.report

    def open_bank(self, key: str, spec: Mapping[str, Any]) -> None:
        """A job's bank: a second job with the same token shares it (its limits, if other,
        apply from now on to both: the service counts per token)."""
        buckets = {k: (v[0], float(v[1])) for k, v in spec.items()}
        bank = self.banks.get(key)
        if bank is None:
            self.banks[key] = TokenBank(buckets)
        elif bank.spec != buckets:
            bank.reconfigure(buckets)

    def lease(self, bank: str, surface: str, want: int) -> tuple[int, float]:
        b = self.banks.get(bank)
        if b is None:
            raise KeyError(f"no rate-limit bank {bank[:8]}...: open it before leasing")
        return b.lease(surface, int(want))

    def pause(self, bank: str, surface: str, seconds: float) -> None:
        b = self.banks.get(bank)
        if b is not None:
            b.pause(surface, float(seconds))

    def report(self, job: str, counts: Mapping[str, int]) -> None:
        done = self.progress.setdefault(job, {})
        for k, v in counts.items():
            done[k] = max(done.get(k, 0), int(v))
