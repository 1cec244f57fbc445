"""The client's configuration: :class:`MarketMatchClient` (and its ``.batch``).

A ``MarketMatchClient`` validates and holds configuration only and does no I/O: its options are
frozen :class:`~mm_pipeline._settings.SessionSettings`; ``client.session()`` opens a
:class:`~mm_pipeline._session.Session` from them. The only state its sessions share is the
rate they learned, kept in the client's :class:`~mm_pipeline._settings.RateMemory`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Final

import httpx

from mm_pipeline._batch._client import BatchClient
from mm_pipeline._connect import open_session
from mm_pipeline._exceptions import ConfigurationError, Hint
from mm_pipeline._redact import mask, redact_url
from mm_pipeline._session import Session
from mm_pipeline._settings import RateMemory, SessionSettings

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_DEADLINE_FACTOR",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "MarketMatchClient",
]

DEFAULT_BASE_URL: Final = "https://api.marketcheck.com"
ENV_API_KEY: Final = "MARKETCHECK_API_KEY"
ENV_BASE_URL: Final = "MARKETCHECK_BASE_URL"
DEFAULT_DEADLINE_FACTOR: Final = 4.0
"""``deadline`` defaults to this many times ``timeout``: 120 s with the default 30 s timeout."""
#: Quoted, as code is: the redactor leaves ``api_key="..."`` alone (only bare values are keys).
_KEY_HINT: Final = Hint(argument='api_key="..."', flag="--api-key KEY")


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _check_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in {"http", "https"} or not parsed.host:
        raise ConfigurationError(
            f"base_url must be an http(s) URL with a host, got {redact_url(url)!r}"
        )
    return url


class MarketMatchClient:
    """Configuration for talking to the MarketMatch API; cheap, no I/O, safe to share.

    Parameters
    ----------
    api_key
        The API key; defaults to the ``MARKETCHECK_API_KEY`` environment variable. It is sent
        as the ``api_key`` query parameter and never shown in reprs, messages or logs.
    base_url
        Defaults to ``MARKETCHECK_BASE_URL``, else ``https://api.marketcheck.com``.
    max_concurrency
        Requests in flight at once (and pooled connections).
    timeout
        Seconds for each of connect, read, write and pool acquisition.
    deadline
        Seconds one attempt of a request may take as a whole (sending, waiting, reading the
        body); default ``4 * timeout``. A request that moves a file gets one more second per
        :data:`MIN_TRANSFER_RATE` (64 KiB) bytes uploaded or downloaded. An attempt past its
        deadline is abandoned and retried like a timeout.
    max_retries
        Retries after the first attempt of a request.
    retry_deadline
        Seconds after which a request is no longer retried.
    rate_limit
        Requests per second never to exceed; ``None`` learns the account's limit from the
        ``RateLimit-Limit`` header (starting at 5 req/s; later sessions of the client start at
        the pace learned last).
    transport
        An httpx transport to send through (tests; e.g. ``httpx.MockTransport``).

    Raises
    ------
    ConfigurationError
        No API key (argument or environment), a malformed ``base_url``, or an option out of
        range.

    Examples
    --------
    >>> client = MarketMatchClient("mc_test_0123456789", "http://127.0.0.1:8765/")
    >>> client  # doctest: +NORMALIZE_WHITESPACE
    MarketMatchClient(base_url='http://127.0.0.1:8765', api_key='mc_t…****',
        max_concurrency=8, timeout=30.0, deadline=120.0, max_retries=8, retry_deadline=600.0,
        rate_limit=None)
    >>> async def main() -> int:
    ...     async with client.session() as session:  # no request is sent yet
    ...         return session.stats.requests
    >>> import asyncio; asyncio.run(main())
    0
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        max_concurrency: int = 8,
        timeout: float = 30.0,
        deadline: float | None = None,
        max_retries: int = 8,
        retry_deadline: float = 600.0,
        rate_limit: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key = api_key.strip() if api_key is not None else _env(ENV_API_KEY)
        if not key:
            error = ConfigurationError(
                f"no MarketMatch API key: pass {_KEY_HINT.argument} or set the {ENV_API_KEY} "
                "environment variable"
            )
            error.hints = (_KEY_HINT,)
            raise error
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {max_retries}")
        if deadline is None:
            deadline = DEFAULT_DEADLINE_FACTOR * timeout
        checked = (("timeout", timeout), ("deadline", deadline), ("retry_deadline", retry_deadline))
        for name, value in checked:
            if not value > 0:
                raise ConfigurationError(f"{name} must be > 0, got {value}")
        if rate_limit is not None and not rate_limit > 0:
            raise ConfigurationError(f"rate_limit must be > 0 or None, got {rate_limit}")
        self.base_url: str = _check_base_url(base_url or _env(ENV_BASE_URL) or DEFAULT_BASE_URL)
        self._settings = SessionSettings(
            base_url=self.base_url,
            api_key=key,
            max_concurrency=max_concurrency,
            timeout=float(timeout),
            deadline=float(deadline),
            max_retries=max_retries,
            retry_deadline=float(retry_deadline),
            rate_limit=rate_limit,
            transport=transport,
        )
        # The one mutable part, shared with the sessions this client opens (see RateMemory).
        self._rate_memory = RateMemory()

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at once."""
        return self._settings.max_concurrency

    @property
    def timeout(self) -> float:
        """Seconds for each of connect, read, write and pool acquisition."""
        return self._settings.timeout

    @property
    def deadline(self) -> float:
        """Seconds one attempt of a request may take as a whole (before transfer allowances)."""
        return self._settings.deadline

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt of a request."""
        return self._settings.max_retries

    @property
    def retry_deadline(self) -> float:
        """Seconds after which a request is no longer retried."""
        return self._settings.retry_deadline

    @property
    def rate_limit(self) -> float | None:
        """The fixed requests-per-second cap, or ``None`` to learn it."""
        return self._settings.rate_limit

    @property
    def learned_rate(self) -> float | None:
        """The requests per second this client's sessions learned from the API, if any."""
        return self._rate_memory.rate

    @property
    def batch(self) -> BatchClient:
        """Batch jobs of this account: a :class:`~mm_pipeline.BatchClient` on this client."""
        return BatchClient(self)

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"MarketMatchClient(base_url={self.base_url!r}, api_key={mask(s.api_key)!r}, "
            f"max_concurrency={s.max_concurrency}, timeout={s.timeout}, deadline={s.deadline}, "
            f"max_retries={s.max_retries}, retry_deadline={s.retry_deadline}, "
            f"rate_limit={s.rate_limit})"
        )

    def session(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """Open one pooled HTTP client for a unit of work; close it on exit."""
        return open_session(self._settings, self._rate_memory)
