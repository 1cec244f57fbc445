"""The HTTP session beneath both routes: :class:`Session` (pooled httpx, retries, limiter, stats).

:func:`~mm_pipeline._connect.open_session` (what ``MarketMatchClient.session()`` calls) opens
one pooled ``httpx.AsyncClient`` (HTTP/1.1) from frozen
:class:`~mm_pipeline._settings.SessionSettings` and yields a :class:`Session`, through which
every request of a unit of work goes. Per attempt, a session:

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

What is retried, and how long to back off, is the policy of :mod:`mm_pipeline._retry`; how an
answer maps to an exception is :mod:`mm_pipeline._http_errors`. Tests make backoff fast with
``set_backoff_scale`` (re-exported here; or ``stamina.set_testing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import msgspec
import orjson
import stamina

from mm_pipeline._answer_cache import AnswerCache, account_scope
from mm_pipeline._exceptions import (
    BudgetExceededError,
    QuotaExhaustedError,
    RateLimitError,
    TransportError,
)
from mm_pipeline._http_errors import api_error, deadline_error, transport_error
from mm_pipeline._ratelimit import AdaptiveRateLimiter
from mm_pipeline._redact import (
    get_logger,
    install_log_redaction,
    redact_url,
)
from mm_pipeline._request_stats import RequestStats
from mm_pipeline._retry import (
    WAIT_INITIAL,
    WAIT_JITTER,
    WAIT_MAX,
    backoff_scale,
    is_retryable,
    set_backoff_scale,
)
from mm_pipeline._retry_log import install_retry_hooks, ours
from mm_pipeline._settings import MIN_TRANSFER_RATE, SessionSettings

__all__ = [
    "RequestStats",
    "Session",
    "SessionSource",
    "set_backoff_scale",
]

T = TypeVar("T")
_INITIAL_RATE = 5.0  # req/s before any RateLimit-Limit is known

_log = get_logger("mm_pipeline.client")
#: httpx's own logger: JSON POSTs sent straight to the transport log its request line here too.
_httpx_log = logging.getLogger("httpx")
install_log_redaction()
install_retry_hooks()


class SessionSource(Protocol):
    """What opens sessions, as a :class:`~mm_pipeline.MarketMatchClient` does (for BatchClient)."""

    @property
    def base_url(self) -> str:
        """The API's base URL (shown in reprs)."""
        ...

    def session(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """Open one pooled HTTP client for a unit of work."""
        ...


class Session:
    """One open connection pool: paced, bounded, retried requests with mapped errors.

    Obtain one from :meth:`MarketMatchClient.session`; do not construct it directly.
    ``stats`` counts its traffic; ``limiter`` is its shared rate limiter. ``answers``, when set
    (:meth:`use_answer_cache`), serves repeated JSON POSTs from disk; ``max_requests``, when set,
    refuses any attempt beyond that many with :class:`~mm_pipeline.BudgetExceededError`. It
    reads its frozen :class:`SessionSettings` and never writes into the client: what it learned
    of the rate limit is handed back by :meth:`_finish` (to the client's :class:`RateMemory`).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: SessionSettings,
        *,
        start_rate: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = http
        self._settings = settings
        # The transport ``http`` sends through, when JSON POSTs may skip ``http.send``.
        self._transport = transport
        self._timeout = http.timeout.as_dict()
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._opened = time.monotonic()
        self.limiter = AdaptiveRateLimiter(
            settings.rate_limit, initial_rate=start_rate or _INITIAL_RATE
        )
        self.stats = RequestStats()
        self._json_targets: dict[str, tuple[httpx.URL, list[tuple[bytes, bytes]], str]] = {}
        self.answers: AnswerCache | None = None
        self.max_requests: int | None = None

    def use_answer_cache(self, cache_dir: Path, *, ttl: timedelta | None = None) -> None:
        """Keep 200 answers to JSON POSTs under *cache_dir* and serve repeats from there."""
        scope = account_scope(self._settings.api_key, self._settings.base_url)
        self.answers = AnswerCache(cache_dir, scope=scope, ttl=ttl)

    def __repr__(self) -> str:
        return f"<Session base_url={self._settings.base_url!r} stats={self.stats}>"

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
        counts as a transport failure (and is retried). With an answer cache, a cached answer
        is decoded instead of sending anything, and a new 200 answer is kept.
        """
        answers = self.answers
        if answers is not None and (raw := answers.get(path, body)) is not None:
            with contextlib.suppress(orjson.JSONDecodeError, msgspec.DecodeError):
                decoded = decode(raw)
                self.stats.cached_answers += 1
                return decoded

        async def attempt(num: int) -> Any:
            async with self._semaphore:
                response = await self._attempt(num, "POST", path, {}, json_body=body)
            try:
                decoded = decode(response.content)
            except (orjson.JSONDecodeError, msgspec.DecodeError):
                pass
            else:
                if answers is not None and response.status_code == 200:
                    answers.put(path, body, response.content)
                return decoded
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

        limit = self._settings.deadline + transfer_bytes / MIN_TRANSFER_RATE

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
        base = self._settings.deadline
        timer = asyncio.timeout(base)
        response.stream = _PacedStream(response.stream, timer, base)
        failure: TransportError | None = None
        try:
            async with timer:
                yield response
        except httpx.HTTPError as exc:
            failure = transport_error(exc, method, response.request.url)
        except TimeoutError:
            if not timer.expired():
                raise
            failure = deadline_error(method, redact_url(response.request.url), base, body=True)
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
        scale = backoff_scale()
        try:
            return await attempt(1)
        except Exception as exc:
            if not retry or not is_retryable(exc):
                raise
            first = exc
        deadline = self._settings.retry_deadline
        left = deadline - (time.monotonic() - started)
        if left <= 0:
            raise first

        def backoff(exc: Exception) -> bool | float:
            if not is_retryable(exc):
                return False
            if isinstance(exc, RateLimitError) and exc.retry_after is not None:
                wait = exc.retry_after * scale
                return wait if time.monotonic() - started + wait < deadline else False
            return True

        with ours():  # logged at DEBUG on mm_pipeline.client, not by stamina at WARNING
            async for try_ in stamina.retry_context(
                on=backoff,
                attempts=self._settings.max_retries + 1,
                timeout=left,
                wait_initial=WAIT_INITIAL * scale,
                wait_max=WAIT_MAX * scale,
                wait_jitter=WAIT_JITTER * scale,
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
        if self.max_requests is not None and self.stats.requests >= self.max_requests:
            raise BudgetExceededError(
                f"max_requests={self.max_requests} reached: {self.stats.requests:,} requests "
                f"sent ({self.stats.retries:,} of them retries, "
                f"{self.stats.errors_by_status.get(422, 0):,} answered 422); not sending more",
                max_requests=self.max_requests,
                spent=self.stats.requests,
            )
        self.stats.requests += 1
        started = time.monotonic()
        limit = self._settings.deadline if deadline is None else deadline
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
        error = api_error(response, method, url)
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
            return transport_error(exc, method, url), url
        except TimeoutError:
            if not timer.expired():
                raise
            return deadline_error(method, url, limit), url
        finally:  # failed or cancelled mid-read: give the connection back
            if not done and response is not None:
                await response.aclose()

    def _record(self, num: int, method: str, url: str, started: float, *, outcome: str) -> None:
        now = time.monotonic()
        self.stats.elapsed = now - self._opened
        _log.debug("%s %s -> %s (attempt %d, %.3f s)", method, url, outcome, num, now - started)

    def _finish(self) -> float | None:
        """Close the books; return the rate the limiter learned (``None``: nothing learned)."""
        self.stats.elapsed = time.monotonic() - self._opened
        _log.debug("session closed: %s", self.stats)
        return self.limiter.learned


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
