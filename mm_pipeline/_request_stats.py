"""RequestStats: the counters of one session's HTTP traffic (``Session.stats``, public)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RequestStats"]


@dataclass(kw_only=True)
class RequestStats:
    """Counters of one session's HTTP traffic.

    Examples
    --------
    >>> stats = RequestStats()
    >>> stats.requests, stats.retries, stats.errors_by_status
    (0, 0, {})
    """

    #: HTTP attempts sent, retries included.
    requests: int = 0
    #: Attempts that were retries of an earlier attempt.
    retries: int = 0
    #: 429 responses received (quota ones included).
    rate_limited: int = 0
    #: Non-2xx responses by status.
    errors_by_status: dict[int, int] = field(default_factory=dict)
    #: Attempts that ended without a usable response (timeouts, dropped connections, ...).
    transport_errors: int = 0
    #: Seconds since the session opened (updated after each attempt and on close).
    elapsed: float = 0.0
    #: JSON POSTs answered from the answer cache (no request sent).
    cached_answers: int = 0
