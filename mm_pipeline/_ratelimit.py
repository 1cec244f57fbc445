"""Adaptive client-side rate limiter, shared by all requests of a session.

Pacing
    Request starts follow a schedule one interval (``1 / rate``) apart, with no burst
    allowance: a sender that woke up to half an interval late keeps the schedule (the next one
    may follow sooner), so event-loop lateness does not erode the rate. Waiters queue FIFO
    behind one lock; the one at the head sleeps until its slot, re-checking after each sleep so
    that a pause or a new rate decided meanwhile applies to it too.
Rate
    ``rate_limit`` if the caller gave one; otherwise a conservative ``initial_rate`` (5 req/s)
    until a response's ``RateLimit-Limit`` tells the account's limit, then ``headroom`` (97%) of
    it. The lower of the two wins when both are known. A server that never tells its limit is
    probed additively until its first 429, whose pace (less headroom) becomes the ceiling.
Adapting
    A 429 pauses every sender until its ``Retry-After`` (or one interval) and halves the rate,
    at most once a second, so a volley of 429s from requests already in flight counts once,
    and not when the 429 itself reports ``RateLimit-Remaining`` above zero.
    Each success then adds back a twentieth of the ceiling (additive recovery). A response
    with ``RateLimit-Remaining: 0`` pauses senders until ``RateLimit-Reset-Time`` (capped).
    Missing or malformed headers are ignored.

Why not a library: aiolimiter and asynciolimiter are fixed-rate buckets; none offers a shared
pause, a rate learned from headers, or an injectable clock for sleep-free tests. This module
is ~150 lines and fully unit-tested with a fake clock.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from mm_pipeline._redact import get_logger

__all__ = ["AdaptiveRateLimiter", "parse_rate_limit", "seconds_until"]

_log = get_logger("mm_pipeline.ratelimit")
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")
_WINDOW = re.compile(r"\bw\s*=\s*(\d+(?:\.\d+)?)")
_EPOCH_THRESHOLD = 1e9  # larger numbers are Unix timestamps, smaller ones delta-seconds


def parse_rate_limit(value: str | None) -> float | None:
    """Return requests per second from a ``RateLimit-Limit`` value, or ``None``.

    Accepts a bare number (per second) and the IETF draft's ``limit;w=window`` form; takes the
    first of several comma-separated policies.

    Examples
    --------
    >>> parse_rate_limit("20"), parse_rate_limit("120;w=60"), parse_rate_limit("n/a")
    (20.0, 2.0, None)
    """
    if not value:
        return None
    first = value.split(",", 1)[0]
    number = _NUMBER.match(first)
    if number is None:
        return None
    limit = float(number.group(1))
    window = _WINDOW.search(first)
    per = float(window.group(1)) if window else 1.0
    return limit / per if limit > 0 and per > 0 else None


def seconds_until(value: str | None, *, now: float) -> float | None:
    """Return the seconds from ``now`` (Unix time) to the moment a header names, or ``None``.

    Understands delta-seconds, Unix timestamps, ISO 8601 and HTTP-dates; never negative.

    Examples
    --------
    >>> seconds_until("2.5", now=0.0), seconds_until("1970-01-01T00:01:00Z", now=30.0)
    (2.5, 30.0)
    >>> seconds_until("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0), seconds_until("soon", now=0.0)
    (6.0, None)
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        delta = number - now if number > _EPOCH_THRESHOLD else number
        return max(0.0, delta)
    moment: datetime | None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def _remaining(headers: Mapping[str, str]) -> int | None:
    value = headers.get("RateLimit-Remaining", "").strip()
    return int(value) if value.lstrip("-").isdigit() else None


class AdaptiveRateLimiter:
    """Pace request starts under the account's rate limit, adapting to the server's answers.

    Parameters
    ----------
    rate_limit
        Requests per second never to exceed; ``None`` to learn it from ``RateLimit-Limit``.
    initial_rate
        The pace before any limit is known.
    headroom
        Fraction of a learned limit to aim for.
    min_rate
        The rate never drops below this, however many 429s arrive.
    max_reset_pause
        Cap, in seconds, on a pause derived from ``RateLimit-Reset-Time``.
    clock, wall_clock, sleep
        Monotonic clock, Unix-time clock and async sleep; tests inject fakes.

    Examples
    --------
    >>> limiter = AdaptiveRateLimiter()
    >>> limiter.observe({"RateLimit-Limit": "20"})
    >>> limiter.rate
    19.4
    """

    def __init__(
        self,
        rate_limit: float | None = None,
        *,
        initial_rate: float = 5.0,
        headroom: float = 0.97,
        min_rate: float = 0.2,
        max_reset_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._fixed = rate_limit
        self._learned: float | None = None
        self._headroom = headroom
        self._min_rate = min_rate
        self._max_reset_pause = max_reset_pause
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rate = rate_limit if rate_limit is not None else initial_rate
        self._step = self._rate / 20
        self._next_start = -math.inf
        self._paused_until = -math.inf
        self._calm_until = -math.inf
        self._estimated: float | None = None
        self._limit_header: str | None = None  # the RateLimit-Limit value last parsed
        self._lock = asyncio.Lock()
        #: Number of times senders were paused (429s and exhausted ``RateLimit-Remaining``).
        self.pauses = 0

    @property
    def rate(self) -> float:
        """The current pace in requests per second."""
        return self._rate

    @property
    def learned(self) -> float | None:
        """The pace learned from ``RateLimit-Limit`` (headroom applied), if any."""
        return self._learned

    @property
    def ceiling(self) -> float | None:
        """The highest pace allowed: ``rate_limit`` and/or the learned limit less headroom."""
        known = [r for r in (self._fixed, self._learned) if r is not None]
        if not known and self._estimated is not None:
            known = [self._estimated]
        return min(known) if known else None

    def __repr__(self) -> str:
        return f"<AdaptiveRateLimiter rate={self._rate:.2f}/s ceiling={self.ceiling}>"

    async def acquire(self) -> None:
        """Wait until the next request may start, and claim that slot."""
        async with self._lock:
            while True:
                now = self._clock()
                ready = max(self._next_start, self._paused_until)
                if ready <= now:
                    interval = 1.0 / self._rate
                    self._next_start = max(self._next_start + interval, now + 0.5 * interval)
                    return
                await self._sleep(ready - now)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from any response's ``RateLimit-*`` headers."""
        header = headers.get("RateLimit-Limit")
        limit = None if header == self._limit_header else parse_rate_limit(header)
        self._limit_header = header
        if limit is not None and limit * self._headroom != self._learned:
            first = self._learned is None
            self._learned = limit * self._headroom
            ceiling = min(self._learned, self._fixed or math.inf)
            self._step = ceiling / 20
            self._rate = ceiling if first else min(self._rate, ceiling)
            _log.debug("rate limit learned: %s req/s, pacing at %.2f req/s", limit, self._rate)
        remaining = _remaining(headers)
        if remaining is not None and remaining <= 0:
            wait = seconds_until(headers.get("RateLimit-Reset-Time"), now=self._wall_clock())
            self._pause(min(wait, self._max_reset_pause) if wait is not None else None)

    def on_success(self) -> None:
        """Recover additively towards the ceiling after a successful response."""
        self._rate = min(self._rate + self._step, self.ceiling or math.inf)

    def on_rate_limited(
        self, retry_after: float | None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Pause all senders (``Retry-After`` or one interval) and halve the rate.

        The rate is halved at most once per second, so a volley of 429s answering requests
        that were already in flight counts once; and not at all when the 429's own
        ``RateLimit-Remaining`` shows capacity left (the refusal was not about our pace).
        With no limit known, the pace that drew the 429 (less headroom) becomes the ceiling.
        """
        now = self._clock()
        remaining = _remaining(headers or {})
        if now >= self._calm_until and not (remaining is not None and remaining > 0):
            if self._fixed is None and self._learned is None:
                self._estimated = min(self._estimated or math.inf, self._rate * self._headroom)
            self._rate = max(self._min_rate, self._rate / 2)
            self._calm_until = now + max(1.0, retry_after or 0.0)
        self._pause(retry_after)
        _log.debug("429 received: pacing at %.2f req/s", self._rate)

    def _pause(self, seconds: float | None) -> None:
        wait = seconds if seconds is not None else 1.0 / self._rate
        self._paused_until = max(self._paused_until, self._clock() + wait)
        self.pauses += 1
