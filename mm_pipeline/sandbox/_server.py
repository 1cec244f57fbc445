"""Serve the sandbox with uvicorn: in a background thread (``running()``) or in the foreground.

Our uvicorn protocol puts a ``close`` callable for the client connection into each request's
ASGI scope (extension :data:`~mm_pipeline.sandbox._app.CLOSE_CONNECTION`), so that the ``drop`` and
``truncate_download`` faults can end a connection without (or in the middle of) a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Unpack

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from mm_pipeline._redact import RedactingFilter, register_secret
from mm_pipeline.sandbox._app import CLOSE_CONNECTION, create_app
from mm_pipeline.sandbox._config import SandboxConfig, SandboxOptions
from mm_pipeline.sandbox._faults import FaultKind
from mm_pipeline.sandbox._state import SandboxState

__all__ = ["Sandbox", "running", "serve"]

_READY_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def _protocol_class() -> type[asyncio.Protocol]:
    base: type[Any]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

        base = HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is optional
        from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415

        base = H11Protocol

    class _ClosableProtocol(base):  # type: ignore[misc]
        app: ASGIApp
        transport: asyncio.Transport

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            app = self.app

            async def with_close(scope: Scope, receive: Receive, send: Send) -> None:
                scope.setdefault("extensions", {})[CLOSE_CONNECTION] = self.transport.close
                await app(scope, receive, send)

            self.app = with_close

    return _ClosableProtocol


def _uvicorn_config(state: SandboxState, *, log_level: str, access_log: bool) -> uvicorn.Config:
    for key in state.accounts.keys:
        register_secret(key)
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
    # uvicorn's own logging, except that access lines go to stderr with the other log lines:
    # stdout carries only what ``serve`` announces (its URL, the demo key).
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return uvicorn.Config(
        create_app(state),
        http=_protocol_class(),
        lifespan="off",
        log_level=log_level,
        log_config=log_config,
        access_log=access_log,
        timeout_graceful_shutdown=2,
        server_header=False,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class Sandbox:
    """A running sandbox, as yielded by :func:`running`.

    Attributes
    ----------
    base_url
        ``http://127.0.0.1:<port>``.
    api_key
        The first configured key with access (the demo key when none is configured).
    config
        The configuration it runs with.
    """

    def __init__(self, state: SandboxState, base_url: str) -> None:
        self._state = state
        self.base_url = base_url
        self.api_key = state.api_key
        self.config = state.config

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self.base_url!r})"

    def url(self, path: str) -> str:
        """Return the absolute URL of *path* (no key added)."""
        return self.base_url + path

    def inject(self, kind: FaultKind, *, count: int = 1, path_prefix: str = "/v2/") -> None:
        """Answer the next *count* requests under *path_prefix* with the fault *kind*."""
        self._state.faults.inject(kind, count=count, path_prefix=path_prefix)

    def reset(self) -> None:
        """Forget jobs, faults, webhooks, spent tokens and quota; restore job timing."""
        self._state.reset()

    def hold_jobs(self, hold: bool = True) -> None:
        """Keep jobs PROCESSING until :meth:`complete_job` / :meth:`fail_job` (or release them)."""
        self._state.jobs.configure(hold=hold)

    def set_job_seconds(self, seconds: float) -> None:
        """Set the minimum processing time of running and future jobs."""
        self._state.jobs.configure(job_seconds=seconds)

    def complete_job(self, job_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Release *job_id* and wait until it ends; return its status (any account)."""
        return self._state.jobs.complete(job_id, timeout=timeout)

    def fail_job(
        self,
        job_id: str,
        *,
        error_code: str = "processing_failed",
        error_message: str = "Job processing failed unexpectedly. Please resubmit.",
    ) -> dict[str, Any]:
        """Fail a processing job now; return its status."""
        return self._state.jobs.fail(job_id, error_code=error_code, error_message=error_message)

    def job(self, job_id: str) -> dict[str, Any]:
        """Return the status of any account's job."""
        return self._state.jobs.inspect(job_id)

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Return every webhook delivery so far with its attempts, oldest first."""
        return self._state.webhooks.deliveries()


@contextlib.contextmanager
def running(
    *, host: str = "127.0.0.1", port: int = 0, **options: Unpack[SandboxOptions]
) -> Iterator[Sandbox]:
    """Run a sandbox on a background thread for the duration of a ``with`` block.

    Parameters
    ----------
    host, port
        Where to listen; port 0 picks a free port.
    **options
        Any :class:`SandboxConfig` field; ``enable_control`` defaults to True here.

    Yields
    ------
    Sandbox
        With ``base_url``, ``api_key`` and the control methods.

    Examples
    --------
    >>> import httpx
    >>> with running(api_keys=["mc_test_doc"]) as sb:
    ...     r = httpx.get(sb.url("/v2/batch/marketmatch/rank/jobs"), params={"api_key": sb.api_key})
    >>> r.status_code, r.json()["total"], r.headers["RateLimit-Limit"]
    (200, 0, '20')
    """
    options.setdefault("enable_control", True)
    state = SandboxState(SandboxConfig(**options))
    sock: socket.socket | None = None
    try:
        sock = _bind(host, port)
        state.start()
        server = uvicorn.Server(_uvicorn_config(state, log_level="warning", access_log=False))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="mm-sandbox-server", daemon=True
        )
        thread.start()
        try:
            base_url = _base_url(sock)
            _wait_ready(base_url, thread)
            yield Sandbox(state, base_url)
        finally:
            server.should_exit = True
            thread.join(_STOP_TIMEOUT)
    finally:
        if sock is not None:
            sock.close()
        state.close()


def _wait_ready(base_url: str, thread: threading.Thread) -> None:
    """Poll ``/openapi.json`` until it answers 200, the thread dies, or the deadline passes."""
    deadline = time.monotonic() + _READY_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not thread.is_alive():
                msg = "the sandbox server stopped while starting"
                raise RuntimeError(msg)
            with contextlib.suppress(httpx.TransportError):
                if client.get(base_url + "/openapi.json").status_code == 200:
                    return
            thread.join(0.02)
    msg = f"the sandbox server did not answer within {_READY_TIMEOUT:g} s"
    raise TimeoutError(msg)


def serve(
    config: SandboxConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    echo: Callable[[str], None] = print,
    access_log: bool = True,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM; print the base URL once listening."""
    state = SandboxState(config)
    sock = _bind(host, port)
    stopped_by: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        state.start()
        server = uvicorn.Server(_uvicorn_config(state, log_level="info", access_log=access_log))
        echo(_base_url(sock))
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        state.close()
