"""Grouping, chunking and the request plan: what a ranking costs before anything is sent.

A ranking call groups the pairs (by vehicle for ``/dealers/rank``, by dealer for ``/vins/rank``);
a group that fits one request is sent whole, a larger one is ranked in re-ranking rounds that
keep the top ``exact_top_k`` of every answer (``_online/_rounds.py``). :func:`plan` counts every
group with :func:`~mm_pipeline._online._rounds.group_rounds`, which runs the very schedule the
route runs, so the plan is exactly what an error-free run sends.

:func:`plan` also prices the batch route (:class:`~mm_pipeline._batch._plan.BatchPlan`: jobs,
uploads, polls, downloads, and the online merge requests of :func:`merge_rounds`), names the
route a ``mode`` takes (:func:`choose_route`, the rule the ranking functions follow), and
estimates the time at a rate whose source it names (:func:`resolve_rate`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, cast

import polars as pl

from mm_pipeline._batch._plan import BATCH_THRESHOLD_REQUESTS, BatchPlan, price_batch
from mm_pipeline._normalize import prepare
from mm_pipeline._online._rounds import group_rounds, split_sizes

if TYPE_CHECKING:
    from mm_pipeline._client import MarketMatchClient

__all__ = [
    "BATCH_THRESHOLD_REQUESTS",
    "DEFAULT_EXACT_TOP_K",
    "DEFAULT_RATE_LIMIT",
    "GROUP_KEYS",
    "MAX_CHUNK",
    "Endpoint",
    "Mode",
    "Plan",
    "Route",
    "choose_route",
    "group_rounds",
    "merge_rounds",
    "plan",
    "plan_prepared",
    "resolve_rate",
    "resolve_sizes",
    "split_sizes",
    "with_route",
]

Endpoint = Literal["dealers", "vins"]
Mode = Literal["online", "batch", "auto"]
Route = Literal["online", "batch"]

#: Published per-request limits: 100 dealers for one VIN, 20 VINs for one dealer.
MAX_CHUNK: dict[Endpoint, int] = {"dealers": 100, "vins": 20}
#: Ranks 1..K of every group are exact by default (capped at half a chunk). Chosen from the cost
#: table in the README: ~1.1x ceil(n / cap) requests for dealers, ~1.2x for VINs.
DEFAULT_EXACT_TOP_K: dict[Endpoint, int] = {"dealers": 10, "vins": 3}
#: Requests per second assumed by :func:`plan` for its time estimate (MarketCheck's basic plan).
DEFAULT_RATE_LIMIT = 5.0
_DEFAULT_RATE_SOURCE: Final = "the documented default (MarketCheck's basic plan)"
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


def merge_rounds(
    unranked: pl.DataFrame, ranked: pl.DataFrame, *, chunk_size: int, exact_top_k: int
) -> tuple[int, ...]:
    """Count the online requests per round that complete batch-ranked vehicles.

    ``unranked`` holds the pairs ranked online (``/dealers/rank`` groups), ``ranked`` the
    batch-ranked pairs of the same vehicles: each vehicle with ``n`` unranked pairs and ``b``
    ranked ones costs :func:`group_rounds` ``(n, chunk_size, exact_top_k, preranked=[b])``.

    Examples
    --------
    >>> car = {"vin": "V", "price": 1, "miles": 2}
    >>> merge_rounds(pl.DataFrame([car] * 3), pl.DataFrame([car] * 300),
    ...              chunk_size=100, exact_top_k=10)
    (1,)
    """
    keys = list(GROUP_KEYS["dealers"])
    if not unranked.height:
        return ()
    sizes = unranked.group_by(keys).len("unranked")
    if ranked.height:
        sizes = sizes.join(ranked.group_by(keys).len("ranked"), on=keys, how="left")
    else:
        sizes = sizes.with_columns(ranked=pl.lit(0, pl.UInt32))
    counts = sizes.fill_null(0).group_by("unranked", "ranked").len("groups")
    per_round: list[int] = []
    for n, pre, groups in counts.iter_rows():
        for index, requests in enumerate(group_rounds(n, chunk_size, exact_top_k, preranked=[pre])):
            if index == len(per_round):
                per_round.append(0)
            per_round[index] += requests * groups
    return tuple(per_round)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The cost of a ranking before it is run, on the route its ``mode`` takes.

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
        The **online** route: requests in round 1, round 2, ... summed over all groups.
    rate_limit, rate_source
        Requests per second assumed by the time estimates, and where that figure comes from.
    mode, route
        The mode asked for and the route it takes (``"online"`` or ``"batch"``).
    batch
        The batch route's figures (``rank_dealers`` with ``mode`` ``"batch"`` or ``"auto"``).
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
    rate_source: str = _DEFAULT_RATE_SOURCE
    mode: Mode = "online"
    batch: BatchPlan | None = None

    @property
    def route(self) -> Route:
        """The route ``mode`` takes (see :func:`choose_route`)."""
        return choose_route(
            self.mode, self.endpoint, online_requests=self.online_requests, batch=self.batch
        )

    @property
    def rounds(self) -> int:
        """Rounds of the online route's deepest group (0 when there is nothing to send)."""
        return len(self.requests_per_round)

    @property
    def online_requests(self) -> int:
        """Requests of an error-free run on the online route."""
        return sum(self.requests_per_round)

    @property
    def rerank_requests(self) -> int:
        """Requests the online route spends on re-ranking rounds (beyond round 1)."""
        return sum(self.requests_per_round[1:])

    @property
    def requests(self) -> int:
        """Requests of an error-free run on :attr:`route` (batch polls estimated)."""
        if self.route == "batch" and self.batch is not None:
            return self.batch.requests
        return self.online_requests

    @property
    def requests_at_least(self) -> int:
        """Requests :attr:`route` cannot do without (what ``max_requests`` is checked against)."""
        if self.route == "batch" and self.batch is not None:
            return self.batch.requests_at_least
        return self.online_requests

    @property
    def online_seconds(self) -> float:
        """Lower bound on the online route's wall time at :attr:`rate_limit`."""
        return self.online_requests / self.rate_limit

    @property
    def batch_seconds(self) -> float | None:
        """Estimate the batch route's wall time (``None`` without batch figures).

        Its requests but polls at :attr:`rate_limit`, plus the assumed time of each job.
        """
        if self.batch is None:
            return None
        sent = self.batch.requests - self.batch.polls
        return sent / self.rate_limit + self.batch.jobs * self.batch.assumed_job_seconds

    @property
    def estimated_seconds(self) -> float:
        """Wall time estimate of :attr:`route` (a lower bound for the online route)."""
        batch = self.batch_seconds
        return batch if self.route == "batch" and batch is not None else self.online_seconds

    def _batch_lines(self, batch: BatchPlan, mark: str) -> list[str]:
        merge = batch.merge_requests_per_round
        rounds = " + ".join(f"{n:,}" for n in merge) or "0"
        return [
            f"  batch:    {batch.requests:,} in {batch.jobs:,} job(s); "
            f"~{self.batch_seconds or 0.0:,.1f} s{mark}",
            f"            per job: 1 listing, 1 upload, ~{batch.polls // max(batch.jobs, 1):,} "
            f"polls ({batch.assumed_job_seconds:g} s assumed), 1 download",
            f"            online:  {batch.merge_requests:,} in {len(merge)} round(s) ({rounds}) "
            "for dealers without a zip",
        ]

    def __repr__(self) -> str:
        rounds = " + ".join(f"{n:,}" for n in self.requests_per_round) or "0"
        route = self.route
        lines = [
            f"Plan(endpoint={self.endpoint!r}, mode={self.mode!r}, route={route!r}, "
            f"chunk_size={self.chunk_size}, exact_top_k={self.exact_top_k})",
            f"  input:    {self.rows:,} rows -> {self.pairs:,} distinct valid pairs "
            f"({self.invalid_rows:,} invalid, {self.duplicates_removed:,} duplicates, "
            f"{self.conflicts:,} conflicts)",
            f"  groups:   {self.groups:,} (largest {self.largest_group:,} pairs)",
        ]
        if route == "online" or self.mode == "auto":
            lines.append(
                f"  online:   {self.online_requests:,} in {self.rounds} round(s) ({rounds}); "
                f"{self.rerank_requests:,} for re-ranking; >= {self.online_seconds:,.1f} s"
                + (" <- route" if self.mode == "auto" and route == "online" else "")
            )
        if self.batch is not None and (route == "batch" or self.mode == "auto"):
            mark = " <- route" if self.mode == "auto" and route == "batch" else ""
            lines.extend(self._batch_lines(self.batch, mark))
        elif self.mode != "online":
            why = "/vins/rank is always online" if self.endpoint == "vins" else "no pair has a zip"
            lines.append(f"  batch:    not possible ({why})")
        lines.append(f"  rate:     {self.rate_limit:g} req/s, {self.rate_source}")
        return "\n".join(lines)


def choose_route(
    mode: Mode, endpoint: Endpoint, *, online_requests: int, batch: BatchPlan | None
) -> Route:
    """Name the route a ranking takes: the rule of the ranking functions and of :func:`plan`.

    ``rank_vins`` is always online. ``rank_dealers`` goes by batch with ``mode="batch"``, or
    with ``"auto"`` when the online route needs more than :data:`BATCH_THRESHOLD_REQUESTS`
    requests *and* the batch route (its estimated polls and online merge requests included)
    needs fewer -- provided some pair has a ``zip`` (the batch file needs one; ``batch`` holds
    the batch route's figures, ``None`` without such pairs).

    Examples
    --------
    >>> from mm_pipeline._batch._plan import BatchPlan
    >>> one_job = BatchPlan(pairs=10, jobs=1, polls=37, assumed_job_seconds=600.0,
    ...                     merge_requests_per_round=())
    >>> choose_route("auto", "dealers", online_requests=2_001, batch=one_job)
    'batch'
    >>> choose_route("auto", "dealers", online_requests=2_000, batch=one_job)
    'online'
    >>> merging = dataclasses.replace(one_job, merge_requests_per_round=(2_500,))
    >>> choose_route("auto", "dealers", online_requests=2_001, batch=merging)  # dearer
    'online'
    """
    if mode not in ("online", "batch", "auto"):
        raise ValueError(f"mode must be 'online', 'batch' or 'auto', got {mode!r}")
    if endpoint != "dealers" or batch is None or not batch.pairs:
        return "online"
    if mode == "auto":
        above = online_requests > BATCH_THRESHOLD_REQUESTS
        return "batch" if above and batch.requests < online_requests else "online"
    return mode


def resolve_rate(rate_limit: float | None, client: MarketMatchClient | None) -> tuple[float, str]:
    """Return the rate a time estimate assumes, and where it comes from.

    ``rate_limit`` if given; else the client's configured ``rate_limit``; else the rate its
    sessions learned from the API's ``RateLimit-Limit`` header; else
    :data:`DEFAULT_RATE_LIMIT` (MarketCheck's basic plan).

    Examples
    --------
    >>> resolve_rate(None, None)
    (5.0, "the documented default (MarketCheck's basic plan)")
    >>> resolve_rate(20, None)
    (20.0, 'given as rate_limit')
    """
    if rate_limit is not None:
        if not rate_limit > 0:
            raise ValueError(f"rate_limit must be positive, got {rate_limit!r}")
        return float(rate_limit), "given as rate_limit"
    if client is not None and client.rate_limit is not None:
        return float(client.rate_limit), "the client's configured rate_limit"
    if client is not None and client.learned_rate is not None:
        return client.learned_rate, "learned from the API's RateLimit-Limit by the client"
    return DEFAULT_RATE_LIMIT, _DEFAULT_RATE_SOURCE


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
    """Plan the online route of already normalised, valid, distinct ``pairs``."""
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


def with_route(plan: Plan, pairs: pl.DataFrame, *, mode: Mode) -> Plan:
    """Add the batch route's figures to an online ``plan`` of ``pairs``, for ``mode``."""
    if mode not in ("online", "batch", "auto"):
        raise ValueError(f"mode must be 'online', 'batch' or 'auto', got {mode!r}")
    batch = None
    by_batch = pairs.filter(pl.col("zip").is_not_null())
    if plan.endpoint == "dealers" and mode != "online" and by_batch.height:  # else no batch file
        online = pairs.filter(pl.col("zip").is_null())
        merges = merge_rounds(
            online, by_batch, chunk_size=plan.chunk_size, exact_top_k=plan.exact_top_k
        )
        batch = price_batch(by_batch, merge_requests_per_round=merges)
    return dataclasses.replace(plan, mode=mode, batch=batch)


def plan(
    pairs: pl.DataFrame | pl.LazyFrame,
    *,
    endpoint: Endpoint = "dealers",
    mode: Mode = "auto",
    exact_top_k: int | None = None,
    chunk_size: int | None = None,
    client: MarketMatchClient | None = None,
    rate_limit: float | None = None,
) -> Plan:
    """Price a ranking on the route ``mode`` would take, without sending anything.

    The pairs are normalised and validated as :func:`mm_pipeline.rank_dealers` would (invalid
    rows are counted, not raised), exact duplicates are counted once, and every group is planned
    with the same chunking and re-ranking rounds as the real run. Requests re-sent after a 422
    or a retry are not foreseeable and not counted; answers from the answer cache are free.

    The **online** route is priced exactly (:attr:`Plan.requests_per_round`). The **batch**
    route of ``rank_dealers`` (:attr:`Plan.batch`) sends the pairs with a ``zip`` through
    jobs -- per job one listing (to adopt a job a rerun already made), one upload, status
    polls and one download -- and completes the vehicles that also have dealers without a zip
    online: :func:`group_rounds` ``(n, chunk_size, exact_top_k, preranked=[b])`` requests for
    a vehicle with ``n`` such dealers and ``b`` batch-ranked ones (one request when
    ``n + min(b, exact_top_k) <= chunk_size``), counted in ``RankStats.merge_requests``. Jobs
    and polls are estimates (see :class:`~mm_pipeline._batch._plan.BatchPlan`). With
    ``mode="auto"`` both routes' figures are shown, and the route taken is the one
    :func:`choose_route` names.

    Parameters
    ----------
    pairs
        Vehicle-dealer pairs (``vin``, ``price``, ``miles``, ``source``, optional ``zip`` and
        ``mc_location_id``).
    endpoint
        ``"dealers"`` to rank the dealers of each vehicle, ``"vins"`` for the vehicles of each
        dealer (always online).
    mode
        As for :func:`mm_pipeline.rank_dealers`: ``"online"``, ``"batch"`` or ``"auto"``.
    exact_top_k, chunk_size
        As for the ranking functions (see :func:`resolve_sizes`).
    client
        The client the run would use: its configured or learned rate feeds the time estimate.
    rate_limit
        Requests per second for the time estimate (overrides the client's; see
        :func:`resolve_rate`).

    Returns
    -------
    Plan

    Examples
    --------
    >>> import polars as pl
    >>> import mm_pipeline as mm
    >>> vehicles = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000]})
    >>> dealers = pl.DataFrame({"source": [f"dealer{i}.com" for i in range(250)], "zip": "30907"})
    >>> p = mm.plan(mm.cross_pairs(vehicles, dealers), exact_top_k=10)
    >>> p.requests_per_round, p.requests  # two full requests, then 2 x 10 + 50 in one
    ((2, 1), 3)
    >>> p.route, p.batch.requests
    ('online', 40)
    >>> print(p)  # doctest: +NORMALIZE_WHITESPACE
    Plan(endpoint='dealers', mode='auto', route='online', chunk_size=100, exact_top_k=10)
      input:    250 rows -> 250 distinct valid pairs (0 invalid, 0 duplicates, 0 conflicts)
      groups:   1 (largest 250 pairs)
      online:   3 in 2 round(s) (2 + 1); 1 for re-ranking; >= 0.6 s <- route
      batch:    40 in 1 job(s); ~600.6 s
                per job: 1 listing, 1 upload, ~37 polls (600 s assumed), 1 download
                online:  0 in 0 round(s) (0) for dealers without a zip
      rate:     5 req/s, the documented default (MarketCheck's basic plan)
    """
    size, top_k = resolve_sizes(endpoint, chunk_size=chunk_size, exact_top_k=exact_top_k)
    rate, source = resolve_rate(rate_limit, client)
    prepared = prepare(pairs, endpoint=endpoint, on_invalid="fail")
    online = plan_prepared(
        prepared.pairs,
        endpoint=endpoint,
        chunk_size=size,
        exact_top_k=top_k,
        rate_limit=rate,
        rows=prepared.rows,
        invalid_rows=prepared.invalid_rows,
        duplicates_removed=prepared.duplicates_removed,
        conflicts=prepared.conflicts,
    )
    return with_route(dataclasses.replace(online, rate_source=source), prepared.pairs, mode=mode)
