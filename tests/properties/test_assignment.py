"""Property tests of ``mm.assign`` on random small instances.

Each instance is a ranked frame of a few vehicles and dealers (random candidate lists, ranks
and exactness, random capacities, a few dealers unlisted in the capacity frame). The plan must
be feasible (no dealer over capacity, one dealer per vehicle, only candidate pairs, every
vehicle accounted for once) and optimal: its (placed, total cost) equals that of a brute-force
search over every possible plan, an exact method that shares no code with the solver.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mm_pipeline as mm
from mm_pipeline._frames import RANKED_SCHEMA

SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
DEALERS = [("a.com", "30907", "A1"), ("b.com", "10001", None), ("c.com", "02134", "C3")]


@dataclass(frozen=True)
class Instance:
    ranked: pl.DataFrame
    capacity: pl.DataFrame
    default_capacity: int
    max_rank: int | None


@st.composite
def instances(draw: st.DrawFn) -> Instance:
    """A ranked frame of 1-5 vehicles x a subset of 3 dealers, and capacities for some."""
    vehicles = draw(st.integers(1, 5))
    rows = []
    for v in range(vehicles):
        chosen = draw(st.lists(st.sampled_from(range(len(DEALERS))), unique=True, max_size=3))
        exact = draw(st.integers(0, len(chosen)))  # ranks 1..exact are exact, as in a ranking
        for rank, d in enumerate(chosen, start=1):
            source, zip_code, location = DEALERS[d]
            score = draw(st.floats(400, 3000, allow_nan=False).map(lambda x: round(x, 2)))
            rows.append(
                (
                    f"V{v}",
                    9000 + v,
                    10 * v,
                    source,
                    zip_code,
                    location,
                    1e3,
                    score,
                    rank,
                    rank <= exact,
                )
            )
    ranked = pl.DataFrame(
        rows,
        schema=RANKED_SCHEMA,
        orient="row",
    )
    listed = draw(st.lists(st.sampled_from(range(len(DEALERS))), unique=True))
    capacity = pl.DataFrame(
        {
            "source": [DEALERS[d][0] for d in listed],
            "zip": [DEALERS[d][1] for d in listed],
            "capacity": [draw(st.integers(0, 2)) for _ in listed],
        },
        schema={"source": pl.String, "zip": pl.String, "capacity": pl.Int64},
    )
    return Instance(
        ranked=ranked,
        capacity=capacity,
        default_capacity=draw(st.integers(0, 2)),
        max_rank=draw(st.one_of(st.none(), st.integers(1, 3))),
    )


def _capacities(instance: Instance) -> dict[str, int]:
    listed = dict(zip(instance.capacity["source"], instance.capacity["capacity"], strict=True))
    return {source: listed.get(source, instance.default_capacity) for source, _, _ in DEALERS}


def _candidates(instance: Instance) -> dict[str, dict[str, float]]:
    """Vehicle -> {dealer source: cost} under the instance's candidate rule and cost."""
    out: dict[str, dict[str, float]] = {}
    for row in instance.ranked.iter_rows(named=True):
        out.setdefault(row["vin"], {})
        ok = (
            row["rank_exact"] if instance.max_rank is None else row["vin_rank"] <= instance.max_rank
        )
        if ok:
            out[row["vin"]][row["source"]] = -row["dealer_ymm_score"]
    return out


def _brute_force(instance: Instance, cost: str) -> tuple[int, float]:
    """The best (placed, total cost) over every plan, by enumeration."""
    candidates = _candidates(instance)
    room = _capacities(instance)
    vins = sorted(candidates)
    best = (0, 0.0)
    for choice in itertools.product(*[[None, *sorted(candidates[v])] for v in vins]):
        used = [d for d in choice if d is not None]
        if any(used.count(d) > room[d] for d in set(used)):
            continue
        if cost == "vin_rank":
            ranks = {
                (r["vin"], r["source"]): r["vin_rank"]
                for r in instance.ranked.iter_rows(named=True)
            }
            total = float(sum(ranks[(v, d)] for v, d in zip(vins, choice, strict=True) if d))
        else:
            total = sum(candidates[v][d] for v, d in zip(vins, choice, strict=True) if d)
        if (len(used), -total) > (best[0], -best[1]):
            best = (len(used), total)
    return best


def _plan(instance: Instance, **options: object) -> mm.AssignResult:
    return mm.assign(
        instance.ranked,
        capacity=instance.capacity,
        default_capacity=instance.default_capacity,
        max_rank=instance.max_rank,
        **options,  # type: ignore[arg-type]
    )


def _check_feasible(instance: Instance, plan: mm.AssignResult) -> None:
    checks = mm.check_plan(
        plan, instance.ranked, instance.capacity, default_capacity=instance.default_capacity
    )
    assert all(checks.values()), checks
    room = _capacities(instance)
    for source, placed in plan.assigned.group_by("source").len().iter_rows():
        assert placed <= room[source]
    candidates = _candidates(instance)
    for vin, source in plan.assigned.select("vin", "source").iter_rows():
        assert source in candidates[vin]
    accounted = sorted([*plan.assigned["vin"], *plan.unassigned["vin"]])
    assert accounted == sorted(candidates)
    for vin, reason in plan.unassigned.select("vin", "reason").iter_rows():
        assert reason == ("capacity" if candidates[vin] else "no_candidate")


@SETTINGS
@given(instances())
def test_plan_is_feasible_and_optimal_by_rank(instance: Instance) -> None:
    """Default cost: as many placed as any plan can, at the least total vin_rank, proven."""
    plan = _plan(instance)
    _check_feasible(instance, plan)
    placed, total = _brute_force(instance, "vin_rank")
    assert (plan.stats.placed, plan.stats.objective) == (placed, total)
    assert plan.stats.bound == plan.stats.objective
    assert plan.stats.optimal
    assert plan.stats.greedy_placed <= placed
    if plan.stats.greedy_placed == placed:
        assert plan.stats.greedy_objective >= total


@SETTINGS
@given(instances())
def test_plan_is_optimal_for_a_float_score_to_maximise(instance: Instance) -> None:
    """A negated float score: optimal up to the rounding the bound accounts for."""
    plan = _plan(instance, cost=-pl.col("dealer_ymm_score"))
    _check_feasible(instance, plan)
    placed, total = _brute_force(instance, "score")
    assert plan.stats.placed == placed
    assert abs(plan.stats.objective - total) <= 1e-6 * max(1.0, abs(total))
    assert plan.stats.bound <= total + 1e-9
    assert plan.stats.objective - plan.stats.bound <= 1e-5 * max(1.0, abs(total))


@SETTINGS
@given(instances(), st.integers(0, 2**31))
def test_row_order_does_not_change_the_plan(instance: Instance, seed: int) -> None:
    """The same rows in another order give the same placements (deterministic ties)."""
    shuffled = instance.ranked.sample(fraction=1.0, shuffle=True, seed=seed)
    first, second = (
        mm.assign(frame, capacity=instance.capacity, default_capacity=instance.default_capacity)
        for frame in (instance.ranked, shuffled)
    )
    pairs = [sorted(plan.assigned.select("vin", "source").iter_rows()) for plan in (first, second)]
    assert pairs[0] == pairs[1]
