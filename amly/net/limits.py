"""The one rate limiter: an async token bucket per API surface, with a shared pause.

The Graph API publishes per-app limits (search 10,000/min, entity 60,000/min, tiles
50,000/day). A 429 pauses the whole surface, not just the request that got it, so a burst of
concurrent workers does not hammer a server that already asked us to slow down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time


class RateLimiter:
    """``rate`` requests per ``per`` seconds, bursting up to ``burst`` (default: one second's
    worth, at least 1). ``rate=None`` means unlimited (still honours :meth:`pause`)."""

    def __init__(self, rate: float | None, per: float = 60.0, burst: float | None = None) -> None:
        self.rate = None if rate is None else rate / per  # tokens per second
        self.capacity = (
            burst if burst is not None else max(1.0, self.rate or 1.0) if self.rate else 1.0
        )
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` from now (extends, never shortens, a pause)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        """Wait for a token (and for any pause to end)."""
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                if self.rate is None:
                    return
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


@dataclasses.dataclass
class Limits:
    """Published per-app limits; override for a server with other quotas (``None``: no limit)."""

    search_per_minute: float | None = 10_000
    entity_per_minute: float | None = 60_000
    tiles_per_day: float | None = 50_000
    upload_per_minute: float | None = None

    def limiters(self) -> dict[str, RateLimiter]:
        return {
            "search": RateLimiter(self.search_per_minute, 60.0),
            "entity": RateLimiter(self.entity_per_minute, 60.0),
            # A daily quota is not a per-second pace: allow a large burst.
            "tiles": RateLimiter(self.tiles_per_day, 86_400.0, burst=1_000),
            "upload": RateLimiter(self.upload_per_minute, 60.0),
            "graph": RateLimiter(None),
            "download": RateLimiter(None),
        }
