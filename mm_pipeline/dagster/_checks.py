"""Asset checks of the ranking assets, evaluated on the frames the asset has just produced.

Each ranking asset declares these checks with ``check_specs=`` and yields their results right
after its outputs: a plain ``@asset_check`` on a partitioned asset would load every partition.
The result frames may be LazyFrames (a ranking with ``output=``, larger than memory): each check
is a lazy aggregate (a count, the first offending rows), never a collect of a whole frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from dagster import AssetCheckResult, AssetCheckSpec, AssetKey, MetadataValue

from mm_pipeline.dagster._metadata import Frame, count_rows, preview

__all__ = ["RANKING_CHECKS", "SCORE_RANGE", "ranking_check_results", "ranking_check_specs"]

SCORE_RANGE = (400.0, 3000.0)
"""The published range of ``vin_score`` and ``dealer_ymm_score``."""

RANKING_CHECKS = {
    "inputs_valid": "Every input row passed validation (mm.schemas.PairsInput): no invalid_input.",
    "complete": "Ranked + failed rows equal the distinct input pairs: nothing lost, nothing twice.",
    "failure_rate": "Failed pairs / distinct input pairs is at most the asset's max_failure_rate.",
    "scores_in_range": "vin_score and dealer_ymm_score lie within the published 400-3000.",
    "ranks_contiguous": "Within every group, vin_rank runs 1..N without gaps or repeats.",
}
"""Check name -> what it asserts (the same five on placement and sourcing)."""

_SHOWN_GROUPS = 10


def ranking_check_specs(asset: AssetKey | str) -> list[AssetCheckSpec]:
    """Declare the :data:`RANKING_CHECKS` on ``asset``.

    Examples
    --------
    >>> [spec.name for spec in ranking_check_specs("placement")][:2]
    ['inputs_valid', 'complete']
    """
    return [
        AssetCheckSpec(name, asset=asset, description=description)
        for name, description in RANKING_CHECKS.items()
    ]


def ranking_check_results(
    asset: AssetKey | str,
    *,
    distinct_pairs: int,
    ranked: Frame,
    failed: Frame,
    group_by: Sequence[str],
    max_failure_rate: float,
) -> list[AssetCheckResult]:
    """Evaluate the :data:`RANKING_CHECKS` of ``asset`` on one ranking result.

    Parameters
    ----------
    asset
        The asset key the checks belong to.
    distinct_pairs
        Distinct input pairs the ranking was given.
    ranked, failed
        The result frames (``mm.schemas.RankedMatch`` / ``mm.schemas.FailedMatch``), in memory
        or lazy (only counts and the first offending rows are collected).
    group_by
        Columns that identify a ranking group (a vehicle for placement, a rooftop for sourcing).
    max_failure_rate
        The largest acceptable ``failed / distinct_pairs``.

    Returns
    -------
    list[AssetCheckResult]
        One result per check, in :data:`RANKING_CHECKS` order, with the offending rows (first
        ones) in the metadata of a failed check.
    """
    ranked, failed = ranked.lazy(), failed.lazy()
    keys = list(group_by)
    invalid = failed.filter(pl.col("error_code") == "invalid_input")
    ranked_rows, failed_rows = count_rows(ranked), count_rows(failed)
    accounted = ranked_rows + failed_rows
    rate = failed_rows / distinct_pairs if distinct_pairs else 0.0
    low, high = SCORE_RANGE
    out_of_range = ranked.filter(
        ~pl.col("vin_score").is_between(low, high)
        | ~pl.col("dealer_ymm_score").is_between(low, high)
    )
    # Ranks 1..N without gaps or repeats <=> min 1, max N and N distinct ranks (N rows).
    rank = pl.col("vin_rank")
    per_group = ranked.group_by(keys).agg(
        contiguous=(rank.min() == 1) & (rank.max() == pl.len()) & (rank.n_unique() == pl.len())
    )
    broken = per_group.filter(~pl.col("contiguous")).select(keys)
    broken_groups = count_rows(broken)
    broken_shown = (
        ranked.join(broken.sort(keys).head(_SHOWN_GROUPS), on=keys, how="semi", nulls_equal=True)
        .group_by(keys)
        .agg(ranks=rank.sort())
        .sort(keys)
    )

    def result(name: str, passed: bool, **metadata: Any) -> AssetCheckResult:
        return AssetCheckResult(
            asset_key=asset, check_name=name, passed=passed, metadata=dict(metadata)
        )

    def offenders(key: str, frame: pl.LazyFrame, rows: int) -> dict[str, Any]:
        return {key: preview(frame)} if rows else {}

    invalid_rows, rows_out_of_range = count_rows(invalid), count_rows(out_of_range)
    return [
        result(
            "inputs_valid",
            not invalid_rows,
            invalid_rows=invalid_rows,
            **offenders("invalid_preview", invalid, invalid_rows),
        ),
        result(
            "complete",
            accounted == distinct_pairs,
            distinct_input_pairs=distinct_pairs,
            ranked=ranked_rows,
            failed=failed_rows,
        ),
        result(
            "failure_rate",
            rate <= max_failure_rate,
            failure_rate=MetadataValue.float(round(rate, 6)),
            max_failure_rate=MetadataValue.float(max_failure_rate),
        ),
        result(
            "scores_in_range",
            not rows_out_of_range,
            rows_out_of_range=rows_out_of_range,
            **offenders("out_of_range_preview", out_of_range, rows_out_of_range),
        ),
        result(
            "ranks_contiguous",
            not broken_groups,
            groups=count_rows(per_group),
            broken_groups=broken_groups,
            **offenders("broken_preview", broken_shown, broken_groups),
        ),
    ]
