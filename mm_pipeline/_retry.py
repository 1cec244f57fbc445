"""The retry policy: what is retried, and how long to back off (stamina runs the loop).

Retried: 429 (not an exhausted quota; ``Retry-After`` honoured by the session), 500, 502, 503,
504, timeouts, abandoned deadlines and transport failures, except those that cannot succeed on a
second try (a malformed URL or protocol). Never 400/401/403/404/409/413/422. Backoff is
exponential with jitter from :data:`WAIT_INITIAL` to :data:`WAIT_MAX` seconds, scaled by
:func:`set_backoff_scale` (``0`` in tests). The loop itself is ``Session._retrying``.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Final

from mm_pipeline._exceptions import APIError, QuotaExhaustedError, TransportError

__all__ = [
    "RETRY_STATUSES",
    "WAIT_INITIAL",
    "WAIT_JITTER",
    "WAIT_MAX",
    "backoff_scale",
    "is_retryable",
    "set_backoff_scale",
]

RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_FATAL_TRANSPORT: Final = frozenset({"UnsupportedProtocol", "LocalProtocolError", "InvalidURL"})
WAIT_INITIAL: Final = 0.5
WAIT_MAX: Final = 10.0
WAIT_JITTER: Final = 0.5


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


def backoff_scale() -> float:
    """Return the factor applied to retry backoffs now (1.0 unless :func:`set_backoff_scale`)."""
    return _BackoffScale.value


def is_retryable(exc: Exception) -> bool:
    """Tell whether a failed attempt may be retried (an exhausted quota never is)."""
    if isinstance(exc, QuotaExhaustedError):
        return False
    if isinstance(exc, APIError):
        return exc.status in RETRY_STATUSES
    return isinstance(exc, TransportError) and exc.kind not in _FATAL_TRANSPORT
