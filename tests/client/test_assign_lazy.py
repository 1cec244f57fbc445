"""``mm.assign`` and ``mm.check_plan`` on a LazyFrame: the eager plan, never collected whole."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import mm_pipeline as mm
from tests._support.frames import many_ranked, ranked, sample_ranked
from tests.conftest import BOUND, refuse_large_collects

TWO_BY_TWO = ranked(
    ("V1", "a.com", 1, True),
    ("V1", "b.com", 2, True),
    ("V2", "a.com", 1, True),
    ("V2", "b.com", 2, True),
)
_TIMES = ("elapsed", "solve_seconds")


def assert_same_plan(lazy: mm.AssignResult, eager: mm.AssignResult) -> None:
    """Same rows, same order, same figures (but the timings)."""
    assert lazy.assigned.equals(eager.assigned)
    assert lazy.unassigned.equals(eager.unassigned)
    assert lazy.dealers.equals(eager.dealers)
    figures = {k: v for k, v in lazy.stats.as_dict().items() if k not in _TIMES}
    assert figures == {k: v for k, v in eager.stats.as_dict().items() if k not in _TIMES}


@pytest.fixture(scope="module")
def sample() -> tuple[pl.DataFrame, pl.DataFrame]:
    return sample_ranked(200)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_rank": 10},
        {"max_rank": 3, "cost": -pl.col("dealer_ymm_score")},
        # An aggregate means what it means over the whole frame, not over the candidates.
        {"cost": pl.col("dealer_ymm_score") / pl.col("dealer_ymm_score").max()},
    ],
    ids=["exact", "max_rank", "score", "aggregate"],
)
def test_a_lazy_frame_gives_the_eager_plan(
    sample: tuple[pl.DataFrame, pl.DataFrame], options: dict[str, object]
) -> None:
    """The sample data ranked, a third of dealers.csv's capacities (some dealers full): the same
    plan, unassigned, dealers and figures, and the checks pass on the lazy frame."""
    frame, full = sample
    dealers = full.with_columns(capacity=pl.col("capacity") // 3)
    eager = mm.assign(frame, capacity=dealers, **options)  # type: ignore[arg-type]
    lazy = mm.assign(frame.lazy(), capacity=dealers, **options)  # type: ignore[arg-type]
    assert_same_plan(lazy, eager)
    assert 0 < eager.stats.placed < eager.stats.vehicles
    assert all(mm.check_plan(lazy, frame.lazy(), dealers).values())


def test_a_lazy_frame_lists_every_vehicle_as_the_eager_one() -> None:
    """Placed, capacity, no_candidate, invalid (a cost, a key part missing, even off-list)."""
    frame = pl.concat(
        [
            ranked(("V1", "a.com", 1, True), ("V2", "a.com", 1, True)),
            ranked(("V3", "a.com", 1, False), ("V3", "b.com", 2, False)),
            ranked(("V4", "b.com", 1, True)).with_columns(vin_rank=pl.lit(None, pl.UInt32)),
            ranked(("V5", "c.com", 1, False)).with_columns(price=pl.lit(None, pl.Int64)),
            ranked(("V6", "c.com", 1, True)).with_columns(miles=pl.lit(None, pl.Int64)),
        ]
    )
    eager = mm.assign(frame, capacity=1)
    lazy = mm.assign(frame.lazy(), capacity=1)
    assert_same_plan(lazy, eager)
    reasons = dict(lazy.unassigned.select("vin", "reason").iter_rows())
    assert reasons == {
        "V2": "capacity",
        "V3": "no_candidate",
        "V4": "invalid",
        "V5": "invalid",
        "V6": "invalid",
    }
    assert lazy.assigned.columns == [*frame.columns, "placement_cost"]


@pytest.mark.parametrize(
    ("frame", "options", "expected"),
    [
        (TWO_BY_TWO.drop("rank_exact"), {}, r"missing column\(s\) rank_exact"),
        (TWO_BY_TWO.drop("vin_rank"), {"max_rank": 2}, r"missing column\(s\) vin_rank"),
        (TWO_BY_TWO.drop("source", "mc_location_id"), {}, "a dealer needs 'mc_location_id'"),
        (TWO_BY_TWO, {"cost": "nope"}, r"missing column\(s\) nope"),
        (TWO_BY_TWO, {"cost": pl.col("source")}, "cost .* cannot be read: conversion from"),
        (TWO_BY_TWO, {"cost": pl.col("nope") * 2}, "cost .* cannot be read: unable to find"),
        (TWO_BY_TWO, {"max_rank": 0}, "max_rank must be a positive int"),
        (TWO_BY_TWO, {"capacity": pl.DataFrame({"source": ["a.com"] * 2, "capacity": [1, 2]})},
         "name a dealer more than once"),
    ],
    ids=["columns", "max_rank-columns", "dealer", "cost-name", "cost-cast", "cost-column",
         "max_rank", "capacity"],
)  # fmt: skip
def test_a_lazy_frame_is_refused_as_the_eager_one(
    frame: pl.DataFrame, options: dict[str, object], expected: str
) -> None:
    """Bad input: the same InvalidInputError, eager or lazy."""
    options = {"capacity": 1, **options}
    for given in (frame, frame.lazy()):
        with pytest.raises(mm.InvalidInputError, match=expected):
            mm.assign(given, **options)  # type: ignore[arg-type]


def test_not_a_frame_is_refused() -> None:
    with pytest.raises(mm.InvalidInputError, match="DataFrame or LazyFrame; got dict"):
        mm.assign(TWO_BY_TWO.to_dict(), capacity=1)  # type: ignore[arg-type]


def test_a_lazy_ranking_is_collected_as_its_candidates_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan of 50,000 ranked pairs, 18,000 of them candidates: no collect past 40,000 rows,
    the eager plan all the same; with every pair a candidate (max_rank=25) the guard bites.

    2,000 vehicles x 25 dealers, an exact top 10 for all but the last 200 vehicles (which are
    listed as no_candidate): plan and checks read the candidates and the 2,000 vehicles.
    """
    frame = many_ranked(2_000, 25, exact=10)
    path = tmp_path / "ranked.parquet"
    frame.write_parquet(path, row_group_size=10_000)
    assert frame.height > BOUND > frame["rank_exact"].sum()
    eager = mm.assign(frame, capacity=60)
    assert eager.stats.no_candidate == 200
    assert eager.stats.over_capacity == 1_800 - 25 * 60
    heights = refuse_large_collects(monkeypatch)
    scan = pl.scan_parquet(path)
    lazy = mm.assign(scan, capacity=60)
    checks = mm.check_plan(lazy, scan, 60)
    assert heights
    assert max(heights) <= BOUND
    assert_same_plan(lazy, eager)
    assert dict(checks) == dict.fromkeys(checks, True)
    with pytest.raises(AssertionError, match=f"a LazyFrame of {frame.height} rows was collected"):
        mm.assign(scan, capacity=60, max_rank=25)
