"""Each ranking check fails on the defect it exists to catch, and names the offending rows."""

from __future__ import annotations

import polars as pl
import pytest
from dagster import AssetCheckResult

import mm_pipeline as mm
from mm_pipeline.dagster import RANKING_CHECKS, ranking_check_results, ranking_metadata

RANKED = pl.DataFrame(
    {
        "vin": ["V1", "V1", "V1", "V2"],
        "price": [100, 100, 100, 200],
        "miles": [1, 1, 1, 2],
        "source": ["a.com", "b.com", "c.com", "a.com"],
        "zip": ["00001", "00002", "00003", "00001"],
        "mc_location_id": [None, None, None, None],
        "vin_score": [900.0, 900.0, 900.0, 1200.5],
        "dealer_ymm_score": [400.0, 1500.0, 3000.0, 800.0],
        "vin_rank": pl.Series([1, 2, 3, 1], dtype=pl.UInt32),
        "rank_exact": [True] * 4,
    },
    schema_overrides={"mc_location_id": pl.String},
)
FAILED = RANKED.head(1).select(
    "vin", "price", "miles", "source", "zip", "mc_location_id",
    error_code=pl.lit("dealer_not_found"), error_message=pl.lit("not in the market"),
)  # fmt: skip
VEHICLE = ("vin", "price", "miles")


def _evaluate(
    ranked: pl.DataFrame | pl.LazyFrame = RANKED,
    failed: pl.DataFrame | pl.LazyFrame = FAILED,
    *,
    distinct_pairs: int = 5,
    max_failure_rate: float = 0.25,
) -> dict[str, AssetCheckResult]:
    results = ranking_check_results(
        "placement",
        distinct_pairs=distinct_pairs,
        ranked=ranked,
        failed=failed,
        group_by=VEHICLE,
        max_failure_rate=max_failure_rate,
    )
    return {r.check_name or "": r for r in results}


def test_a_sound_result_passes_every_check() -> None:
    """Contiguous ranks, scores at the published bounds, 1 of 5 failed under 25 %: all pass."""
    results = _evaluate()
    assert list(results) == list(RANKING_CHECKS)
    assert all(r.passed for r in results.values())


def test_a_gap_in_ranks_fails_and_shows_the_group() -> None:
    """A group ranked 1, 3 (no 2) fails ranks_contiguous with that vehicle in the preview."""
    gap = RANKED.with_columns(
        vin_rank=pl.when(pl.col("vin_rank") == 2).then(3).otherwise("vin_rank").cast(pl.UInt32)
    )
    outcome = _evaluate(gap)["ranks_contiguous"]
    assert not outcome.passed
    assert outcome.metadata["broken_groups"].value == 1
    assert "V1" in str(outcome.metadata["broken_preview"].value)


def test_a_score_outside_the_published_range_fails() -> None:
    """A dealer_ymm_score of 3000.01 fails scores_in_range."""
    high = RANKED.with_columns(dealer_ymm_score=pl.col("dealer_ymm_score") + 0.01)
    outcome = _evaluate(high)["scores_in_range"]
    assert not outcome.passed
    assert outcome.metadata["rows_out_of_range"].value == 1


@pytest.mark.parametrize("distinct_pairs", [4, 6])
def test_a_lost_or_extra_pair_fails_completeness(distinct_pairs: int) -> None:
    """Ranked + failed must equal the distinct input pairs exactly."""
    outcome = _evaluate(distinct_pairs=distinct_pairs)["complete"]
    assert not outcome.passed
    assert outcome.metadata["distinct_input_pairs"].value == distinct_pairs


def test_failure_rate_threshold_is_inclusive() -> None:
    """1 failed of 5 passes at max 0.2 and fails at max 0.19."""
    assert _evaluate(max_failure_rate=0.2)["failure_rate"].passed
    assert not _evaluate(max_failure_rate=0.19)["failure_rate"].passed


@pytest.mark.parametrize(
    "ranked",
    [
        RANKED,
        RANKED.with_columns(vin_rank=pl.Series([1, 3, 3, 1], dtype=pl.UInt32)),  # repeat + gap
        RANKED.with_columns(dealer_ymm_score=pl.col("dealer_ymm_score") * 2),  # out of range
    ],
)
def test_lazy_frames_give_what_data_frames_give(ranked: pl.DataFrame) -> None:
    """Checks, summary and metadata of a LazyFrame result (output=) equal the in-memory ones."""
    failed = pl.concat([FAILED, FAILED.with_columns(error_code=pl.lit("invalid_input"))])
    eager = _evaluate(ranked, failed)
    lazy = _evaluate(ranked.lazy(), failed.lazy())
    assert {n: (r.passed, r.metadata) for n, r in lazy.items()} == {
        n: (r.passed, r.metadata) for n, r in eager.items()
    }
    assert not eager["inputs_valid"].passed
    stats = mm.RankStats(endpoint="dealers", mode="online", ranked=4, failed=2)
    in_memory = ranking_metadata(mm.RankResult(ranked=ranked, failed=failed, stats=stats),
                                 group_by=VEHICLE)  # fmt: skip
    scanned = ranking_metadata(
        mm.RankResult(ranked=ranked.lazy(), failed=failed.lazy(), stats=stats), group_by=VEHICLE
    )
    assert scanned == in_memory
    assert "Rank 1 goes to 1 of the 3 candidates ranked." in in_memory["summary"].value
