"""The placement plan step (``assign=``) in a user's own Definitions, against the sandbox."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import (
    AssetKey,
    AssetsDefinition,
    FilesystemIOManager,
    StaticPartitionsDefinition,
    asset,
    build_defs_for_component,
    materialize,
)

import mm_pipeline as mm
from mm_pipeline.dagster import (
    PLAN_CHECKS,
    RANKING_CHECKS,
    MarketMatchResource,
    PlacementPlan,
    PolarsParquetIOManager,
    RankingComponent,
    rank_dealers_assets,
)
from mm_pipeline.sandbox import Sandbox
from tests._support.dagster_runs import check_evaluations, materialization_metadata
from tests.dagster.conftest import SAMPLE_DATA

REGIONS = StaticPartitionsDefinition(["north", "south"])
PREFIX = ["acme"]
VEHICLES = pl.read_csv(SAMPLE_DATA / "vehicles.csv", schema_overrides={"vin": pl.String}).head(8)
DEALERS = pl.read_csv(SAMPLE_DATA / "dealers.csv", schema_overrides={"zip": pl.String}).head(6)
PLAN = AssetKey([*PREFIX, "placement_plan"])
UNASSIGNED = AssetKey([*PREFIX, "placement_plan_unassigned"])


@asset(partitions_def=REGIONS)
def lots() -> pl.DataFrame:
    """The user's vehicles."""
    return VEHICLES


@asset(partitions_def=REGIONS)
def rooftops() -> pl.DataFrame:
    """The user's dealers, each with how many vehicles it takes today."""
    return DEALERS.with_columns(capacity=pl.lit(2))


@asset(partitions_def=REGIONS)
def full_rooftops() -> pl.DataFrame:
    """Dealers that take one vehicle between them: most vehicles cannot be placed."""
    return DEALERS.with_columns(capacity=(pl.int_range(pl.len()) == 0).cast(pl.Int64))


def _resources(sb: Sandbox, io_manager: Any) -> dict[str, Any]:
    return {
        "marketmatch": MarketMatchResource(api_key=sb.api_key, base_url=sb.base_url),
        "io_manager": io_manager,
    }


def test_the_plan_materializes_with_every_check_passing(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Capacity from the user's dealers asset: the plan keeps it, and all twelve checks pass."""
    step = rank_dealers_assets(
        name="placement",
        vehicles=lots,
        dealers=rooftops,
        partitions_def=REGIONS,
        group_name="dealer_ops",
        key_prefix=PREFIX,
        mode="online",
        exact_top_k=3,
        assign=PlacementPlan(capacity=rooftops, min_placed_share=1.0),
    )
    assert len(step) == 2
    assert step[1].partitions_def == REGIONS
    assert {step[1].specs_by_key[k].group_name for k in (PLAN, UNASSIGNED)} == {"dealer_ops"}
    assert step[1].dependency_keys == {AssetKey([*PREFIX, "placement"]), AssetKey("rooftops")}
    resources = _resources(clean_sandbox, PolarsParquetIOManager(base_dir=str(tmp_path)))
    result = materialize([lots, rooftops, *step], partition_key="north", resources=resources)
    assert result.success
    ranking = check_evaluations(result, AssetKey([*PREFIX, "placement"]))
    assert {name: e.passed for name, e in ranking.items()} == dict.fromkeys(RANKING_CHECKS, True)
    checks = check_evaluations(result, PLAN)
    assert {name: e.passed for name, e in checks.items()} == dict.fromkeys(PLAN_CHECKS, True)

    plan = pl.read_parquet(tmp_path / "acme/placement_plan/partition=north")
    unassigned = pl.read_parquet(tmp_path / "acme/placement_plan_unassigned/partition=north")
    assert plan.height == 8  # 6 dealers x 2 >= 8 vehicles, 3 exact candidates each: all placed
    assert unassigned.height == 0
    assert plan.select("vin", "price", "miles").is_unique().all()
    assert plan.group_by("source", "zip").len()["len"].max() <= 2  # type: ignore[operator]
    assert plan["rank_exact"].all()
    mm.schemas.RankedMatch.validate(plan.drop("placement_cost"))

    metadata = materialization_metadata(result, PLAN)
    assert metadata["vehicles_placed"] == 8
    assert metadata["objective"] == plan["vin_rank"].sum()
    assert metadata["greedy_placed"] <= 8
    if metadata["greedy_placed"] == 8:  # placing as many, the plan costs no more
        assert metadata["objective"] <= metadata["greedy_objective"]
    assert metadata["largest_dealer_share_plan"] <= 2 / 8
    assert metadata["largest_dealer_share_rank1"] >= metadata["largest_dealer_share_plan"]
    assert metadata["solve_seconds"] >= 0
    assert metadata["stats"]["status"] == "OPTIMAL"
    assert metadata["summary"].startswith("**8 of 8 vehicles placed** at ")
    assert "| dealer | capacity | first choice | plan |" in metadata["summary"]
    assert clean_sandbox.api_key not in str(metadata)


def test_a_share_that_cannot_be_met_fails_its_check_with_a_clear_description(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """One place among six dealers for eight vehicles: placed_share fails and says why.

    Then only the plan is materialized again (the ranking read back from Parquet, no request)
    with a lower threshold in run config, and the check passes.
    """
    step = rank_dealers_assets(
        name="placement",
        vehicles=lots,
        dealers=full_rooftops,
        partitions_def=REGIONS,
        key_prefix=PREFIX,
        mode="online",
        assign=PlacementPlan(capacity=full_rooftops),
    )
    resources = _resources(clean_sandbox, PolarsParquetIOManager(base_dir=str(tmp_path)))
    result = materialize([lots, full_rooftops, *step], partition_key="south", resources=resources)
    assert result.success  # checks report; they do not fail the run
    checks = check_evaluations(result, PLAN)
    assert {name for name, e in checks.items() if not e.passed} == {"placed_share"}
    failed = checks["placed_share"]
    assert failed.description == (
        "1 of 8 vehicles placed (12.5%), below min_placed_share 90.0%; not placed: 7 "
        "(candidate dealers full), 0 (no candidate), 0 (invalid)"
    )
    assert failed.metadata["placed_share"].value == 0.125
    unassigned = pl.read_parquet(tmp_path / "acme/placement_plan_unassigned/partition=south")
    assert unassigned["reason"].to_list() == ["capacity"] * 7
    assert materialization_metadata(result, UNASSIGNED)["by_reason"] == {"capacity": 7}

    unreachable = MarketMatchResource(api_key="unused", base_url="http://127.0.0.1:9")
    again = materialize(
        [lots, full_rooftops, *step],
        selection=[PLAN, UNASSIGNED],
        partition_key="south",
        resources={**resources, "marketmatch": unreachable},  # the plan asks nothing of the API
        run_config={"ops": {"acme__placement_plan": {"config": {"min_placed_share": 0.1}}}},
    )
    assert again.success
    assert check_evaluations(again, PLAN)["placed_share"].passed


def test_an_int_capacity_with_dagsters_default_io_manager(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """capacity=1, unpartitioned, pickled by Dagster's own IO manager: every check passes."""

    @asset
    def inventory() -> pl.LazyFrame:
        return VEHICLES.head(4).lazy()

    @asset
    def dealers() -> pl.DataFrame:
        return DEALERS.head(5)

    step = rank_dealers_assets(
        name="placement", vehicles=inventory, dealers=dealers, pool=None,
        assign=PlacementPlan(capacity=1, suffix="routes"),
    )  # fmt: skip
    result = materialize(
        [inventory, dealers, *step],
        resources=_resources(clean_sandbox, FilesystemIOManager(base_dir=str(tmp_path))),
    )
    assert result.success
    routes = AssetKey("placement_routes")
    checks = check_evaluations(result, routes)
    assert {name: e.passed for name, e in checks.items()} == dict.fromkeys(PLAN_CHECKS, True)
    plan = result.output_for_node("placement_routes", "plan")
    assert isinstance(plan, pl.DataFrame)
    assert plan.height == 4
    assert plan.group_by("source", "zip").len()["len"].max() == 1
    assert (tmp_path / "placement_routes_unassigned").is_file()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"capacity": -1}, ValueError, "capacity must be a non-negative int or an asset; got -1"),
        ({"capacity": True}, ValueError, "capacity must be a non-negative int"),
        ({"capacity": 2, "min_placed_share": 1.5}, ValueError, "min_placed_share must lie in"),
        ({"capacity": 2, "default_capacity": -3}, ValueError, "default_capacity must be"),
        ({"capacity": 2.5}, TypeError, "capacity= takes an asset key or definition, got float"),
    ],
)
def test_bad_plan_options_fail_when_the_definitions_are_built(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Capacity and threshold are checked before any data is seen."""
    with pytest.raises(error, match=re.escape(message)):
        PlacementPlan(**options)


def test_assign_takes_a_placement_plan() -> None:
    """A dict where a PlacementPlan belongs is named, not silently ignored."""
    with pytest.raises(TypeError, match="assign= takes a PlacementPlan, got dict"):
        rank_dealers_assets(name="placement", pairs="pairs", assign={"capacity": 2})  # type: ignore[arg-type]


COMPONENT_YAML = """
step: rank_dealers
name: placement
vehicles: lots
dealers: crm/rooftops
options: {mode: online}
assign: {capacity: crm/rooftops, min_placed_share: 0.5}
"""


def test_the_component_takes_the_same_option() -> None:
    """assign: in YAML appends the plan, reading capacity from the named (prefixed) asset."""
    defs = build_defs_for_component(RankingComponent.resolve_from_yaml(COMPONENT_YAML))
    steps = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition)]
    assert {k.to_user_string() for a in steps for k in a.keys} == {
        "placement", "placement_failures", "placement_plan", "placement_plan_unassigned",
    }  # fmt: skip
    assert steps[1].dependency_keys == {AssetKey("placement"), AssetKey(["crm", "rooftops"])}
    with pytest.raises(TypeError, match="assign: a placement plan follows a rank_dealers step"):
        build_defs_for_component(
            RankingComponent.resolve_from_yaml(
                "step: rank_vins\nname: sourcing\npairs: p\nassign: {capacity: 2}\n"
            )
        )
