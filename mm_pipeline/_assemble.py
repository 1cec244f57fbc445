"""A ranking call's result: the routes' ranked and failed frames, typed, and its stats."""

from __future__ import annotations

import time

import polars as pl

from mm_pipeline._batch._route import BatchOutcome
from mm_pipeline._frames import (
    FAILED_SCHEMA,
    FAILED_WITH_ROW,
    RANKED_SCHEMA,
    RANKED_WITH_ROW,
    ROW,
)
from mm_pipeline._normalize import Prepared
from mm_pipeline._online._record import OnlineOutcome
from mm_pipeline._plan import GROUP_KEYS, Endpoint, Plan
from mm_pipeline._result import RankResult, RankStats


def empty_outcome() -> OnlineOutcome:
    """Return an online outcome with nothing ranked and nothing failed."""
    return OnlineOutcome(
        ranked=pl.DataFrame(schema=RANKED_WITH_ROW), failed=pl.DataFrame(schema=FAILED_WITH_ROW)
    )


def _in_group_order(ranked: pl.DataFrame, endpoint: Endpoint) -> pl.DataFrame:
    keys = list(GROUP_KEYS[endpoint])
    first = ranked.group_by(keys).agg(pl.col(ROW).min().alias("_group"))
    return (
        ranked.join(first, on=keys, how="left", nulls_equal=True)
        .sort("_group", "vin_rank")
        .drop("_group")
    )


def assemble_result(
    prepared: Prepared,
    online: OnlineOutcome,
    batch: BatchOutcome | None,
    *,
    endpoint: Endpoint,
    plan: Plan,
    requests: tuple[int, int, int, int],
    started: float,
) -> RankResult:
    """One result from the invalid rows and the routes' outcomes: frames typed, stats counted."""
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
        **online.counters.stats(),
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
