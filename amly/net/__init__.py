"""The one door to the network: the HTTP transport, the one retry policy, the one rate
limiter, and the bounded-concurrency helpers every network job runs under.

Services (:mod:`amly.services`) speak their protocols through a :class:`Transport`; they
never open sessions, retry or pace requests themselves.
"""

from __future__ import annotations

from .limits import Limits, RateLimiter
from .retry import Retry, RetryPolicy
from .transport import Transport

__all__ = ["Limits", "RateLimiter", "Retry", "RetryPolicy", "Transport"]
