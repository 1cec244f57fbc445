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

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

import polars as pl

from mm_pipeline._answer_cache import parse_ttl
from mm_pipeline._batch._large import LargeOutcome, rank_to_parquet
from mm_pipeline._batch._parquet import parquet_rows
from mm_pipeline._batch._route import (
    DEFAULT_POLL_TIMEOUT,
    BatchOptions,
    BatchOutcome,
    rank_pairs_batch,
)
from mm_pipeline._client import MarketMatchClient
from mm_pipeline._exceptions import BudgetExceededError, InvalidInputError
from mm_pipeline._frames import (
    FAILED_SCHEMA,
    FAILED_WITH_ROW,
    PAIR_COLUMNS,
    RANKED_SCHEMA,
    RANKED_WITH_ROW,
    ROW,
)
from mm_pipeline._normalize import OnInvalid, Prepared, prepare
from mm_pipeline._online._record import OnlineOutcome
from mm_pipeline._online._run import OnlineOptions, OnRequestFailed, rank_online
from mm_pipeline._plan import (
    BATCH_THRESHOLD_REQUESTS,
    GROUP_KEYS,
    Endpoint,
    Mode,
    Plan,
    merge_rounds,
    plan_prepared,
    resolve_sizes,
    with_route,
)
from mm_pipeline._result import RankResult, RankStats
from mm_pipeline._session import Session
from mm_pipeline._sync import run_sync

__all__ = [
    "Mode",
    "arank_dealers",
    "arank_vins",
    "cross_pairs",
    "rank_dealers",
    "rank_vins",
]

Frame = pl.DataFrame | pl.LazyFrame
P = ParamSpec("P")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankOptions:
    """The options of one ranking call, as given (validated and resolved by :func:`_arank`).

    Built once by the public functions and carried to the routes; the defaults are the public
    functions' defaults.
    """

    client: MarketMatchClient | None = None
    mode: Mode = "online"
    exact_top_k: int | None = None
    chunk_size: int | None = None
    on_invalid: OnInvalid = "raise"
    on_request_failed: OnRequestFailed = "raise"
    progress: bool | None = None
    client_reference: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    poll_timeout: float = DEFAULT_POLL_TIMEOUT
    cache_dir: str | Path | None = None
    cache_ttl: timedelta | float | None = None
    on_job_failed: Literal["raise", "fail"] = "raise"
    max_requests: int | None = None
    output: str | Path | None = None


def _sync_twin(
    afunc: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[[Callable[[], None]], Callable[P, T]]:
    """Make the synchronous twin of ``afunc``: same parameters, the decorated stub's docstring.

    The parameters are spelled once, on the async function; ``inspect.signature`` (and so the
    docs) reads them through ``__wrapped__``, and type checkers through the ``ParamSpec``.
    """

    def twin_of(stub: Callable[[], None]) -> Callable[P, T]:
        @functools.wraps(afunc)
        def twin(*args: P.args, **kwargs: P.kwargs) -> T:
            return run_sync(lambda: afunc(*args, **kwargs))

        twin.__name__, twin.__qualname__ = stub.__name__, stub.__qualname__
        twin.__doc__ = stub.__doc__
        return twin

    return twin_of


def _empty_outcome() -> OnlineOutcome:
    return OnlineOutcome(
        ranked=pl.DataFrame(schema=RANKED_WITH_ROW), failed=pl.DataFrame(schema=FAILED_WITH_ROW)
    )


def _split_for_batch(pairs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pairs with a zip go to batch; the others (no zip: not in the batch file) stay online."""
    has_zip = pl.col("zip").is_not_null()
    return pairs.filter(~has_zip), pairs.filter(has_zip)


def _hand_over(
    batch: BatchOutcome, online_pairs: pl.DataFrame, pairs: pl.DataFrame
) -> tuple[BatchOutcome, pl.DataFrame]:
    """Split the batch ranks: final ones, and pre-ranked pairs of vehicles to complete online.

    Batch ranks order the dealers of a VIN across all its rows; they are renumbered 1..N per
    vehicle (``vin``, ``price``, ``miles``), which keeps their (exact) order. The pre-ranked
    pairs carry their input columns and ``_row`` (from ``pairs``), the batch scores and rank,
    and the rooftop id the batch resolved (``answered_mc_location_id``), as
    :func:`~mm_pipeline._online._run.rank_online` takes them.
    """
    keys = list(GROUP_KEYS["dealers"])
    ranked = batch.ranked.with_columns(
        pl.col("vin_rank").rank("ordinal").over(keys).cast(pl.UInt32)
    )
    completed_online = online_pairs.select(keys).unique()
    hybrid = ranked.join(completed_online, on=keys, how="semi")
    preranked = pairs.join(
        hybrid.select(
            ROW,
            "vin_rank",
            "vin_score",
            "dealer_ymm_score",
            pl.col("mc_location_id").alias("answered_mc_location_id"),
        ),
        on=ROW,
    )
    final = ranked.join(completed_online, on=keys, how="anti")
    return dataclasses.replace(batch, ranked=final), preranked


def _online_requests(
    online_pairs: pl.DataFrame, preranked: pl.DataFrame, *, chunk_size: int, exact_top_k: int
) -> int:
    """Count the requests of an error-free online part (groups merged with pre-ranked pairs)."""
    return sum(
        merge_rounds(online_pairs, preranked, chunk_size=chunk_size, exact_top_k=exact_top_k)
    )


def _batch_options(options: RankOptions) -> BatchOptions:
    cache_dir = options.cache_dir
    return BatchOptions(
        client_reference=options.client_reference,
        webhook_url=options.webhook_url,
        webhook_secret=options.webhook_secret,
        poll_timeout=options.poll_timeout,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        on_job_failed=options.on_job_failed,
    )


async def _run_batch(
    pairs: pl.DataFrame,
    *,
    session: Session,
    progress: bool | None,
    options: RankOptions,
) -> BatchOutcome:
    return await rank_pairs_batch(
        pairs, session=session, options=_batch_options(options), progress=progress
    )


async def _arank_to_parquet(
    pairs: Frame, *, options: RankOptions, output: Path
) -> RankResult[pl.LazyFrame]:
    """``rank_dealers(..., output=...)``: the batch route over VIN buckets, Parquet out.

    ``mode="auto"`` takes it when the online route would need more than
    :data:`BATCH_THRESHOLD_REQUESTS` requests, estimated as one per ``chunk_size`` rows (no
    plan is made: that would collect the input); otherwise the in-memory route runs and its
    frames are written to the same files.
    """
    started = time.monotonic()
    mode = options.mode
    if mode not in ("online", "batch", "auto"):
        raise ValueError(f"mode must be 'online', 'batch' or 'auto', got {mode!r}")
    chunk_size, exact_top_k = resolve_sizes(
        "dealers", chunk_size=options.chunk_size, exact_top_k=options.exact_top_k
    )
    max_requests = _checked_budget(options.max_requests)
    rows: int | None = None
    if mode == "auto":
        counted: int = await asyncio.to_thread(
            lambda: pairs.lazy().select(pl.len()).collect(engine="streaming").item()
        )
        mode = "batch" if -(-counted // chunk_size) > BATCH_THRESHOLD_REQUESTS else "online"
        rows = counted
    if mode == "online":
        online = dataclasses.replace(options, mode="online", output=None)
        in_memory = await _arank(pairs, endpoint="dealers", options=online)
        await asyncio.to_thread(_write_output, in_memory, output)
        return _lazy_result(in_memory.stats, output)
    client = options.client or MarketMatchClient()
    async with client.session() as session:
        session.max_requests = max_requests  # no plan here: checked as requests are sent
        outcome = await rank_to_parquet(
            pairs,
            output=output,
            session=session,
            options=_batch_options(options),
            on_invalid=options.on_invalid,
            progress=options.progress,
            rows=rows,
        )
        http = session.stats
    stats = _large_stats(
        outcome,
        requests=(http.requests, http.retries, http.rate_limited),
        sizes=(chunk_size, exact_top_k),
        started=started,
    )
    return _lazy_result(stats, output)


def _write_output(result: RankResult, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    result.ranked.write_parquet(output / "ranked.parquet")
    result.failed.write_parquet(output / "failed.parquet")


def _lazy_result(stats: RankStats, output: Path) -> RankResult[pl.LazyFrame]:
    return RankResult(
        ranked=pl.scan_parquet(output / "ranked.parquet"),
        failed=pl.scan_parquet(output / "failed.parquet"),
        stats=stats,
        output=output,
    )


def _large_stats(
    outcome: LargeOutcome,
    *,
    requests: tuple[int, int, int],
    sizes: tuple[int, int],
    started: float,
) -> RankStats:
    counts = outcome.counts
    return RankStats(
        endpoint="dealers",
        mode="batch",
        rows=counts.rows,
        invalid_rows=counts.invalid_rows,
        duplicates_removed=counts.duplicates_removed,
        conflicts=counts.conflicts,
        pairs=counts.pairs,
        groups=counts.groups,
        ranked=parquet_rows(outcome.ranked),
        failed=parquet_rows(outcome.failed),
        requests=requests[0],
        retries=requests[1],
        rate_limited=requests[2],
        chunk_size=sizes[0],
        exact_top_k=sizes[1],
        elapsed=time.monotonic() - started,
        batch_job_ids=outcome.job_ids,
    )


def _in_group_order(ranked: pl.DataFrame, endpoint: Endpoint) -> pl.DataFrame:
    keys = list(GROUP_KEYS[endpoint])
    first = ranked.group_by(keys).agg(pl.col(ROW).min().alias("_group"))
    return (
        ranked.join(first, on=keys, how="left", nulls_equal=True)
        .sort("_group", "vin_rank")
        .drop("_group")
    )


def _checked_budget(max_requests: int | None) -> int | None:
    """Return ``max_requests`` if it is ``None`` or a non-negative integer; else raise."""
    if max_requests is not None and (
        isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 0
    ):
        raise ValueError(f"max_requests must be a non-negative integer, got {max_requests!r}")
    return max_requests


def _check_budget(plan: Plan, max_requests: int | None) -> None:
    """Refuse, before anything is sent, a plan that needs more than ``max_requests``."""
    if max_requests is None:
        return
    needed = plan.requests_at_least
    if needed <= max_requests:
        return
    if plan.route == "batch" and plan.batch is not None:
        figures = (
            f"the batch route needs at least {needed:,} requests ({plan.batch.jobs:,} job(s): "
            f"listing, upload, at least one poll and download each; "
            f"{plan.batch.merge_requests:,} online merge request(s))"
        )
    else:
        figures = (
            f"the online route needs {needed:,} requests for {plan.pairs:,} pairs in "
            f"{plan.groups:,} groups ({' + '.join(map(str, plan.requests_per_round))} by round)"
        )
    raise BudgetExceededError(
        f"max_requests={max_requests:,} is too low: {figures}; nothing was sent. Raise "
        "max_requests, or see mm.plan(...) for the cost of each route",
        max_requests=max_requests,
        planned=needed,
    )


def _open_answers(session: Session, options: RankOptions) -> bool:
    """Turn on the answer cache when ``cache_dir`` is given; tell whether it may hold answers."""
    if options.cache_dir is None:
        return False
    session.use_answer_cache(Path(options.cache_dir), ttl=parse_ttl(options.cache_ttl))
    return session.answers is not None and session.answers.may_hold_answers()


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
    max_requests = _checked_budget(options.max_requests)
    parse_ttl(options.cache_ttl)  # a bad ttl is refused before any work
    prepared = prepare(pairs, endpoint=endpoint, on_invalid=options.on_invalid)
    plan = plan_prepared(
        prepared.pairs, endpoint=endpoint, chunk_size=chunk_size, exact_top_k=exact_top_k
    )
    plan = with_route(plan, prepared.pairs, mode=mode)
    online_pairs, batch_pairs = prepared.pairs, prepared.pairs.clear()
    if plan.route == "batch":
        online_pairs, batch_pairs = _split_for_batch(prepared.pairs)
    client = options.client or MarketMatchClient()
    progress = options.progress
    online = _empty_outcome()
    batch: BatchOutcome | None = None
    preranked: pl.DataFrame | None = None
    planned = plan.online_requests
    async with client.session() as session:
        if not _open_answers(session, options):  # cached answers are free: checked as sent
            _check_budget(plan, max_requests)
        session.max_requests = max_requests
        try:
            if batch_pairs.height:
                batch = await _run_batch(
                    batch_pairs, session=session, progress=progress, options=options
                )
                batch, preranked = _hand_over(batch, online_pairs, prepared.pairs)
                planned = _online_requests(
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
    return _result(
        prepared,
        online,
        batch,
        endpoint=endpoint,
        plan=plan,
        requests=(http.requests, http.retries, http.rate_limited, http.cached_answers),
        started=started,
    )


def _result(
    prepared: Prepared,
    online: OnlineOutcome,
    batch: BatchOutcome | None,
    *,
    endpoint: Endpoint,
    plan: Plan,
    requests: tuple[int, int, int, int],
    started: float,
) -> RankResult:
    ranked_parts = [online.ranked.select(*RANKED_SCHEMA.names(), ROW)]
    failed_parts = [prepared.failed, online.failed.select(*FAILED_SCHEMA.names(), ROW)]
    if batch is not None:
        ranked_parts.append(batch.ranked.select(*RANKED_SCHEMA.names(), ROW))
        failed_parts.append(batch.failed.select(*FAILED_SCHEMA.names(), ROW))
    ranked = pl.concat(ranked_parts)
    if batch is not None:
        ranked = _in_group_order(ranked, endpoint)
    failed = pl.concat(failed_parts).sort(ROW, maintain_order=True)
    sent_online = online.ranked.height + online.failed.height > 0
    mode = "batch" if batch is not None else "online"
    if batch is not None and sent_online:
        mode = "online+batch"
    stats = RankStats(
        endpoint=endpoint,
        mode=mode,
        rows=prepared.rows,
        invalid_rows=prepared.invalid_rows,
        duplicates_removed=prepared.duplicates_removed,
        conflicts=prepared.conflicts
        + (batch.counts.duplicate_vin_dealer_rows if batch is not None else 0),
        pairs=prepared.pairs.height,
        groups=plan.groups,
        ranked=ranked.height,
        failed=failed.height,
        requests=requests[0],
        retries=requests[1],
        rate_limited=requests[2],
        cached_answers=requests[3],
        rerank_rounds=online.counters.rerank_rounds,
        rerank_requests=online.counters.rerank_requests,
        merge_requests=online.counters.merge_requests,
        resent_after_422=online.counters.resent_after_422,
        consistency_violations=online.counters.consistency_violations,
        lost_candidates=online.counters.lost_candidates,
        refused_answers=online.counters.refused_answers,
        reasks=online.counters.reasks,
        unmatched_answers=online.counters.unmatched_answers,
        chunk_size=plan.chunk_size,
        exact_top_k=plan.exact_top_k,
        elapsed=time.monotonic() - started,
        batch_job_ids=batch.job_ids if batch is not None else (),
    )
    return RankResult(
        ranked=ranked.drop(ROW).cast(RANKED_SCHEMA),
        failed=failed.drop(ROW).cast(FAILED_SCHEMA),
        stats=stats,
    )


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
        return await _arank_to_parquet(pairs, options=options, output=Path(output))
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
@_sync_twin(cast("Callable[..., Coroutine[Any, Any, RankResult[Any]]]", arank_dealers))
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


@_sync_twin(arank_vins)
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


@overload
def cross_pairs(vehicles: pl.DataFrame, dealers: pl.DataFrame) -> pl.DataFrame: ...
@overload
def cross_pairs(vehicles: pl.LazyFrame, dealers: Frame) -> pl.LazyFrame: ...
@overload
def cross_pairs(vehicles: Frame, dealers: pl.LazyFrame) -> pl.LazyFrame: ...
def cross_pairs(vehicles: Frame, dealers: Frame) -> Frame:
    """Pair every vehicle with every dealer (a cross join), as a pairs frame.

    Parameters
    ----------
    vehicles
        ``vin``, ``price``, ``miles`` (other columns are ignored).
    dealers
        ``source`` and optional ``zip``, ``mc_location_id`` (other columns are ignored).

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        The six pair columns, vehicle by vehicle; lazy if either input is lazy.

    Examples
    --------
    >>> import polars as pl
    >>> vehicles = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000]})
    >>> dealers = pl.DataFrame({"source": ["a.com", "b.com"], "zip": ["30907", None]})
    >>> cross_pairs(vehicles, dealers).columns
    ['vin', 'price', 'miles', 'source', 'zip', 'mc_location_id']
    >>> cross_pairs(vehicles, dealers).height
    2
    """
    lazy = isinstance(vehicles, pl.LazyFrame) or isinstance(dealers, pl.LazyFrame)
    parts = []
    for name, frame, required in (
        ("vehicles", vehicles, ("vin", "price", "miles")),
        ("dealers", dealers, ("source",)),
    ):
        columns = frame.collect_schema().names()
        missing = [column for column in required if column not in columns]
        if missing:
            raise InvalidInputError(
                f"{name} is missing column(s) {', '.join(missing)}; got {', '.join(columns)}"
            )
        parts.append((frame.lazy(), columns))
    (vehicle_frame, _), (dealer_frame, dealer_columns) = parts
    dealer_frame = dealer_frame.select(
        "source",
        *(
            pl.col(c) if c in dealer_columns else pl.lit(None, pl.String).alias(c)
            for c in ("zip", "mc_location_id")
        ),
    )
    joined = vehicle_frame.select("vin", "price", "miles").join(dealer_frame, how="cross")
    joined = joined.select(PAIR_COLUMNS)
    return joined if lazy else joined.collect()
