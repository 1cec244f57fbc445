"""The public ranking functions: rank_dealers, rank_vins, their async twins, cross_pairs.

One call: normalise and validate the pairs (``_normalize``), drop exact duplicates, plan
(``_plan``), then route the distinct valid pairs -- online (``_online``) or, for
``rank_dealers`` with ``mode="batch"``/``"auto"``, through batch jobs (``_batch._route``) -- and
return typed frames in a :class:`~mm_pipeline.RankResult`.

The batch route is hybrid. The batch file has no ``mc_location_id`` column, so only pairs with
a ``zip`` go through batch jobs; batch ranks every vehicle's dealers with a zip in one exact
order. A vehicle that also has dealers without a zip (known by ``mc_location_id`` alone, or a
single-location source) is then completed online: its batch order is one pre-ranked chunk that
the re-ranking rounds (``_online/_rounds.py``) merge with the other dealers (typically one
request per vehicle: the batch top-K plus the dealers without a zip, filled up with the batch's
next ones). Its first ranks are exact, the rest follow the documented rule of the rounds;
vehicles whose dealers all have a zip keep the batch ranks, exact throughout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast, overload

import polars as pl

from mm_pipeline._answer_cache import parse_ttl
from mm_pipeline._assemble import assemble_result, empty_outcome
from mm_pipeline._batch._route import DEFAULT_POLL_TIMEOUT, BatchOutcome
from mm_pipeline._budget import check_budget, checked_budget
from mm_pipeline._client import MarketMatchClient
from mm_pipeline._exceptions import BudgetExceededError
from mm_pipeline._hybrid import hand_over, online_requests, run_batch, split_for_batch
from mm_pipeline._normalize import OnInvalid, prepare
from mm_pipeline._online._run import OnlineOptions, OnRequestFailed, rank_online
from mm_pipeline._options import Frame, RankOptions, sync_twin
from mm_pipeline._pairs import cross_pairs
from mm_pipeline._plan import Endpoint, Mode, plan_prepared, resolve_sizes, with_route
from mm_pipeline._rank_output import arank_to_parquet, open_answer_cache
from mm_pipeline._result import RankResult

__all__ = [
    "Mode",
    "arank_dealers",
    "arank_vins",
    "cross_pairs",
    "rank_dealers",
    "rank_vins",
]


async def _arank(pairs: Frame, *, endpoint: Endpoint, options: RankOptions) -> RankResult:
    started = time.monotonic()
    mode, on_request_failed = options.mode, options.on_request_failed
    if mode not in ("online", "batch", "auto"):
        raise ValueError(f"mode must be 'online', 'batch' or 'auto', got {mode!r}")
    chunk_size, exact_top_k = resolve_sizes(
        endpoint, chunk_size=options.chunk_size, exact_top_k=options.exact_top_k
    )
    if on_request_failed not in ("raise", "fail"):
        raise ValueError(f"on_request_failed must be 'raise' or 'fail', got {on_request_failed!r}")
    max_requests = checked_budget(options.max_requests)
    parse_ttl(options.cache_ttl)  # a bad ttl is refused before any work
    prepared = prepare(pairs, endpoint=endpoint, on_invalid=options.on_invalid)
    plan = plan_prepared(
        prepared.pairs, endpoint=endpoint, chunk_size=chunk_size, exact_top_k=exact_top_k
    )
    plan = with_route(plan, prepared.pairs, mode=mode)
    online_pairs, batch_pairs = prepared.pairs, prepared.pairs.clear()
    if plan.route == "batch":
        online_pairs, batch_pairs = split_for_batch(prepared.pairs)
    client = options.client or MarketMatchClient()
    progress = options.progress
    online = empty_outcome()
    batch: BatchOutcome | None = None
    preranked: pl.DataFrame | None = None
    planned = plan.online_requests
    async with client.session() as session:
        if not open_answer_cache(session, options):  # cached answers are free: checked as sent
            check_budget(plan, max_requests)
        session.max_requests = max_requests
        try:
            if batch_pairs.height:
                batch = await run_batch(
                    batch_pairs, session=session, progress=progress, options=options
                )
                batch, preranked = hand_over(batch, online_pairs, prepared.pairs)
                planned = online_requests(
                    online_pairs, preranked, chunk_size=chunk_size, exact_top_k=exact_top_k
                )
            if online_pairs.height:
                online_options = OnlineOptions(
                    endpoint=endpoint,
                    chunk_size=chunk_size,
                    exact_top_k=exact_top_k,
                    concurrency=2 * client.max_concurrency,
                    on_request_failed=on_request_failed,
                    progress=progress,
                    planned_requests=planned,
                )
                online = await rank_online(
                    online_pairs, session=session, options=online_options, preranked=preranked
                )
        except BudgetExceededError as exc:
            raise BudgetExceededError(
                f"ranking stopped: {exc.message} (the plan: {plan.requests:,} requests on the "
                f"{plan.route} route; {session.stats.cached_answers:,} answers came from the "
                "cache); no partial result is returned",
                max_requests=exc.max_requests,
                planned=plan.requests,
                spent=exc.spent,
            ) from None
        http = session.stats
    return assemble_result(
        prepared,
        online,
        batch,
        endpoint=endpoint,
        plan=plan,
        requests=(http.requests, http.retries, http.rate_limited, http.cached_answers),
        started=started,
    )


async def _arank_dealers(pairs: Frame, options: RankOptions) -> RankResult:
    return await _arank(pairs, endpoint="dealers", options=options)


@overload
async def arank_dealers(
    pairs: Frame,
    *,
    client: MarketMatchClient | None = ...,
    mode: Mode = ...,
    exact_top_k: int | None = ...,
    chunk_size: int | None = ...,
    on_invalid: OnInvalid = ...,
    on_request_failed: OnRequestFailed = ...,
    progress: bool | None = ...,
    client_reference: str | None = ...,
    webhook_url: str | None = ...,
    webhook_secret: str | None = ...,
    poll_timeout: float = ...,
    cache_dir: str | Path | None = ...,
    cache_ttl: timedelta | float | None = ...,
    on_job_failed: Literal["raise", "fail"] = ...,
    max_requests: int | None = ...,
    output: None = ...,
) -> RankResult[pl.DataFrame]: ...


@overload
async def arank_dealers(
    pairs: Frame,
    *,
    client: MarketMatchClient | None = ...,
    mode: Mode = ...,
    exact_top_k: int | None = ...,
    chunk_size: int | None = ...,
    on_invalid: OnInvalid = ...,
    on_request_failed: OnRequestFailed = ...,
    progress: bool | None = ...,
    client_reference: str | None = ...,
    webhook_url: str | None = ...,
    webhook_secret: str | None = ...,
    poll_timeout: float = ...,
    cache_dir: str | Path | None = ...,
    cache_ttl: timedelta | float | None = ...,
    on_job_failed: Literal["raise", "fail"] = ...,
    max_requests: int | None = ...,
    output: str | Path,
) -> RankResult[pl.LazyFrame]: ...


async def arank_dealers(
    pairs: Frame,
    *,
    client: MarketMatchClient | None = None,
    mode: Mode = "auto",
    exact_top_k: int | None = None,
    chunk_size: int | None = None,
    on_invalid: OnInvalid = "raise",
    on_request_failed: OnRequestFailed = "raise",
    progress: bool | None = None,
    client_reference: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    poll_timeout: float = DEFAULT_POLL_TIMEOUT,
    cache_dir: str | Path | None = None,
    cache_ttl: timedelta | float | None = None,
    on_job_failed: Literal["raise", "fail"] = "raise",
    max_requests: int | None = None,
    output: str | Path | None = None,
) -> RankResult[pl.DataFrame] | RankResult[pl.LazyFrame]:
    """Rank the dealers of every vehicle (async :func:`rank_dealers`; same parameters)."""
    options = RankOptions(
        client=client,
        mode=mode,
        exact_top_k=exact_top_k,
        chunk_size=chunk_size,
        on_invalid=on_invalid,
        on_request_failed=on_request_failed,
        progress=progress,
        client_reference=client_reference,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        poll_timeout=poll_timeout,
        cache_dir=cache_dir,
        cache_ttl=cache_ttl,
        on_job_failed=on_job_failed,
        max_requests=max_requests,
        output=output,
    )
    if output is not None:
        return await arank_to_parquet(
            pairs, options=options, output=Path(output), in_memory=_arank_dealers
        )
    return await _arank(pairs, endpoint="dealers", options=options)


@overload
def rank_dealers(
    pairs: Frame,
    *,
    client: MarketMatchClient | None = ...,
    mode: Mode = ...,
    exact_top_k: int | None = ...,
    chunk_size: int | None = ...,
    on_invalid: OnInvalid = ...,
    on_request_failed: OnRequestFailed = ...,
    progress: bool | None = ...,
    client_reference: str | None = ...,
    webhook_url: str | None = ...,
    webhook_secret: str | None = ...,
    poll_timeout: float = ...,
    cache_dir: str | Path | None = ...,
    cache_ttl: timedelta | float | None = ...,
    on_job_failed: Literal["raise", "fail"] = ...,
    max_requests: int | None = ...,
    output: None = ...,
) -> RankResult[pl.DataFrame]: ...


@overload
def rank_dealers(
    pairs: Frame,
    *,
    client: MarketMatchClient | None = ...,
    mode: Mode = ...,
    exact_top_k: int | None = ...,
    chunk_size: int | None = ...,
    on_invalid: OnInvalid = ...,
    on_request_failed: OnRequestFailed = ...,
    progress: bool | None = ...,
    client_reference: str | None = ...,
    webhook_url: str | None = ...,
    webhook_secret: str | None = ...,
    poll_timeout: float = ...,
    cache_dir: str | Path | None = ...,
    cache_ttl: timedelta | float | None = ...,
    on_job_failed: Literal["raise", "fail"] = ...,
    max_requests: int | None = ...,
    output: str | Path,
) -> RankResult[pl.LazyFrame]: ...


# The overloads above type it; the twin itself takes arank_dealers' parameters.
@sync_twin(cast("Callable[..., Coroutine[Any, Any, RankResult[Any]]]", arank_dealers))
def rank_dealers() -> None:  # a stub for the docstring: the parameters are arank_dealers'.
    """Rank the dealers of every vehicle (``/dealers/rank``).

    Pairs are grouped by vehicle (``vin``, ``price``, ``miles``: the same VIN at two prices is
    two vehicles, ranked separately); each group's dealers are ranked 1..N.

    Parameters
    ----------
    pairs
        polars DataFrame or LazyFrame with ``vin``, ``price``, ``miles``, ``source`` and
        optional ``zip``, ``mc_location_id`` (per row: a single-location dealer needs
        neither). Values are normalised first (VIN upper-cased, ``source`` reduced to its
        host, ``2134`` -> ``"02134"``, ``20000.0`` -> ``20000``; see
        :mod:`mm_pipeline._normalize`); extra columns are ignored.
    client
        A :class:`~mm_pipeline.MarketMatchClient`; default: one from the environment
        (``MARKETCHECK_API_KEY``, ``MARKETCHECK_BASE_URL``).
    mode
        ``"online"`` (the rank endpoints), ``"batch"`` or ``"auto"`` (batch when the online
        plan needs more than 2,000 requests and the batch route fewer; see
        :func:`mm_pipeline.plan`). The batch route sends every pair with a ``zip``
        through batch jobs (exact ranks); a vehicle that also has dealers without a ``zip``
        (e.g. ``mc_location_id`` only) is completed online by merging them with its batch
        order -- about one request per such vehicle (``stats.merge_requests``); its ranks
        1..K are then exact and the rest follow the rule of ``exact_top_k``.
    exact_top_k
        For groups larger than one request: ranks 1..K are made exact with re-ranking rounds
        (``rank_exact`` true; often more ranks are, at no cost); ranks beyond follow the
        documented order of :mod:`mm_pipeline._online._rounds` (``rank_exact`` false). A group
        of n dealers costs ``ceil((n - K) / (chunk_size - K))`` requests (the fewest possible;
        ``ceil(n / chunk_size)`` for K = 0, which skips re-ranking). 0..chunk_size - 1,
        default ``min(10, chunk_size // 2)`` (about 1.1x ``ceil(n / 100)`` requests; see the
        README's cost table). Groups that fit one request are exact throughout.
    chunk_size
        Dealers per request: 2..100, default 100.
    on_invalid
        ``"raise"``: invalid rows raise :class:`~mm_pipeline.InvalidInputError` listing them
        (row, column, check, value) before anything is sent; ``"fail"``: they go to
        ``failed`` with ``error_code="invalid_input"``. Missing columns always raise.
    on_request_failed
        A request that still fails after the client's retries: ``"raise"`` stops the run and
        raises that error (noting the groups and pairs affected; no partial result);
        ``"fail"`` puts the whole group in ``failed`` (``ranking_failed``) and goes on.
    progress
        Progress bar over requests: ``None`` shows it in terminals and notebooks only.
    client_reference, webhook_url, webhook_secret, poll_timeout, on_job_failed
        Batch route options (see :class:`~mm_pipeline.BatchClient`).
    cache_dir
        A folder for the caches: verified batch result files (default for those: the user
        cache directory) and, only when given, the **answer cache**: every 200 answer of the
        rank endpoints is kept (``cache_dir/answers/``, by request content, endpoint and
        account -- never the key itself), and the same request is answered from there, sending
        nothing (``stats.cached_answers``). See :mod:`mm_pipeline._answer_cache`.
    cache_ttl
        How long a cached answer serves: seconds or a ``timedelta``; ``None`` (default): until
        the end of the UTC day it was answered (scores move with the market, daily).
    max_requests
        The most requests the call may send (retries and re-sends after a 422 included;
        answers from the cache are free). A plan that needs more raises
        :class:`~mm_pipeline.BudgetExceededError` before anything is sent (with an answer cache
        that may hold answers, only as requests are sent); a run that reaches it stops with
        that error (no partial result). ``None``: no limit.
    output
        A folder: the pairs (a LazyFrame too) are streamed through the batch route in VIN
        buckets, never collected, and ``ranked.parquet`` / ``failed.parquet`` are written
        there; the result's frames are LazyFrames scanning them (see the README's batch
        section). Every pair needs a ``zip``. ``None`` (default): frames in memory.

    Returns
    -------
    RankResult
        ``ranked`` (:class:`~mm_pipeline.schemas.RankedMatch`), ``failed``
        (:class:`~mm_pipeline.schemas.FailedMatch`) and ``stats``. Every distinct valid pair
        is in exactly one of them; exact duplicate rows are sent once, appear once and are
        counted in ``stats.duplicates_removed``.

    Examples
    --------
    >>> import polars as pl
    >>> import mm_pipeline as mm
    >>> from mm_pipeline.sandbox import running
    >>> pairs = pl.DataFrame({
    ...     "vin": ["WP1BE2AY5PDA28064"] * 3, "price": [20000] * 3, "miles": [3000] * 3,
    ...     "source": ["mbofaugusta.com", "acceleride.mbofaugusta.com",
    ...                "acceleride.esterobaychevrolet.com"],
    ...     "zip": ["30907", "30907", "33928"]})
    >>> with running() as sandbox:
    ...     client = mm.MarketMatchClient(sandbox.api_key, sandbox.base_url)
    ...     result = mm.rank_dealers(pairs, client=client, mode="online", progress=False)
    >>> result.ranked.get_column("vin_rank").to_list()
    [1, 2, 3]
    >>> result.ranked.get_column("rank_exact").all(), result.failed.height
    (True, 0)
    """


async def arank_vins(
    pairs: Frame,
    *,
    client: MarketMatchClient | None = None,
    exact_top_k: int | None = None,
    chunk_size: int | None = None,
    on_invalid: OnInvalid = "raise",
    on_request_failed: OnRequestFailed = "raise",
    progress: bool | None = None,
    cache_dir: str | Path | None = None,
    cache_ttl: timedelta | float | None = None,
    max_requests: int | None = None,
) -> RankResult:
    """Rank the vehicles of every dealer (async :func:`rank_vins`; same parameters)."""
    options = RankOptions(
        client=client,
        exact_top_k=exact_top_k,
        chunk_size=chunk_size,
        on_invalid=on_invalid,
        on_request_failed=on_request_failed,
        progress=progress,
        cache_dir=cache_dir,
        cache_ttl=cache_ttl,
        max_requests=max_requests,
    )
    return await _arank(pairs, endpoint="vins", options=options)


@sync_twin(arank_vins)
def rank_vins() -> None:  # a stub for the docstring: the parameters are arank_vins'.
    """Rank the vehicles of every dealer (``/vins/rank``), always online.

    Pairs are grouped by dealer as given (``source``, ``zip``, ``mc_location_id``: the same
    rooftop named once by zip and once by id is two groups); each group's vehicles are ranked
    1..N. A VIN given twice for one dealer with different price/miles keeps its first row; the
    others go to ``failed`` as ``duplicate_conflict``. Parameters (``cache_dir``, ``cache_ttl``
    and ``max_requests`` included) and result as for :func:`rank_dealers`, except ``chunk_size``
    (VINs per request) is 2..20, default 20, and ``exact_top_k`` defaults to 3 (about 1.2x
    ``ceil(n / 20)`` requests).

    Examples
    --------
    >>> import polars as pl
    >>> import mm_pipeline as mm
    >>> from mm_pipeline.sandbox import running
    >>> pairs = pl.DataFrame({
    ...     "vin": ["5FNYF8H54SB000197", "JTJBM7FX1K5236458", "YV4L12RL4R1757085"],
    ...     "price": [37610, 35087, 33085], "miles": [14428, 73788, 45490],
    ...     "source": ["mbofaugusta.com"] * 3, "zip": ["30907"] * 3})
    >>> with running() as sandbox:
    ...     client = mm.MarketMatchClient(sandbox.api_key, sandbox.base_url)
    ...     result = mm.rank_vins(pairs, client=client, progress=False)
    >>> sorted(result.ranked.get_column("vin_rank").to_list())
    [1, 2, 3]
    """
