"""The project's code location as the tests expect it, and readers of a Dagster run's events."""

from __future__ import annotations

from typing import Any

from dagster import AssetCheckEvaluation, AssetKey, ExecuteInProcessResult

from mm_pipeline.dagster import PLAN_CHECKS, RANKING_CHECKS

ASSETS = {
    "vehicles",
    "candidate_dealers",
    "acquisition_candidates",
    "placement",
    "placement_failures",
    "sourcing",
    "sourcing_failures",
    "best_placement",
    "placement_plan",
    "placement_plan_unassigned",
}
"""Every asset of ``dagster_defs``, as user strings."""
CHECKS = {(a, name) for a in ("placement", "sourcing") for name in RANKING_CHECKS} | {
    ("placement_plan", name) for name in PLAN_CHECKS
}
"""Every asset check of ``dagster_defs``: (asset, check name)."""


def _key(asset: AssetKey | str) -> AssetKey:
    return asset if isinstance(asset, AssetKey) else AssetKey(asset)


def materialization_metadata(
    result: ExecuteInProcessResult, asset: AssetKey | str
) -> dict[str, Any]:
    """The metadata values of the run's one materialization of ``asset``."""
    key = _key(asset)
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {name: value.value for name, value in event.materialization.metadata.items()}


def check_evaluations(
    result: ExecuteInProcessResult, asset: AssetKey | str
) -> dict[str, AssetCheckEvaluation]:
    """The run's check evaluations of ``asset``, by check name."""
    key = _key(asset)
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == key}


def checks_passed(result: ExecuteInProcessResult, asset: AssetKey | str) -> dict[str, bool]:
    """Whether each of ``asset``'s checks passed in the run, by check name."""
    return {name: e.passed for name, e in check_evaluations(result, asset).items()}
