"""Scheduled retries are logged at DEBUG on ``mm_pipeline.client``, not by stamina at WARNING.

stamina calls its *on-retry hooks* for every retry it schedules, process-wide. Its default
hooks log each one at WARNING: through structlog when structlog is importable (Dagster installs
it; structlog's default configuration prints to stdout), else on the ``stamina`` stdlib logger.
A library should not print for a retry it handles itself, so on import this package replaces
stamina's defaults by the same hooks with one difference: a retry scheduled by this package
(inside :func:`ours`) is logged at DEBUG on the ``mm_pipeline.client`` logger instead. Retries of
other code keep stamina's default logging, and the Prometheus hook (when ``prometheus_client``
is installed) still counts every retry.

Hooks an application set itself with ``stamina.instrumentation.set_on_retry_hooks`` are left
alone: when any hook is configured before this package is imported, nothing is replaced (those
hooks then see this package's retries too), and hooks set afterwards replace these.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from stamina import instrumentation
from stamina.instrumentation import (
    LoggingOnRetryHook,
    RetryDetails,
    RetryHook,
    RetryHookFactory,
    StructlogOnRetryHook,
)

from mm_pipeline._redact import get_logger

__all__ = ["install_retry_hooks", "ours"]

_log = get_logger("mm_pipeline.client")
_OURS: contextvars.ContextVar[bool] = contextvars.ContextVar("mm_pipeline_retrying", default=False)
_LOGGING_HOOKS = (StructlogOnRetryHook, LoggingOnRetryHook)


@contextlib.contextmanager
def ours() -> Iterator[None]:
    """Mark the retries scheduled inside the block as this package's (logged at DEBUG)."""
    token = _OURS.set(True)
    try:
        yield
    finally:
        _OURS.reset(token)


def _log_ours(details: RetryDetails) -> None:
    if _OURS.get():
        _log.debug(
            "retry %d in %.2f s (waited %.2f s so far) after %r",
            details.retry_num,
            details.wait_for,
            details.waited_so_far,
            details.caused_by,
        )


def _except_ours(factory: RetryHookFactory) -> RetryHookFactory:
    """Wrap one of stamina's logging hooks so that it ignores this package's retries."""

    def build() -> RetryHook:
        hook = factory.hook_factory()

        def call(details: RetryDetails) -> object:
            return None if _OURS.get() else hook(details)

        return call  # type: ignore[return-value]

    return RetryHookFactory(build)


def _defaults() -> tuple[RetryHook | RetryHookFactory, ...]:
    # stamina chooses its defaults by what is importable; it exposes the choice only here.
    from stamina.instrumentation._hooks import get_default_hooks  # noqa: PLC0415

    return tuple(get_default_hooks())


def _configured() -> bool:
    """Tell whether anyone set stamina's hooks already (or stamina initialised its defaults).

    stamina keeps ``None`` there until hooks are set or first used. Should a later stamina keep
    them elsewhere, this answers "configured", so that a user's hooks are never replaced (the
    test suite then sees stamina's logging of this package's retries again).
    """
    from stamina._config import CONFIG  # noqa: PLC0415

    return getattr(CONFIG, "_on_retry", "unknown") is not None


def install_retry_hooks() -> bool:
    """Route this package's retries to its own logger unless stamina's hooks are already set.

    Returns whether the hooks were installed. Idempotent.

    Examples
    --------
    >>> import mm_pipeline  # installs them, once
    >>> install_retry_hooks()
    False
    """
    if _configured():
        return False
    hooks = [_except_ours(h) if h in _LOGGING_HOOKS else h for h in _defaults()]
    instrumentation.set_on_retry_hooks([_log_ours, *hooks])
    return True
