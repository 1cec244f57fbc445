"""What a session opens with: frozen :class:`SessionSettings` and the shared :class:`RateMemory`.

:class:`~mm_pipeline.MarketMatchClient` validates its options into one ``SessionSettings`` and
creates one ``RateMemory``; :func:`~mm_pipeline._session.open_session` reads both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import httpx

__all__ = ["MIN_TRANSFER_RATE", "RateMemory", "SessionSettings"]

MIN_TRANSFER_RATE: Final = 64 * 1024
"""Bytes per second an upload or a streamed download may average, at the least, before its
deadline ends it: each byte moved extends the deadline by ``1 / MIN_TRANSFER_RATE`` seconds."""


@dataclass(frozen=True, kw_only=True)
class SessionSettings:
    """What a :class:`Session` needs to know, fixed when the client is built (validated there).

    :class:`~mm_pipeline.MarketMatchClient` checks the values and holds one of these; a session
    only reads it.
    """

    base_url: str
    api_key: str = field(repr=False)
    max_concurrency: int
    timeout: float
    deadline: float
    max_retries: int
    retry_deadline: float
    rate_limit: float | None
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False, compare=False)


class RateMemory:
    """The pace learned by the sessions of one client: the only state they share, and mutable.

    A :class:`~mm_pipeline.MarketMatchClient` creates one and hands it to each session it opens:
    a session starts at the remembered pace (before any ``RateLimit-Limit`` header is seen) and
    writes what its limiter learned when it closes, so the next unit of work starts there. The
    client itself stays immutable configuration.

    Examples
    --------
    >>> memory = RateMemory()
    >>> memory.rate is None
    True
    >>> memory.remember(12.0); memory.remember(None); memory.rate
    12.0
    """

    def __init__(self) -> None:
        self.rate: float | None = None

    def remember(self, learned: float | None) -> None:
        """Keep ``learned`` as the pace to start at (``None``: nothing learned, keep the old)."""
        if learned:
            self.rate = learned
