"""The client transport: :class:`MarketMatchClient` (configuration) and :class:`Session` (I/O).

A ``MarketMatchClient`` holds configuration only and does no I/O; ``client.session()`` opens one
pooled ``httpx.AsyncClient`` (HTTP/1.1) and yields a :class:`Session`, through which every
request of a unit of work goes. Per attempt, a session:

1. takes one of ``max_concurrency`` slots (a semaphore);
2. waits for the shared :class:`~mm_pipeline._ratelimit.AdaptiveRateLimiter`;
3. sends the request with ``api_key`` as a query parameter, reads the body, all of it within
   one whole-request deadline (``deadline``, 4 x ``timeout`` by default, plus one second per
   :data:`MIN_TRANSFER_RATE` bytes uploaded; a streamed body gets the same allowance per byte
   received), so a server that trickles its answer cannot hold a call open: past the deadline the
   attempt is abandoned as :class:`~mm_pipeline._exceptions.DeadlineExceededError`;
4. maps a non-2xx status to the exception tree of :mod:`mm_pipeline._exceptions`, and any
   httpx failure to :class:`~mm_pipeline._exceptions.TransportError` (never chained: httpx
   errors carry the URL with the key).

Attempts are retried with stamina (exponential backoff with jitter, bounded by ``max_retries``
and ``retry_deadline``) on 429 (honouring ``Retry-After``), 500, 502, 503, 504 and transport
failures; never on other statuses. A 429 for an exhausted monthly quota (its message says
"quota", or ``Retry-After`` exceeds an hour) raises
:class:`~mm_pipeline._exceptions.QuotaExhaustedError` at once.

Each scheduled retry is logged at DEBUG on the ``mm_pipeline.client`` logger, not by stamina at
WARNING (see :mod:`mm_pipeline._retry_log` for how hooks an application set are kept).

Tests make backoff fast with :func:`set_backoff_scale` (or ``stamina.set_testing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import os
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import httpx
import msgspec
import orjson
import stamina

from mm_pipeline._exceptions import (
    APIError,
    ConfigurationError,
    DeadlineExceededError,
    Hint,
    QuotaExhaustedError,
    RateLimitError,
    TransportError,
    api_error_class,
)
from mm_pipeline._ratelimit import AdaptiveRateLimiter, seconds_until
from mm_pipeline._redact import (
    get_logger,
    install_log_redaction,
    mask,
    redact,
    redact_url,
    register_secret,
    registered_secrets,
)
from mm_pipeline._retry_log import install_retry_hooks, ours

if TYPE_CHECKING:
    from mm_pipeline._batch import BatchClient

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_DEADLINE_FACTOR",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "MIN_TRANSFER_RATE",
    "MarketMatchClient",
    "RequestStats",
    "Session",
    "set_backoff_scale",
]

T = TypeVar("T")

DEFAULT_BASE_URL: Final = "https://api.marketcheck.com"
ENV_API_KEY: Final = "MARKETCHECK_API_KEY"
ENV_BASE_URL: Final = "MARKETCHECK_BASE_URL"
DEFAULT_DEADLINE_FACTOR: Final = 4.0
"""``deadline`` defaults to this many times ``timeout``: 120 s with the default 30 s timeout."""
MIN_TRANSFER_RATE: Final = 64 * 1024
"""Bytes per second an upload or a streamed download may average, at the least, before its
deadline ends it: each byte moved extends the deadline by ``1 / MIN_TRANSFER_RATE`` seconds."""
#: A 429 whose Retry-After exceeds this many seconds is a quota, not a rate limit.
QUOTA_RETRY_AFTER: Final = 3600.0
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_FATAL_TRANSPORT: Final = frozenset({"UnsupportedProtocol", "LocalProtocolError", "InvalidURL"})
_QUOTA_WORDS: Final = re.compile(r"quota", re.IGNORECASE)
_WAIT_INITIAL, _WAIT_MAX, _WAIT_JITTER = 0.5, 10.0, 0.5
_INITIAL_RATE = 5.0  # req/s before any RateLimit-Limit is known
_MAX_MESSAGE: Final = 500
#: Quoted, as code is: the redactor leaves ``api_key="..."`` alone (only bare values are keys).
_KEY_HINT: Final = Hint(argument='api_key="..."', flag="--api-key KEY")

_log = get_logger("mm_pipeline.client")
#: httpx's own logger: JSON POSTs sent straight to the transport log its request line here too.
_httpx_log = logging.getLogger("httpx")
install_log_redaction()
install_retry_hooks()


class _BackoffScale:
    """The factor applied to retry backoffs; restores the previous one when used as a CM."""

    value = 1.0

    def __init__(self, previous: float) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _BackoffScale.value = self._previous


def set_backoff_scale(scale: float) -> contextlib.AbstractContextManager[None]:
    """Multiply every retry backoff by ``scale`` (``0`` for tests); usable as a context manager.

    The rate limiter's pauses (``Retry-After``, ``RateLimit-Reset-Time``) are not scaled: they
    keep the client under the server's limit.

    Examples
    --------
    >>> with set_backoff_scale(0.0):
    ...     pass
    """
    if scale < 0:
        raise ValueError("backoff scale must be >= 0")
    previous, _BackoffScale.value = _BackoffScale.value, scale
    return _BackoffScale(previous)


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


class _BorrowedTransport(httpx.AsyncBaseTransport):
    """Delegates to a caller's transport without closing it, so sessions can reuse it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)


@functools.cache
def _user_agent() -> str:
    return f"mm-pipeline/{importlib.metadata.version('mm-pipeline')}"


def _environment_proxied() -> bool:
    """Tell whether httpx would mount a proxy from the environment (``HTTP(S)_PROXY`` ...)."""
    found = urllib.request.getproxies()
    return any(found.get(scheme) for scheme in ("http", "https", "all"))


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
        self._api_key = key
        self.base_url: str = _check_base_url(base_url or _env(ENV_BASE_URL) or DEFAULT_BASE_URL)
        self._max_concurrency = max_concurrency
        self._timeout = float(timeout)
        self._deadline = float(deadline)
        self._max_retries = max_retries
        self._retry_deadline = float(retry_deadline)
        self._rate_limit = rate_limit
        self._transport = transport
        self._learned_rate: float | None = None  # the pace a finished session learned

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at once."""
        return self._max_concurrency

    @property
    def timeout(self) -> float:
        """Seconds for each of connect, read, write and pool acquisition."""
        return self._timeout

    @property
    def deadline(self) -> float:
        """Seconds one attempt of a request may take as a whole (before transfer allowances)."""
        return self._deadline

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt of a request."""
        return self._max_retries

    @property
    def retry_deadline(self) -> float:
        """Seconds after which a request is no longer retried."""
        return self._retry_deadline

    @property
    def rate_limit(self) -> float | None:
        """The fixed requests-per-second cap, or ``None`` to learn it."""
        return self._rate_limit

    @property
    def batch(self) -> BatchClient:
        """Batch jobs of this account: a :class:`~mm_pipeline.BatchClient` on this client."""
        from mm_pipeline._batch import BatchClient  # noqa: PLC0415 (lazy: batch is optional)

        return BatchClient(self)

    def __repr__(self) -> str:
        return (
            f"MarketMatchClient(base_url={self.base_url!r}, api_key={mask(self._api_key)!r}, "
            f"max_concurrency={self._max_concurrency}, timeout={self._timeout}, "
            f"deadline={self._deadline}, "
            f"max_retries={self._max_retries}, retry_deadline={self._retry_deadline}, "
            f"rate_limit={self._rate_limit})"
        )

    def session(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """Open one pooled HTTP client for a unit of work; close it on exit."""
        return self._open()

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Session]:
        register_secret(self._api_key)
        install_log_redaction()  # again: logging.config may have replaced the filters since
        limits = httpx.Limits(
            max_connections=self._max_concurrency,
            max_keepalive_connections=self._max_concurrency,
        )
        # The session owns the transport (pool limits included), so JSON POSTs can go straight
        # to it; with a proxy from the environment httpx's default transport is kept instead
        # (an explicit transport would turn its proxy mounts off).
        own: httpx.AsyncBaseTransport | None = self._transport
        if own is None and not _environment_proxied():
            own = httpx.AsyncHTTPTransport(limits=limits)
        http = httpx.AsyncClient(
            base_url=self.base_url,
            params={"api_key": self._api_key},
            headers={
                "User-Agent": _user_agent(),
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(self._timeout),
            limits=limits,
            transport=_BorrowedTransport(self._transport) if self._transport else own,
            follow_redirects=False,
        )
        async with http:
            session = Session(http, self, transport=own)
            try:
                yield session
            finally:
                session._finish()


class Session:
    """One open connection pool: paced, bounded, retried requests with mapped errors.

    Obtain one from :meth:`MarketMatchClient.session`; do not construct it directly.
    ``stats`` counts its traffic; ``limiter`` is its shared rate limiter.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        client: MarketMatchClient,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = http
        self._client = client
        # The transport ``http`` sends through, when JSON POSTs may skip ``http.send``.
        self._transport = transport
        self._timeout = http.timeout.as_dict()
        self._semaphore = asyncio.Semaphore(client.max_concurrency)
        self._opened = time.monotonic()
        self.limiter = AdaptiveRateLimiter(
            client.rate_limit, initial_rate=client._learned_rate or _INITIAL_RATE
        )
        self.stats = RequestStats()
        self._json_targets: dict[str, tuple[httpx.URL, list[tuple[bytes, bytes]], str]] = {}

    def __repr__(self) -> str:
        return f"<Session base_url={self._client.base_url!r} stats={self.stats}>"

    def _json_request(self, path: str, body: bytes) -> tuple[httpx.Request, str]:
        """Build a JSON POST to *path* and its redacted URL, merging the client's parts once.

        ``AsyncClient.build_request`` merges the base URL, query parameters (the key), headers
        and cookies on every call: about 0.15 ms, a fifth of the client-side cost of a request
        (measured by ``make bench``, scenario 2). They are the same for every POST to one path,
        so they are merged once per session and path (no cookies: the API does not set any),
        and the request is built from its parts: the body as a stream, ``Content-Length`` and
        the client's timeouts set here.
        """
        target = self._json_targets.get(path)
        if target is None:
            template = self._http.build_request(
                "POST", path, headers={"Content-Type": "application/json"}
            )
            raw = [(k, v) for k, v in template.headers.raw if k.lower() != b"content-length"]
            target = self._json_targets[path] = (template.url, raw, redact_url(template.url))
        url, raw, shown = target
        request = httpx.Request(
            "POST",
            url,
            headers=[*raw, (b"Content-Length", str(len(body)).encode())],
            stream=httpx.ByteStream(body),
            extensions={"timeout": self._timeout},
        )
        request.read()
        return request, shown

    async def _send_json(self, request: httpx.Request, shown: str) -> httpx.Response:
        """Send a JSON POST built by :meth:`_json_request`; return the response, body unread.

        When the session owns the transport, the request goes straight to it: the pool limits
        live in the transport and the timeouts travel in the request, while ``AsyncClient.send``
        would add only what these requests never use (auth, redirects, cookies, event hooks)
        at about 80 us per request, more than the rest of the client-side cost together.
        """
        transport = self._transport
        if transport is None or request.url.username or request.url.password:
            return await self._http.send(request, stream=True)
        response = await transport.handle_async_request(request)
        response.request = request
        if _httpx_log.isEnabledFor(logging.INFO):  # the line httpx.AsyncClient.send logs
            _httpx_log.info(
                'HTTP Request: POST %s "%s %d %s"',
                shown,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        return response

    async def post_json(
        self, path: str, body: bytes, *, decode: Callable[[bytes], Any] = orjson.loads
    ) -> Any:
        """POST an already JSON-encoded body; return the response decoded by *decode*.

        A 2xx body that is not valid JSON (*decode* raises orjson's or msgspec's decode error)
        counts as a transport failure (and is retried).
        """

        async def attempt(num: int) -> Any:
            async with self._semaphore:
                response = await self._attempt(num, "POST", path, {}, json_body=body)
            try:
                return decode(response.content)
            except (orjson.JSONDecodeError, msgspec.DecodeError):
                pass
            self.stats.transport_errors += 1
            raise TransportError(
                "the response body is not valid JSON",
                kind="InvalidJSON",
                method="POST",
                url=redact_url(response.request.url),
            )

        return await self._retrying(attempt, retry=True)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        retry: bool = True,
        transfer_bytes: int = 0,
    ) -> httpx.Response:
        """Send one request (retried unless ``retry=False``); return the read 2xx response.

        ``transfer_bytes`` (the size of an uploaded file) extends each attempt's deadline by one
        second per :data:`MIN_TRANSFER_RATE` bytes.

        Raises
        ------
        APIError
            A subclass matching the status, for any non-2xx response (after retries).
        TransportError
            No usable response (after retries).
        """
        kwargs = {
            "params": params,
            "headers": headers,
            "files": files,
            "data": data,
            "json": json,
            "content": content,
        }

        limit = self._client.deadline + transfer_bytes / MIN_TRANSFER_RATE

        async def attempt(num: int) -> httpx.Response:
            async with self._semaphore:
                return await self._attempt(num, method, path, kwargs, deadline=limit)

        return await self._retrying(attempt, retry=retry)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        retry: bool = True,
    ) -> AsyncIterator[httpx.Response]:
        """Send a request and yield its 2xx response with the body not yet read.

        Retries cover getting a 2xx response; errors while reading the body (e.g. a dropped
        connection) leave the ``async with`` block as :class:`TransportError`. The block has
        ``deadline`` seconds plus one per :data:`MIN_TRANSFER_RATE` bytes of body received, so a
        trickling body ends in :class:`DeadlineExceededError`. The response keeps one
        concurrency slot until the block exits.
        """

        async def attempt(num: int) -> httpx.Response:
            await self._semaphore.acquire()
            try:
                return await self._attempt(num, method, path, {"params": params}, stream=True)
            except BaseException:
                self._semaphore.release()
                raise

        response = await self._retrying(attempt, retry=retry)
        base = self._client.deadline
        timer = asyncio.timeout(base)
        response.stream = _PacedStream(response.stream, timer, base)
        failure: TransportError | None = None
        try:
            async with timer:
                yield response
        except httpx.HTTPError as exc:
            failure = _transport_error(exc, method, response.request.url)
        except TimeoutError:
            if not timer.expired():
                raise
            failure = _deadline_error(method, redact_url(response.request.url), base, body=True)
        finally:
            await response.aclose()
            self._semaphore.release()
        if failure is not None:
            self.stats.transport_errors += 1
            try:
                raise failure
            finally:
                # Raised while the httpx error is being handled: unchain it (its URL has the key).
                failure.__context__ = None

    async def _retrying(self, attempt: Callable[[int], Awaitable[T]], *, retry: bool) -> T:
        """Run ``attempt(1)``, then, after a retryable failure, stamina's retry loop.

        The first attempt runs outside stamina (a retry context costs about as much as a
        request); a retryable failure enters the loop with the deadline that is left, where it
        is replayed as attempt 1: stamina then backs off, counts and gives up exactly as if it
        had run that attempt itself.
        """
        started = time.monotonic()
        scale = _BackoffScale.value
        try:
            return await attempt(1)
        except Exception as exc:
            if not retry or not _is_retryable(exc):
                raise
            first = exc
        deadline = self._client.retry_deadline
        left = deadline - (time.monotonic() - started)
        if left <= 0:
            raise first

        def backoff(exc: Exception) -> bool | float:
            if not _is_retryable(exc):
                return False
            if isinstance(exc, RateLimitError) and exc.retry_after is not None:
                wait = exc.retry_after * scale
                return wait if time.monotonic() - started + wait < deadline else False
            return True

        with ours():  # logged at DEBUG on mm_pipeline.client, not by stamina at WARNING
            async for try_ in stamina.retry_context(
                on=backoff,
                attempts=self._client.max_retries + 1,
                timeout=left,
                wait_initial=_WAIT_INITIAL * scale,
                wait_max=_WAIT_MAX * scale,
                wait_jitter=_WAIT_JITTER * scale,
            ):
                with try_:
                    if try_.num == 1:
                        raise first
                    self.stats.retries += 1
                    return await attempt(try_.num)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        num: int,
        method: str,
        path: str,
        kwargs: Mapping[str, Any],
        *,
        stream: bool = False,
        json_body: bytes | None = None,
        deadline: float | None = None,
    ) -> httpx.Response:
        """One paced attempt; returns a 2xx response (read unless ``stream``) or raises.

        With ``json_body`` the request is a JSON POST of those bytes (``kwargs`` unused).
        Sending, waiting and reading the body must end within ``deadline`` seconds (default the
        client's ``deadline``; the pacing before it does not count).
        """
        await self.limiter.acquire()
        self.stats.requests += 1
        started = time.monotonic()
        limit = self._client.deadline if deadline is None else deadline
        outcome, url = await self._exchange(
            method, path, kwargs, stream=stream, json_body=json_body, limit=limit
        )
        if isinstance(outcome, TransportError):
            self._record(num, method, url, started, outcome=outcome.kind)
            self.stats.transport_errors += 1
            raise outcome
        response = outcome
        self.limiter.observe(response.headers)
        self._record(num, method, url, started, outcome=str(response.status_code))
        if response.is_success:
            self.limiter.on_success()
            return response
        error = _api_error(response, method, url)
        status = response.status_code
        self.stats.errors_by_status[status] = self.stats.errors_by_status.get(status, 0) + 1
        if isinstance(error, RateLimitError):
            self.stats.rate_limited += 1
            if not isinstance(error, QuotaExhaustedError):
                self.limiter.on_rate_limited(error.retry_after, response.headers)
        raise error

    async def _exchange(
        self,
        method: str,
        path: str,
        kwargs: Mapping[str, Any],
        *,
        stream: bool,
        json_body: bytes | None,
        limit: float,
    ) -> tuple[httpx.Response | TransportError, str]:
        """Send the request and read its body (unless a 2xx is streamed) within ``limit`` s.

        Returns the response, or the :class:`TransportError` to raise (its connection given
        back), with the redacted URL.
        """
        url = path if json_body is not None else redact_url(path)  # JSON: set just below
        response: httpx.Response | None = None
        timer = asyncio.timeout(limit)
        done = False
        try:
            async with timer:
                if json_body is not None:
                    request, url = self._json_request(path, json_body)
                    response = await self._send_json(request, url)
                else:
                    request = self._http.build_request(method, path, **kwargs)
                    url = redact_url(request.url)
                    response = await self._http.send(request, stream=True)
                if not (stream and response.is_success):
                    await response.aread()
            done = True
            return response, url
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return _transport_error(exc, method, url), url
        except TimeoutError:
            if not timer.expired():
                raise
            return _deadline_error(method, url, limit), url
        finally:  # failed or cancelled mid-read: give the connection back
            if not done and response is not None:
                await response.aclose()

    def _record(self, num: int, method: str, url: str, started: float, *, outcome: str) -> None:
        now = time.monotonic()
        self.stats.elapsed = now - self._opened
        _log.debug("%s %s -> %s (attempt %d, %.3f s)", method, url, outcome, num, now - started)

    def _finish(self) -> None:
        self.stats.elapsed = time.monotonic() - self._opened
        self._client._learned_rate = self.limiter.learned or self._client._learned_rate
        _log.debug("session closed: %s", self.stats)


class _PacedStream(httpx.AsyncByteStream):
    """A response body that extends its deadline by ``1 / MIN_TRANSFER_RATE`` s per byte read."""

    def __init__(self, inner: Any, timer: asyncio.Timeout, base: float) -> None:
        self._inner = inner
        self._timer = timer
        self._base = base
        self._received = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        started = asyncio.get_running_loop().time()
        async for chunk in self._inner:
            self._received += len(chunk)
            if not self._timer.expired():
                self._timer.reschedule(started + self._base + self._received / MIN_TRANSFER_RATE)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _deadline_error(
    method: str, url: str, deadline: float, *, body: bool = False
) -> DeadlineExceededError:
    what = (
        f"the body arrived slower than {MIN_TRANSFER_RATE // 1024} KiB/s on average after "
        f"the first {deadline:g} s"
        if body
        else f"no complete answer within the whole-request deadline of {deadline:g} s"
    )
    return DeadlineExceededError(
        f"{what}; the request was abandoned (MarketMatchClient(deadline=...) sets it)",
        deadline=deadline,
        method=method,
        url=url,
    )


def _is_retryable(exc: Exception) -> bool:
    if isinstance(exc, QuotaExhaustedError):
        return False
    if isinstance(exc, APIError):
        return exc.status in _RETRY_STATUSES
    return isinstance(exc, TransportError) and exc.kind not in _FATAL_TRANSPORT


def _transport_error(exc: Exception, method: str, url: object) -> TransportError:
    kind = type(exc).__name__
    detail = redact(str(exc), *registered_secrets()) or "no detail"
    return TransportError(detail, kind=kind, method=method, url=redact_url(url))


def _scrub(value: Any) -> Any:
    """Remove registered secrets from every string inside a decoded JSON value."""
    if isinstance(value, str):
        return redact(value, *registered_secrets())
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def _api_error(response: httpx.Response, method: str, url: str) -> APIError:
    """Build the exception for a non-2xx response, tolerating any body."""
    status = response.status_code
    try:
        decoded = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        decoded = None
    body: dict[str, Any] = _scrub(decoded) if isinstance(decoded, dict) else {}
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        text = _scrub(response.text.strip())[:_MAX_MESSAGE] if decoded is None else ""
        message = text or response.reason_phrase or f"HTTP {status}"
    headers = {k: _scrub(v) for k, v in response.headers.items()}
    common: dict[str, Any] = {
        "status": status,
        "method": method,
        "url": url,
        "body": body,
        "headers": headers,
    }
    cls = api_error_class(status)
    if cls is not RateLimitError:
        return cls(message, **common)
    now = time.time()
    retry_after = seconds_until(response.headers.get("Retry-After"), now=now)
    if _QUOTA_WORDS.search(message) or (retry_after or 0.0) > QUOTA_RETRY_AFTER:
        until = seconds_until(response.headers.get("Quota-Reset-Time"), now=now)
        until = until if until is not None else retry_after
        resets_at = datetime.fromtimestamp(round(now + until), UTC) if until is not None else None
        when = f"resets at {resets_at:%Y-%m-%d %H:%M:%S} UTC" if resets_at else "reset unknown"
        return QuotaExhaustedError(
            f"{message} (monthly quota exhausted; {when}; not retried)",
            retry_after=retry_after,
            resets_at=resets_at,
            **common,
        )
    return RateLimitError(message, retry_after=retry_after, **common)
