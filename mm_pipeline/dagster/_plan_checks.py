"""Asset checks of a placement plan, evaluated on the plan the asset has just made.

The plan is checked against its inputs with :func:`mm_pipeline.check_plan` (which does not trust
the solver), plus the share of vehicles placed against a threshold. Like the ranking checks,
they are declared with ``check_specs=`` and yielded by the asset's own step.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from dagster import AssetCheckResult, AssetCheckSpec, AssetKey, MetadataValue

import mm_pipeline as mm
from mm_pipeline.dagster._metadata import preview

__all__ = ["PLAN_CHECKS", "plan_check_results", "plan_check_specs"]

PLAN_CHECKS = {
    "no_dealer_over_capacity": "No dealer receives more vehicles than its capacity.",
    "no_vehicle_placed_twice": "Each vehicle is placed at most once.",
    "every_placement_a_candidate_pair": "Each placement is a ranked pair that was a candidate "
    "(rank_exact, or vin_rank <= max_rank).",
    "every_vehicle_accounted_for": "Each vehicle is in the plan or in <plan>_unassigned, once.",
    "solver_optimal": "The solver proved the plan optimal (its own status).",
    "not_worse_than_greedy": "The plan places at least as many vehicles as the greedy baseline "
    "(rank 1 first, then the next free dealer) and, placing as many, costs no more.",
    "placed_share": "Placed vehicles / vehicles is at least min_placed_share.",
}
"""Check name -> what it asserts, on every placement plan asset."""


def plan_check_specs(asset: AssetKey | str) -> list[AssetCheckSpec]:
    """Declare the :data:`PLAN_CHECKS` on ``asset``.

    Examples
    --------
    >>> [spec.name for spec in plan_check_specs("placement_plan")][-1]
    'placed_share'
    """
    return [
        AssetCheckSpec(name, asset=asset, description=description)
        for name, description in PLAN_CHECKS.items()
    ]


def _placed_share(stats: mm.AssignStats, minimum: float) -> str:
    verdict = "at least" if stats.placed_share >= minimum else "below"
    return (
        f"{stats.placed:,} of {stats.vehicles:,} vehicles placed ({stats.placed_share:.1%}), "
        f"{verdict} min_placed_share {minimum:.1%}; not placed: {stats.over_capacity:,} "
        f"(candidate dealers full), {stats.no_candidate:,} (no candidate), "
        f"{stats.invalid:,} (invalid)"
    )


def plan_check_results(
    asset: AssetKey | str,
    *,
    plan: mm.AssignResult,
    ranked: pl.DataFrame | pl.LazyFrame,
    capacity: int | pl.DataFrame,
    default_capacity: int,
    min_placed_share: float,
) -> list[AssetCheckResult]:
    """Evaluate the :data:`PLAN_CHECKS` of ``asset`` on one plan.

    Parameters
    ----------
    asset
        The plan's asset key.
    plan
        What ``mm.assign`` returned for ``ranked`` and ``capacity``.
    ranked, capacity, default_capacity
        The inputs of the plan (``ranked`` may be lazy: only its candidate rows and its
        distinct vehicles are collected).
    min_placed_share
        The smallest acceptable share of vehicles placed.

    Returns
    -------
    list[AssetCheckResult]
        One result per check, in :data:`PLAN_CHECKS` order; a failed one says why in its
        description and metadata (the overloaded dealers, the unplaced vehicles by reason).
    """
    verdicts = dict(mm.check_plan(plan, ranked, capacity, default_capacity=default_capacity))
    stats = plan.stats
    verdicts["placed_share"] = stats.placed_share >= min_placed_share
    over = plan.dealers.filter(pl.col("placed") > pl.col("capacity"))
    details: dict[str, tuple[str | None, dict[str, Any]]] = {
        "no_dealer_over_capacity": (
            None,
            {
                "dealers_over_capacity": over.height,
                **({"over": preview(over)} if over.height else {}),
            },
        ),
        "solver_optimal": (
            f"solver {stats.solver}: status {stats.status}",
            {"status": stats.status, "objective": stats.objective, "bound": stats.bound},
        ),
        "not_worse_than_greedy": (
            f"plan places {stats.placed:,} at cost {stats.objective:,.6g}; greedy places "
            f"{stats.greedy_placed:,} at cost {stats.greedy_objective:,.6g}",
            {},
        ),
        "placed_share": (
            _placed_share(stats, min_placed_share),
            {
                "placed_share": MetadataValue.float(round(stats.placed_share, 6)),
                "min_placed_share": MetadataValue.float(min_placed_share),
                "placed": stats.placed,
                "vehicles": stats.vehicles,
            },
        ),
    }
    return [
        AssetCheckResult(
            asset_key=asset,
            check_name=name,
            passed=bool(verdicts[name]),
            description=details.get(name, (None, {}))[0],
            metadata=details.get(name, (None, {}))[1],
        )
        for name in PLAN_CHECKS
    ]
