"""Open a :class:`~mm_pipeline._session.Session`: the pooled httpx client, its transport, headers.

The session owns its transport (pool limits included), so JSON POSTs can go straight to it;
with a proxy from the environment httpx's default transport is kept instead. A caller's
transport (tests) is borrowed, never closed. The session starts at the pace the client's
:class:`~mm_pipeline._settings.RateMemory` remembers and leaves what it learned there on close.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import urllib.request
from collections.abc import AsyncIterator

import httpx

from mm_pipeline._redact import install_log_redaction, register_secret
from mm_pipeline._session import Session
from mm_pipeline._settings import RateMemory, SessionSettings

__all__ = ["open_session"]


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


@contextlib.asynccontextmanager
async def open_session(settings: SessionSettings, memory: RateMemory) -> AsyncIterator[Session]:
    """Open one pooled ``httpx.AsyncClient`` as a :class:`Session`; close it on exit.

    The session starts at ``memory``'s pace and leaves what it learned there when it closes.
    """
    register_secret(settings.api_key)
    install_log_redaction()  # again: logging.config may have replaced the filters since
    limits = httpx.Limits(
        max_connections=settings.max_concurrency,
        max_keepalive_connections=settings.max_concurrency,
    )
    # The session owns the transport (pool limits included), so JSON POSTs can go straight
    # to it; with a proxy from the environment httpx's default transport is kept instead
    # (an explicit transport would turn its proxy mounts off).
    own: httpx.AsyncBaseTransport | None = settings.transport
    if own is None and not _environment_proxied():
        own = httpx.AsyncHTTPTransport(limits=limits)
    http = httpx.AsyncClient(
        base_url=settings.base_url,
        params={"api_key": settings.api_key},
        headers={
            "User-Agent": _user_agent(),
            "Accept": "application/json",
        },
        timeout=httpx.Timeout(settings.timeout),
        limits=limits,
        transport=_BorrowedTransport(settings.transport) if settings.transport else own,
        follow_redirects=False,
    )
    async with http:
        session = Session(http, settings, start_rate=memory.rate, transport=own)
        try:
            yield session
        finally:
            memory.remember(session._finish())
