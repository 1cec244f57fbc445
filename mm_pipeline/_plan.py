"""Grouping, chunking and the request plan: what a ranking costs before anything is sent.

A ranking call groups the pairs (by vehicle for ``/dealers/rank``, by dealer for ``/vins/rank``);
a group that fits one request is sent whole, a larger one is ranked in re-ranking rounds that
keep the top ``exact_top_k`` of every answer (``_online/_rounds.py``). :func:`plan` counts every
group with :func:`~mm_pipeline._online._rounds.group_rounds`, which runs the very schedule the
route runs, so the plan is exactly what an error-free run sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import polars as pl

from mm_pipeline._normalize import prepare
from mm_pipeline._online._rounds import group_rounds, split_sizes

__all__ = [
    "DEFAULT_EXACT_TOP_K",
    "DEFAULT_RATE_LIMIT",
    "GROUP_KEYS",
    "MAX_CHUNK",
    "Endpoint",
    "Plan",
    "group_rounds",
    "plan",
    "plan_prepared",
    "resolve_sizes",
    "split_sizes",
]

Endpoint = Literal["dealers", "vins"]

#: Published per-request limits: 100 dealers for one VIN, 20 VINs for one dealer.
MAX_CHUNK: dict[Endpoint, int] = {"dealers": 100, "vins": 20}
#: Ranks 1..K of every group are exact by default (capped at half a chunk). Chosen from the cost
#: table in the README: ~1.1x ceil(n / cap) requests for dealers, ~1.2x for VINs.
DEFAULT_EXACT_TOP_K: dict[Endpoint, int] = {"dealers": 10, "vins": 3}
#: Requests per second assumed by :func:`plan` for its time estimate (MarketCheck's basic plan).
DEFAULT_RATE_LIMIT = 5.0
#: The columns that define one group (one ranking) per endpoint.
GROUP_KEYS: dict[Endpoint, tuple[str, ...]] = {
    "dealers": ("vin", "price", "miles"),
    "vins": ("source", "zip", "mc_location_id"),
}


def resolve_sizes(
    endpoint: Endpoint, *, chunk_size: int | None, exact_top_k: int | None
) -> tuple[int, int]:
    """Validate ``chunk_size`` and ``exact_top_k`` and fill in their defaults.

    Parameters
    ----------
    endpoint
        ``"dealers"`` (at most 100 items per request) or ``"vins"`` (at most 20).
    chunk_size
        Items per request; ``None`` means the published maximum. Never larger than it, at least 2.
    exact_top_k
        How many leading ranks of a multi-chunk group must be exact, from 0 (no re-ranking:
        ``ceil(n / chunk_size)`` requests) to ``chunk_size - 1``; each full re-ranking request
        eliminates ``chunk_size - exact_top_k`` items. ``None`` means the endpoint's default
        (:data:`DEFAULT_EXACT_TOP_K`), at most ``chunk_size // 2``.

    Returns
    -------
    tuple[int, int]
        ``(chunk_size, exact_top_k)``.

    Examples
    --------
    >>> resolve_sizes("vins", chunk_size=None, exact_top_k=None)
    (20, 3)
    >>> resolve_sizes("dealers", chunk_size=8, exact_top_k=None)
    (8, 4)
    """
    if endpoint not in MAX_CHUNK:
        raise ValueError(f"endpoint must be 'dealers' or 'vins', got {endpoint!r}")
    limit = MAX_CHUNK[endpoint]
    size = limit if chunk_size is None else chunk_size
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= limit:
        raise ValueError(
            f"chunk_size for /{endpoint}/rank must be an integer from 2 to {limit}, got {size!r}"
        )
    default = min(DEFAULT_EXACT_TOP_K[endpoint], size // 2)
    top_k = default if exact_top_k is None else exact_top_k
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k < size:
        raise ValueError(
            f"exact_top_k must be an integer from 0 to chunk_size - 1 = {size - 1} (each "
            f"re-ranking request keeps the top-K of what it ranks), got {top_k!r}"
        )
    return size, top_k


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The cost of a ranking before it is run.

    Attributes
    ----------
    endpoint
        ``"dealers"`` or ``"vins"``.
    rows, invalid_rows, duplicates_removed, conflicts
        Input rows, rows that fail validation, exact duplicates (sent once), and rows that
        conflict with another for the same VIN and dealer (``/vins/rank`` only).
    pairs, groups, largest_group
        Distinct valid pairs to send, the number of rankings they form, and the largest one.
    chunk_size, exact_top_k
        The resolved options.
    requests_per_round
        Requests in round 1, round 2, ... summed over all groups.
    rate_limit
        Requests per second assumed by :attr:`estimated_seconds`.
    """

    endpoint: Endpoint
    rows: int
    invalid_rows: int
    duplicates_removed: int
    conflicts: int
    pairs: int
    groups: int
    largest_group: int
    chunk_size: int
    exact_top_k: int
    requests_per_round: tuple[int, ...]
    rate_limit: float

    @property
    def rounds(self) -> int:
        """Number of rounds the deepest group needs (0 when there is nothing to send)."""
        return len(self.requests_per_round)

    @property
    def requests(self) -> int:
        """Total requests of an error-free run."""
        return sum(self.requests_per_round)

    @property
    def rerank_requests(self) -> int:
        """Requests spent on re-ranking rounds (beyond round 1)."""
        return sum(self.requests_per_round[1:])

    @property
    def estimated_seconds(self) -> float:
        """Lower bound on wall time at :attr:`rate_limit` requests per second."""
        return self.requests / self.rate_limit

    def __repr__(self) -> str:
        rounds = " + ".join(f"{n:,}" for n in self.requests_per_round) or "0"
        return "\n".join(
            [
                f"Plan(endpoint={self.endpoint!r}, chunk_size={self.chunk_size}, "
                f"exact_top_k={self.exact_top_k})",
                f"  input:    {self.rows:,} rows -> {self.pairs:,} distinct valid pairs "
                f"({self.invalid_rows:,} invalid, {self.duplicates_removed:,} duplicates, "
                f"{self.conflicts:,} conflicts)",
                f"  groups:   {self.groups:,} (largest {self.largest_group:,} pairs)",
                f"  requests: {self.requests:,} in {self.rounds} round(s) ({rounds}); "
                f"{self.rerank_requests:,} for re-ranking",
                f"  time:     >= {self.estimated_seconds:,.1f} s at {self.rate_limit:g} req/s",
            ]
        )


def plan_prepared(
    pairs: pl.DataFrame,
    *,
    endpoint: Endpoint,
    chunk_size: int,
    exact_top_k: int,
    rate_limit: float = DEFAULT_RATE_LIMIT,
    rows: int | None = None,
    invalid_rows: int = 0,
    duplicates_removed: int = 0,
    conflicts: int = 0,
) -> Plan:
    """Plan already normalised, valid, distinct ``pairs`` (sizes already resolved)."""
    if not rate_limit > 0:
        raise ValueError(f"rate_limit must be positive, got {rate_limit!r}")
    sizes = pairs.group_by(GROUP_KEYS[endpoint]).len().get_column("len")
    per_round: list[int] = []
    for size, count in sizes.value_counts().iter_rows():
        for index, requests in enumerate(group_rounds(size, chunk_size, exact_top_k)):
            if index == len(per_round):
                per_round.append(0)
            per_round[index] += requests * count
    return Plan(
        endpoint=endpoint,
        rows=pairs.height if rows is None else rows,
        invalid_rows=invalid_rows,
        duplicates_removed=duplicates_removed,
        conflicts=conflicts,
        pairs=pairs.height,
        groups=sizes.len(),
        largest_group=cast(int, sizes.max() or 0),
        chunk_size=chunk_size,
        exact_top_k=exact_top_k,
        requests_per_round=tuple(per_round),
        rate_limit=rate_limit,
    )


def plan(
    pairs: pl.DataFrame | pl.LazyFrame,
    *,
    endpoint: Endpoint = "dealers",
    exact_top_k: int | None = None,
    chunk_size: int | None = None,
    rate_limit: float = DEFAULT_RATE_LIMIT,
) -> Plan:
    """Count the requests a ranking would send, without sending anything.

    The pairs are normalised and validated as :func:`mm_pipeline.rank_dealers` would (invalid
    rows are counted, not raised), exact duplicates are counted once, and every group is planned
    with the same chunking and re-ranking rounds as the real run. Requests re-sent after a 422
    or a retry are not foreseeable and not counted.

    The plan prices the **online** route. When ``rank_dealers`` takes the batch route
    (``mode="batch"``, or ``"auto"`` above 2,000 planned requests), the pairs with a ``zip``
    go through batch jobs instead, and only the vehicles that also have dealers without a zip
    are completed online: :func:`group_rounds` ``(n, chunk_size, exact_top_k,
    preranked=[b])`` requests for a vehicle with ``n`` such dealers and ``b`` batch-ranked ones
    (one request when ``n + min(b, exact_top_k) <= chunk_size``; 0 with ``exact_top_k=0``,
    which only ranks the ``n`` in ``ceil(n / chunk_size)`` requests), counted in
    ``RankStats.merge_requests``.

    Parameters
    ----------
    pairs
        Vehicle-dealer pairs (``vin``, ``price``, ``miles``, ``source``, optional ``zip`` and
        ``mc_location_id``).
    endpoint
        ``"dealers"`` to rank the dealers of each vehicle, ``"vins"`` for the vehicles of each
        dealer.
    exact_top_k, chunk_size
        As for the ranking functions (see :func:`resolve_sizes`).
    rate_limit
        Requests per second for the time estimate.

    Returns
    -------
    Plan

    Examples
    --------
    >>> import polars as pl
    >>> import mm_pipeline as mm
    >>> vehicles = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000]})
    >>> dealers = pl.DataFrame({"source": [f"dealer{i}.com" for i in range(250)]})
    >>> p = mm.plan(mm.cross_pairs(vehicles, dealers), exact_top_k=10)
    >>> p.requests_per_round, p.requests  # two full requests, then 2 x 10 + 50 in one
    ((2, 1), 3)
    >>> print(p)  # doctest: +NORMALIZE_WHITESPACE
    Plan(endpoint='dealers', chunk_size=100, exact_top_k=10)
      input:    250 rows -> 250 distinct valid pairs (0 invalid, 0 duplicates, 0 conflicts)
      groups:   1 (largest 250 pairs)
      requests: 3 in 2 round(s) (2 + 1); 1 for re-ranking
      time:     >= 0.6 s at 5 req/s
    """
    size, top_k = resolve_sizes(endpoint, chunk_size=chunk_size, exact_top_k=exact_top_k)
    prepared = prepare(pairs, endpoint=endpoint, on_invalid="fail")
    return plan_prepared(
        prepared.pairs,
        endpoint=endpoint,
        chunk_size=size,
        exact_top_k=top_k,
        rate_limit=rate_limit,
        rows=prepared.rows,
        invalid_rows=prepared.invalid_rows,
        duplicates_removed=prepared.duplicates_removed,
        conflicts=prepared.conflicts,
    )
