"""The hybrid batch route of rank_dealers: pairs with a zip through batch jobs, the rest online.

The batch file has no ``mc_location_id`` column, so only pairs with a ``zip`` go through batch
jobs; a vehicle that also has dealers without a zip is completed online, its batch order handed
over as one pre-ranked chunk (see :mod:`mm_pipeline._rank`).
"""

from __future__ import annotations

import dataclasses

import polars as pl

from mm_pipeline import _options
from mm_pipeline._batch._handover import split_preranked
from mm_pipeline._batch._route import BatchOutcome, rank_pairs_batch
from mm_pipeline._options import RankOptions
from mm_pipeline._plan import merge_rounds
from mm_pipeline._session import Session


def split_for_batch(pairs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pairs with a zip go to batch; the others (no zip: not in the batch file) stay online."""
    has_zip = pl.col("zip").is_not_null()
    return pairs.filter(~has_zip), pairs.filter(has_zip)


def hand_over(
    batch: BatchOutcome, online_pairs: pl.DataFrame, pairs: pl.DataFrame
) -> tuple[BatchOutcome, pl.DataFrame]:
    """Split the batch ranks: final ones, and pre-ranked pairs of vehicles to complete online.

    See :func:`~mm_pipeline._batch._handover.split_preranked`.
    """
    final, preranked = split_preranked(batch.ranked, online_pairs, pairs)
    return dataclasses.replace(batch, ranked=final), preranked


def online_requests(
    online_pairs: pl.DataFrame, preranked: pl.DataFrame, *, chunk_size: int, exact_top_k: int
) -> int:
    """Count the requests of an error-free online part (groups merged with pre-ranked pairs)."""
    return sum(
        merge_rounds(online_pairs, preranked, chunk_size=chunk_size, exact_top_k=exact_top_k)
    )


async def run_batch(
    pairs: pl.DataFrame,
    *,
    session: Session,
    progress: bool | None,
    options: RankOptions,
) -> BatchOutcome:
    """Rank the pairs with a zip through batch jobs."""
    return await rank_pairs_batch(
        pairs, session=session, options=_options.batch_options(options), progress=progress
    )
