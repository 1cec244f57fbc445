"""``rank_dealers(..., output=...)``: the batch route over VIN buckets, Parquet files out.

The result's frames are LazyFrames scanning ``ranked.parquet`` / ``failed.parquet`` in the
``output`` folder (the bucketed route itself: :mod:`mm_pipeline._batch._large`). As in the
in-memory route, pairs without a ``zip`` are ranked online, bucket by bucket, with the batch order
of their vehicles as one pre-ranked chunk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import polars as pl

from mm_pipeline import _options
from mm_pipeline._answer_cache import parse_ttl
from mm_pipeline._batch._large import LargeOutcome, rank_to_parquet
from mm_pipeline._batch._parquet import parquet_rows
from mm_pipeline._budget import checked_budget
from mm_pipeline._client import MarketMatchClient
from mm_pipeline._online._record import Counters
from mm_pipeline._online._run import OnlineOptions, rank_online
from mm_pipeline._options import Frame, RankOptions
from mm_pipeline._plan import BATCH_THRESHOLD_REQUESTS, resolve_sizes
from mm_pipeline._result import RankResult, RankStats
from mm_pipeline._session import Session


def open_answer_cache(session: Session, options: RankOptions) -> bool:
    """Turn on the answer cache when ``cache_dir`` is given; tell whether it may hold answers."""
    if options.cache_dir is None:
        return False
    session.use_answer_cache(Path(options.cache_dir), ttl=parse_ttl(options.cache_ttl))
    return session.answers is not None and session.answers.may_hold_answers()


async def arank_to_parquet(
    pairs: Frame,
    *,
    options: RankOptions,
    output: Path,
    in_memory: Callable[[Frame, RankOptions], Awaitable[RankResult]],
) -> RankResult[pl.LazyFrame]:
    """``rank_dealers(..., output=...)``: the batch route over VIN buckets, Parquet out.

    ``mode="auto"`` takes it when the online route would need more than
    :data:`BATCH_THRESHOLD_REQUESTS` requests, estimated as one per ``chunk_size`` rows (no
    plan is made: that would collect the input); otherwise the in-memory route runs and its
    frames are written to the same files (``in_memory``: the router's in-memory ranking of
    dealers, passed in: `_rank` imports this module, not the other way).
    """
    started = time.monotonic()
    mode = options.mode
    if mode not in ("online", "batch", "auto"):
        raise ValueError(f"mode must be 'online', 'batch' or 'auto', got {mode!r}")
    chunk_size, exact_top_k = resolve_sizes(
        "dealers", chunk_size=options.chunk_size, exact_top_k=options.exact_top_k
    )
    max_requests = checked_budget(options.max_requests)
    rows: int | None = None
    if mode == "auto":
        counted: int = await asyncio.to_thread(
            lambda: pairs.lazy().select(pl.len()).collect(engine="streaming").item()
        )
        mode = "batch" if -(-counted // chunk_size) > BATCH_THRESHOLD_REQUESTS else "online"
        rows = counted
    if mode == "online":
        online = dataclasses.replace(options, mode="online", output=None)
        ranked = await in_memory(pairs, online)
        await asyncio.to_thread(_write_output, ranked, output)
        return _lazy_result(ranked.stats, output)
    client = options.client or MarketMatchClient()
    online_options = OnlineOptions(
        endpoint="dealers",
        chunk_size=chunk_size,
        exact_top_k=exact_top_k,
        concurrency=2 * client.max_concurrency,
        on_request_failed=options.on_request_failed,
        progress=False,  # a bar per bucket would mislead; the batch jobs show theirs
    )
    counters = Counters()
    async with client.session() as session:
        session.max_requests = max_requests  # no plan here: checked as requests are sent
        open_answer_cache(session, options)

        async def complete_online(
            pairs: pl.DataFrame, preranked: pl.DataFrame
        ) -> tuple[pl.DataFrame, pl.DataFrame]:
            done = await rank_online(
                pairs, session=session, options=online_options, preranked=preranked
            )
            counters.add(done.counters)
            return done.ranked, done.failed

        outcome = await rank_to_parquet(
            pairs,
            output=output,
            session=session,
            options=_options.batch_options(options),
            on_invalid=options.on_invalid,
            progress=options.progress,
            complete_online=complete_online,
            rows=rows,
        )
        http = session.stats
    stats = _large_stats(
        outcome,
        counters,
        requests=(http.requests, http.retries, http.rate_limited, http.cached_answers),
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
    counters: Counters,
    *,
    requests: tuple[int, int, int, int],
    sizes: tuple[int, int],
    started: float,
) -> RankStats:
    counts = outcome.counts
    return RankStats(
        endpoint="dealers",
        mode=("online+batch" if outcome.job_ids else "online") if counts.online_rows else "batch",
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
        cached_answers=requests[3],
        **counters.stats(),
        chunk_size=sizes[0],
        exact_top_k=sizes[1],
        elapsed=time.monotonic() - started,
        batch_job_ids=outcome.job_ids,
    )
