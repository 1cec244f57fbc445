"""API keys, accounts, the per-account rate limit and the monthly quota (no HTTP here).

Every configured key belongs to an account; several keys may share one. Each account has a
token bucket (capacity = the rate, refilled at the rate per second) and a monthly call quota that
resets at 00:00 UTC on the first of each month. The HTTP layer asks :meth:`AccountRegistry.admit`
before serving a request and :meth:`AccountRegistry.spend` once the request will be served.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = [
    "DEMO_API_KEY",
    "Account",
    "AccountRegistry",
    "Admission",
    "Limits",
    "parse_key_specs",
]

DEMO_API_KEY = "mc_test_sandbox_demo"
"""The key the sandbox accepts when no ``api_keys`` are configured."""


@dataclass(frozen=True, slots=True)
class Account:
    """An account: the owner of rate limit, quota and batch jobs."""

    name: str
    access: bool = True


@dataclass(frozen=True, slots=True)
class Limits:
    """The rate-limit and quota figures reported in every response's headers."""

    rate_limit: int
    rate_remaining: int
    rate_reset: datetime
    quota_limit: int
    quota_remaining: int
    quota_reset: datetime

    def headers(self) -> dict[str, str]:
        """Return the six ``RateLimit-*`` / ``Quota-*`` header values."""
        return {
            "RateLimit-Limit": str(self.rate_limit),
            "RateLimit-Remaining": str(self.rate_remaining),
            "RateLimit-Reset-Time": _iso(self.rate_reset),
            "Quota-Limit": str(self.quota_limit),
            "Quota-Remaining": str(self.quota_remaining),
            "Quota-Reset-Time": _iso(self.quota_reset),
        }


@dataclass(frozen=True, slots=True)
class Admission:
    """The verdict on one request: served, or refused by the rate limit or the quota."""

    verdict: Literal["ok", "rate_limited", "quota_exhausted"]
    retry_after: int
    limits: Limits


def parse_key_specs(
    api_keys: Iterable[str], no_access_keys: Iterable[str] = ()
) -> dict[str, Account]:
    """Map each key to its account.

    ``"KEY"`` is an account of its own (named after the key); ``"KEY=ACCOUNT"`` joins the named
    account. Keys in *no_access_keys* authenticate but have no MarketMatch access (403). With no
    *api_keys* at all, :data:`DEMO_API_KEY` is accepted.

    Examples
    --------
    >>> accounts = parse_key_specs(["k1", "k2=team", "k3=team"], ["k4"])
    >>> accounts["k2"] == accounts["k3"], accounts["k1"].name == "k1", accounts["k4"].access
    (True, True, False)
    >>> list(parse_key_specs([]))
    ['mc_test_sandbox_demo']
    """
    accounts: dict[str, Account] = {}
    specs = list(api_keys) or [DEMO_API_KEY]
    for spec in specs:
        key, _, name = spec.partition("=")
        if not key:
            msg = "an API key must not be empty"
            raise ValueError(msg)
        accounts[key] = Account(name or key)
    for spec in no_access_keys:
        key, _, name = spec.partition("=")
        if not key:
            msg = "an API key must not be empty"
            raise ValueError(msg)
        if key in accounts:
            msg = "a key cannot be both an accepted key and a no-access key"
            raise ValueError(msg)
        accounts[key] = Account(name or key, access=False)
    return accounts


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class _Usage:
    __slots__ = ("month", "used")

    def __init__(self, month: tuple[int, int]) -> None:
        self.month = month
        self.used = 0


class AccountRegistry:
    """Keys -> accounts, with a token bucket and a monthly quota per account.

    Parameters
    ----------
    accounts
        Key -> account, e.g. from :func:`parse_key_specs`.
    rate_limit
        Requests per second per account; the bucket holds ``max(1, rate_limit)`` tokens.
    quota
        Calls per calendar month (UTC) per account.
    clock, wallclock
        Injectable monotonic and UTC clocks (tests).

    Examples
    --------
    >>> reg = AccountRegistry(parse_key_specs(["k"]), rate_limit=2, quota=10)
    >>> acct = reg.lookup("k")
    >>> [reg.admit(acct).verdict for _ in range(3)]
    ['ok', 'ok', 'rate_limited']
    >>> reg.spend(acct).quota_remaining
    9
    """

    def __init__(
        self,
        accounts: dict[str, Account],
        *,
        rate_limit: float,
        quota: int,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if rate_limit <= 0:
            msg = f"rate_limit must be positive, got {rate_limit}"
            raise ValueError(msg)
        if quota < 0:
            msg = f"quota must not be negative, got {quota}"
            raise ValueError(msg)
        self._accounts = dict(accounts)
        self._rate = float(rate_limit)
        self._capacity = max(1.0, self._rate)
        self._quota = quota
        self._clock = clock
        self._wallclock = wallclock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._usage: dict[str, _Usage] = {}

    @property
    def keys(self) -> list[str]:
        """The configured keys, in configuration order."""
        return list(self._accounts)

    def lookup(self, key: str | None) -> Account | None:
        """Return the account of *key*, or None when the key is missing or unknown."""
        return self._accounts.get(key) if key else None

    def reset(self) -> None:
        """Refill every bucket and forget every quota use."""
        with self._lock:
            self._buckets.clear()
            self._usage.clear()

    def admit(self, account: Account) -> Admission:
        """Take a token for *account* and check its quota (spends no quota)."""
        with self._lock:
            now = self._clock()
            wall = self._wallclock()
            bucket = self._refill(account.name, now)
            usage = self._month_usage(account.name, wall)
            if bucket.tokens < 1.0:
                wait = math.ceil((1.0 - bucket.tokens) / self._rate)
                return Admission("rate_limited", max(1, wait), self._limits(bucket, usage, wall))
            bucket.tokens -= 1.0
            if usage.used >= self._quota:
                wait = math.ceil((_next_month(wall) - wall).total_seconds())
                return Admission("quota_exhausted", max(1, wait), self._limits(bucket, usage, wall))
            return Admission("ok", 0, self._limits(bucket, usage, wall))

    def spend(self, account: Account) -> Limits:
        """Count one call against *account*'s monthly quota; return the limits after it."""
        with self._lock:
            wall = self._wallclock()
            usage = self._month_usage(account.name, wall)
            usage.used += 1
            return self._limits(self._refill(account.name, self._clock()), usage, wall)

    def peek(self, account: Account | None) -> Limits:
        """Return the limits of *account* (or of a fresh account) without consuming anything."""
        with self._lock:
            wall = self._wallclock()
            if account is None:
                return self._limits(_Bucket(self._capacity, 0.0), _Usage((0, 0)), wall)
            bucket = self._refill(account.name, self._clock())
            return self._limits(bucket, self._month_usage(account.name, wall), wall)

    def _refill(self, name: str, now: float) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(self._capacity, now)
        else:
            bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
        return bucket

    def _month_usage(self, name: str, wall: datetime) -> _Usage:
        month = (wall.year, wall.month)
        usage = self._usage.get(name)
        if usage is None or usage.month != month:
            usage = self._usage[name] = _Usage(month)
        return usage

    def _limits(self, bucket: _Bucket, usage: _Usage, wall: datetime) -> Limits:
        refill = (self._capacity - bucket.tokens) / self._rate
        return Limits(
            rate_limit=int(self._capacity),
            rate_remaining=max(0, int(bucket.tokens)),
            rate_reset=wall + timedelta(seconds=refill),
            quota_limit=self._quota,
            quota_remaining=max(0, self._quota - usage.used),
            quota_reset=_next_month(wall),
        )


def _next_month(wall: datetime) -> datetime:
    if wall.month == 12:
        return datetime(wall.year + 1, 1, 1, tzinfo=UTC)
    return datetime(wall.year, wall.month + 1, 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
