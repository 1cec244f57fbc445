"""Fault injection: a seeded random plan plus targeted faults queued by tests (no HTTP here).

Two sources decide whether a request is answered with a fault instead of its real response:

* **targeted** faults, queued with :meth:`FaultPlan.inject` (``count`` requests whose path starts
  with ``path_prefix``), served first, in the order they were queued;
* **random** faults: each request draws from a :class:`random.Random` seeded with ``seed``; with
  probability ``rate`` it gets one of ``kinds`` (uniformly).

The download faults (``corrupt_download``, ``truncate_download``) only ever apply to the download
endpoint; the other kinds apply to any API request. ``echo_key`` serves the request normally but
quotes its API key in each ``failed_items[].error_message`` of a ranking answer (a server that
echoes what it was sent), so tests can prove such text is redacted.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "DEFAULT_RANDOM_KINDS",
    "DOWNLOAD_KINDS",
    "FAULT_KINDS",
    "SERVED_KINDS",
    "FaultKind",
    "FaultPlan",
    "PendingFault",
    "parse_fault_kind",
]

FaultKind = Literal[
    "429",
    "429_no_retry_after",
    "500",
    "502",
    "503",
    "drop",
    "slow",
    "corrupt_download",
    "truncate_download",
    "echo_key",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
DOWNLOAD_KINDS: frozenset[FaultKind] = frozenset({"corrupt_download", "truncate_download"})
SERVED_KINDS: frozenset[FaultKind] = DOWNLOAD_KINDS | {"slow", "echo_key"}
"""Kinds whose request is still served by its endpoint (which may alter the answer)."""
DEFAULT_RANDOM_KINDS: tuple[FaultKind, ...] = (
    "429",
    "429_no_retry_after",
    "500",
    "502",
    "503",
    "drop",
)
"""Kinds drawn by ``fault_rate`` unless configured otherwise (``slow`` is opt-in)."""


def parse_fault_kind(value: object) -> FaultKind:
    """Return *value* as a fault kind, or raise ValueError naming the valid kinds.

    Examples
    --------
    >>> parse_fault_kind("503")
    '503'
    >>> parse_fault_kind("teapot")
    Traceback (most recent call last):
    ...
    ValueError: unknown fault kind 'teapot'; expected one of: 429, 429_no_retry_after, 500, 502, 503, drop, slow, corrupt_download, truncate_download, echo_key
    """  # noqa: E501
    for kind in FAULT_KINDS:
        if value == kind:
            return kind
    msg = f"unknown fault kind {value!r}; expected one of: {', '.join(FAULT_KINDS)}"
    raise ValueError(msg)


@dataclass(slots=True)
class PendingFault:
    """A targeted fault still waiting for ``count`` matching requests."""

    kind: FaultKind
    count: int
    path_prefix: str


class FaultPlan:
    """Decide, request by request, whether to answer with a fault.

    Examples
    --------
    >>> plan = FaultPlan(rate=0.0)
    >>> plan.inject("502", count=2)
    >>> [plan.next_fault("/v2/marketmatch/dealers/rank") for _ in range(3)]
    ['502', '502', None]
    """

    def __init__(
        self, *, rate: float, kinds: Iterable[FaultKind] = DEFAULT_RANDOM_KINDS, seed: int = 0
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            msg = f"fault_rate must be within [0, 1], got {rate}"
            raise ValueError(msg)
        random_kinds = tuple(parse_fault_kind(kind) for kind in kinds)
        if rate > 0 and not [k for k in random_kinds if k not in DOWNLOAD_KINDS]:
            msg = "fault_kinds must name at least one kind that is not a download fault"
            raise ValueError(msg)
        self._rate = rate
        self._kinds = random_kinds
        self._seed = seed
        self._rng = random.Random(seed)  # noqa: S311 - a test fixture, not cryptography
        self._pending: list[PendingFault] = []
        self._lock = threading.Lock()

    def inject(self, kind: FaultKind, *, count: int = 1, path_prefix: str = "/v2/") -> None:
        """Queue *kind* for the next *count* requests whose path starts with *path_prefix*."""
        kind = parse_fault_kind(kind)
        if count < 1:
            msg = f"count must be at least 1, got {count}"
            raise ValueError(msg)
        with self._lock:
            self._pending.append(PendingFault(kind, count, path_prefix))

    def pending(self) -> list[PendingFault]:
        """Return copies of the targeted faults not yet served."""
        with self._lock:
            return [PendingFault(p.kind, p.count, p.path_prefix) for p in self._pending]

    def reset(self) -> None:
        """Drop every targeted fault and restart the random sequence from the seed."""
        with self._lock:
            self._pending.clear()
            self._rng = random.Random(self._seed)  # noqa: S311

    def next_fault(self, path: str, *, download: bool = False) -> FaultKind | None:
        """Return the fault for a request to *path*, or None to serve it normally."""
        with self._lock:
            for pending in self._pending:
                if not path.startswith(pending.path_prefix):
                    continue
                if pending.kind in DOWNLOAD_KINDS and not download:
                    continue
                pending.count -= 1
                if pending.count == 0:
                    self._pending.remove(pending)
                return pending.kind
            if self._rate and self._rng.random() < self._rate:
                kind = self._rng.choice(self._kinds)
                if kind in DOWNLOAD_KINDS and not download:
                    return None
                return kind
            return None
