"""``mm.assign``: capacities, candidates, reasons, bad input, empty input, the namespace."""

from __future__ import annotations

import re
import sys

import polars as pl
import pytest

import mm_pipeline as mm
from tests._support.frames import ranked, sample_ranked

TWO_BY_TWO = ranked(
    ("V1", "a.com", 1, True),
    ("V1", "b.com", 2, True),
    ("V2", "a.com", 1, True),
    ("V2", "b.com", 2, True),
)


def test_capacity_frame_matches_by_id_then_zip_then_source_with_a_default() -> None:
    """Each way of naming a rooftop finds it; unlisted dealers take default_capacity."""
    frame = ranked(
        ("V1", "a.com", 1, True),
        ("V2", "b.com", 1, True),
        ("V3", "c.com", 1, True),
        ("V4", "d.com", 1, True),
    )
    capacity = pl.DataFrame(
        {
            "source": [None, "b.com", "c.com"],
            "zip": [None, "30907", None],
            "mc_location_id": ["A.COM", None, None],
            "capacity": [1, 1, 1],
        }
    )
    plan = mm.assign(frame, capacity=capacity)
    assert sorted(plan.assigned["vin"]) == ["V1", "V2", "V3"]
    assert plan.unassigned.select("vin", "reason").rows() == [("V4", "capacity")]
    assert mm.assign(frame, capacity=capacity, default_capacity=1).stats.placed == 4


def test_concentration_tells_apart_rooftops_without_a_zip() -> None:
    """Two rooftops of one website without a zip get two bars, labelled by their ids."""
    frame = ranked(("V1", "a.com", 1, True), ("V2", "a.com", 1, True)).with_columns(
        pl.lit(None, pl.String).alias("zip"), pl.Series("mc_location_id", ["loc-1", "loc-2"])
    )
    chart = mm.assign(frame, capacity=1).concentration()
    assert sorted(set(chart["dealer"])) == ["a.com loc-1", "a.com loc-2"]


def test_max_rank_widens_and_narrows_the_candidates() -> None:
    """By default only exact ranks are candidates; max_rank takes every rank up to it."""
    frame = ranked(
        ("V1", "a.com", 1, True),
        ("V1", "b.com", 2, False),
        ("V2", "a.com", 1, True),
        ("V2", "b.com", 2, False),
    )
    exact = mm.assign(frame, capacity=1)
    assert (exact.stats.placed, exact.stats.candidate_pairs) == (1, 2)
    assert exact.unassigned["reason"].to_list() == ["capacity"]
    wider = mm.assign(frame, capacity=1, max_rank=2)
    assert (wider.stats.placed, wider.stats.objective) == (2, 3.0)
    narrow = mm.assign(frame.with_columns(rank_exact=pl.lit(True)), capacity=1, max_rank=1)
    assert narrow.stats.candidate_pairs == 2
    assert narrow.stats.placed == 1


def test_cost_expression_maximises_a_score() -> None:
    """cost=-score places each vehicle where the score is highest, capacity permitting."""
    frame = TWO_BY_TWO.with_columns(dealer_ymm_score=pl.Series([900.0, 1200.0, 1000.0, 1050.0]))
    plan = mm.assign(frame, capacity=1, cost=-pl.col("dealer_ymm_score"))
    assert plan.assigned.select("vin", "source").rows() == [("V1", "b.com"), ("V2", "a.com")]
    assert plan.stats.objective == pytest.approx(-2200.0)
    assert plan.stats.bound <= plan.stats.objective
    assert plan.assigned["placement_cost"].to_list() == [-1200.0, -1000.0]


def test_every_vehicle_is_placed_or_unassigned_with_its_reason() -> None:
    """no_candidate (no exact rank), capacity (dealers full), invalid (a cost is missing)."""
    frame = pl.concat(
        [
            ranked(("V1", "a.com", 1, True), ("V2", "a.com", 1, True)),
            ranked(("V3", "a.com", 1, False)),
            ranked(("V4", "b.com", 1, True)).with_columns(vin_rank=pl.lit(None, pl.UInt32)),
        ]
    )
    plan = mm.assign(frame, capacity=1)
    assert plan.assigned["vin"].to_list() == ["V1"]
    reasons = dict(plan.unassigned.select("vin", "reason").iter_rows())
    assert reasons == {"V2": "capacity", "V3": "no_candidate", "V4": "invalid"}
    message = plan.unassigned.filter(pl.col("vin") == "V4")["message"].item()
    assert "cost is missing" in message
    assert (plan.stats.over_capacity, plan.stats.no_candidate, plan.stats.invalid) == (1, 1, 1)


@pytest.mark.parametrize(
    ("capacity", "expected"),
    [
        ({"source": ["a.com"], "capacity": [-1]}, "capacity is negative"),
        ({"source": ["a.com"], "capacity": [None]}, "capacity is missing"),
        ({"source": ["a.com"], "capacity": [1.5]}, "capacity is not an integer"),
        ({"source": ["a.com"], "capacity": [float("inf")]}, "capacity is not an integer"),
        ({"source": ["a.com"], "capacity": [float("nan")]}, "capacity is missing"),
        ({"source": ["a.com", "a.com"], "capacity": [1, 2]}, "name a dealer more than once"),
        ({"source": [None], "capacity": [1]}, "names no dealer"),
        ({"source": ["a.com"], "capacity": ["3"]}, "column 'capacity' is String"),
        ({"source": ["a.com"]}, "needs a 'capacity' column"),
    ],
)
def test_bad_capacities_are_named(capacity: dict[str, list[object]], expected: str) -> None:
    """Negative, null, fractional, duplicate or unnamed capacities: a clear error."""
    with pytest.raises(mm.InvalidInputError, match=expected) as caught:
        mm.assign(TWO_BY_TWO, capacity=pl.DataFrame(capacity, strict=False))
    if "row" in str(caught.value):
        assert "'row': 0" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"capacity": -1}, "capacity must be non-negative"),
        ({"capacity": True}, "capacity must be a non-negative int"),
        ({"capacity": "3"}, "capacity must be a non-negative int or a frame"),
        ({"capacity": 1, "default_capacity": 1.5}, "default_capacity must be a non-negative int"),
        ({"capacity": 1, "default_capacity": -2}, "default_capacity must be non-negative"),
        ({"capacity": 1, "max_rank": 0}, "max_rank must be a positive int"),
        ({"capacity": 1, "cost": "nope"}, "missing column.*nope"),
        ({"capacity": 1, "cost": pl.col("source")}, "cost .* cannot be read"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], expected: str) -> None:
    """Bad scalar capacities, max_rank and costs are InvalidInputErrors, never crashes."""
    with pytest.raises(mm.InvalidInputError, match=expected):
        mm.assign(TWO_BY_TWO, **options)  # type: ignore[arg-type]


def test_missing_columns_are_named() -> None:
    """A frame without the ranking's columns is refused with the missing names."""
    with pytest.raises(mm.InvalidInputError, match=r"missing column.*rank_exact"):
        mm.assign(TWO_BY_TWO.drop("rank_exact"), capacity=1)


def test_empty_inputs_give_an_empty_plan() -> None:
    """No rows: nothing placed, nothing unassigned, status EMPTY; no candidates: all listed."""
    no_rows = pl.DataFrame(schema={"source": pl.String, "capacity": pl.Int64})
    empty = mm.assign(TWO_BY_TWO.clear(), capacity=no_rows)
    assert (empty.assigned.height, empty.unassigned.height) == (0, 0)
    assert (empty.stats.status, empty.stats.optimal, empty.stats.placed_share) == (
        "EMPTY",
        True,
        1.0,
    )
    assert empty.assigned.columns == [*TWO_BY_TWO.columns, "placement_cost"]
    inexact = mm.assign(TWO_BY_TWO.with_columns(rank_exact=pl.lit(False)), capacity=3)
    assert inexact.unassigned["reason"].to_list() == ["no_candidate", "no_candidate"]
    assert inexact.stats.status == "EMPTY"


def test_namespace_on_eager_and_lazy_frames() -> None:
    """ranked.marketmatch.assign(...) equals mm.assign(ranked, ...), also on a LazyFrame."""
    direct = mm.assign(TWO_BY_TWO, capacity=1)
    for frame in (TWO_BY_TWO, TWO_BY_TWO.lazy()):
        plan = frame.marketmatch.assign(capacity=1)  # type: ignore[union-attr]
        assert plan.assigned.equals(direct.assigned)
        assert plan.stats.objective == direct.stats.objective


def test_check_plan_catches_a_tampered_plan() -> None:
    """check_plan recomputes from the frames: a plan over capacity or off-list fails it."""
    plan = mm.assign(TWO_BY_TWO, capacity=1)
    assert all(mm.check_plan(plan, TWO_BY_TWO, 1).values())
    crowded = pl.concat([plan.assigned, plan.assigned.with_columns(vin=pl.lit("V2"))]).head(2)
    crowded = crowded.with_columns(source=pl.lit("a.com"), mc_location_id=pl.lit("A.COM"))
    tampered = mm.check_plan(
        mm.AssignResult(
            assigned=crowded, unassigned=plan.unassigned, dealers=plan.dealers, stats=plan.stats
        ),
        TWO_BY_TWO,
        1,
    )
    assert not tampered["no_dealer_over_capacity"]
    offlist = plan.assigned.with_columns(source=pl.lit("z.com"), mc_location_id=pl.lit("Z"))
    assert not mm.check_plan(
        mm.AssignResult(
            assigned=offlist, unassigned=plan.unassigned, dealers=plan.dealers, stats=plan.stats
        ),
        TWO_BY_TWO,
        1,
    )["every_placement_a_candidate_pair"]


def test_sample_data_plan_spreads_the_rank_one_concentration() -> None:
    """The demo's shape: sample vehicles x every sample dealer with a ZIP, ranked by the sandbox
    model (exact top 10), dealers.csv's capacities. The plan respects capacity, does not lose to
    greedy and spreads the rank-1 concentration."""
    frame, dealers = sample_ranked(200)
    plan = mm.assign(frame, capacity=dealers, max_rank=10)
    assert all(mm.check_plan(plan, frame, dealers).values())
    s = plan.stats
    assert s.placed >= s.greedy_placed
    assert s.objective <= s.greedy_objective or s.placed > s.greedy_placed
    assert s.largest_share < s.first_choice_largest_share / 2
    assert plan.dealers.filter(pl.col("placed") > pl.col("capacity")).is_empty()
    text = repr(plan)
    assert text.startswith("AssignResult(cost='vin_rank', max_rank=10")
    assert f"placed:    {s.placed:,} of {s.vehicles:,} vehicles" in text
    assert "<table>" in plan._repr_html_()
    chart = plan.concentration(top=5)
    assert chart["placement"].unique().sort().to_list() == ["first choice", "plan"]
    assert chart.height == 10


def test_without_ortools_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OR-Tools: ImportError saying which extra to install (before any solving)."""
    monkeypatch.setitem(sys.modules, "ortools.graph.python", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'mm-pipeline[assign]'")):
        mm.assign(TWO_BY_TWO, capacity=1)
