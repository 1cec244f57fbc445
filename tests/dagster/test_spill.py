"""A ranking step with spill_dir=: ranked through Parquet files, stored, then the files removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import (
    AssetKey,
    AssetsDefinition,
    OutputContext,
    StaticPartitionsDefinition,
    asset,
    materialize,
)

import mm_pipeline as mm
from mm_pipeline._batch import _large
from mm_pipeline.dagster import (
    PLAN_CHECKS,
    RANKING_CHECKS,
    MarketMatchResource,
    PlacementPlan,
    PolarsParquetIOManager,
    rank_dealers_assets,
)
from mm_pipeline.sandbox import Sandbox
from tests._support.batch import EXAMPLE_VEHICLES, rooftops
from tests._support.dagster_runs import check_evaluations, materialization_metadata
from tests.conftest import BOUND, make_vins, refuse_large_collects

REGIONS = StaticPartitionsDefinition(["north", "south"])
PLAN_CAPACITY, PLAN_MAX_RANK = 12, 10
PAIR_KEY = ["vin", "price", "miles", "source", "zip", "mc_location_id"]
STORED = ("placement", "placement_failures", "placement_plan", "placement_plan_unassigned")


@asset(partitions_def=REGIONS)
def cars() -> pl.DataFrame:
    """The published vehicles, the first one twice (exact duplicate pairs once crossed)."""
    vehicles = pl.DataFrame(list(EXAMPLE_VEHICLES), schema=["vin", "price", "miles"], orient="row")
    return pl.concat([vehicles, vehicles.head(1)])


@asset(partitions_def=REGIONS)
def rooftops_with_zip() -> pl.DataFrame:
    """Sandbox rooftops with a zip, and one the market does not know (dealer_not_found)."""
    unknown = pl.DataFrame({"source": ["nowhere-motors.example"], "zip": ["99999"]})
    return pl.concat([rooftops().head(20), unknown])


class _Recorder(PolarsParquetIOManager):
    """The Parquet IO manager, noting what each output was and whether its scan still read."""

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        scans = isinstance(obj, pl.LazyFrame) and "spill" in obj.explain()
        _SEEN[context.asset_key.to_user_string()] = (type(obj).__name__, scans)
        super().handle_output(context, obj)


_SEEN: dict[str, tuple[str, bool]] = {}


def _resources(sb: Sandbox, data: Path) -> dict[str, Any]:
    return {
        "marketmatch": MarketMatchResource(api_key=sb.api_key, base_url=sb.base_url),
        "io_manager": _Recorder(base_dir=str(data)),
    }


def _step(spill_dir: Path | None, **options: Any) -> list[AssetsDefinition]:
    return rank_dealers_assets(
        name="placement",
        vehicles=cars,
        dealers=rooftops_with_zip,
        partitions_def=REGIONS,
        mode="batch",
        spill_dir=spill_dir,
        assign=PlacementPlan(capacity=2),
        **options,
    )


def _stored(data: Path, asset_name: str) -> pl.DataFrame:
    frame = pl.read_parquet(data / asset_name / "partition=north" / "data.parquet")
    key = [
        c for c in ("vin", "price", "miles", "source", "zip", "error_code") if c in frame.columns
    ]
    return frame.sort(key, nulls_last=True)


def test_spilled_ranking_stores_what_the_in_memory_ranking_stores(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Same stored assets, metadata and checks; the outputs were scans; the folder is gone.

    10 vehicle rows (one twice) x 21 dealers (one unknown to the market): 180 ranked, 9 failed,
    21 exact duplicates; the plan downstream reads the stored ranking after the spill folder
    was removed.
    """
    spill = tmp_path / "spill"
    in_memory = materialize(
        [cars, rooftops_with_zip, *_step(None)],
        partition_key="north",
        resources=_resources(clean_sandbox, tmp_path / "memory"),
    )
    _SEEN.clear()
    spilled = materialize(
        [cars, rooftops_with_zip, *_step(spill)],
        partition_key="north",
        resources=_resources(clean_sandbox, tmp_path / "spilled"),
    )
    assert in_memory.success
    assert spilled.success
    # The ranking's outputs were LazyFrames over the spill folder, readable when stored ...
    assert _SEEN["placement"] == ("LazyFrame", True)
    assert _SEEN["placement_failures"] == ("LazyFrame", True)
    assert _SEEN["placement_plan"] == ("DataFrame", False)
    # ... and the folder is gone, up to spill_dir (the plan ran on the stored asset after).
    assert spill.is_dir()
    assert list(spill.iterdir()) == []
    for name in STORED:
        assert _stored(tmp_path / "spilled", name).equals(_stored(tmp_path / "memory", name)), name
    assert _stored(tmp_path / "spilled", "placement").height == 9 * 20
    memory_md = materialization_metadata(in_memory, "placement")
    spilled_md = materialization_metadata(spilled, "placement")
    failures_md = materialization_metadata(spilled, "placement_failures")
    assert spilled_md["dagster/row_count"] == spilled_md["stats/ranked"] == 9 * 20
    assert failures_md["dagster/row_count"] == spilled_md["stats/failed"] == 9
    assert spilled_md["stats/duplicates_removed"] == 21
    for name in ("summary", "failures_by_error_code", "stats/rows", "stats/pairs"):
        assert spilled_md[name] == memory_md[name], name
    assert spilled_md["summary"].startswith("**9 vehicles ranked**: 180 pairs, 9 failed.")
    assert (
        failures_md["preview"]
        == materialization_metadata(in_memory, "placement_failures")["preview"]
    )
    for asset_key, names in (("placement", RANKING_CHECKS), ("placement_plan", PLAN_CHECKS)):
        memory_checks = check_evaluations(in_memory, asset_key)
        spilled_checks = check_evaluations(spilled, asset_key)
        assert set(spilled_checks) == set(names)
        for name, evaluation in spilled_checks.items():
            assert evaluation.passed == memory_checks[name].passed, name
            assert evaluation.metadata == memory_checks[name].metadata, name
    complete = check_evaluations(spilled, "placement")["complete"]
    assert complete.passed
    assert complete.metadata["distinct_input_pairs"].value == 9 * 21


def test_a_failed_spilled_ranking_removes_its_folder(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """The library stops at max_requests with files written: the step fails, the folder goes."""
    spill = tmp_path / "spill"
    result = materialize(
        [cars, rooftops_with_zip, *_step(spill, max_requests=1)],
        partition_key="south",
        resources=_resources(clean_sandbox, tmp_path / "data"),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("placement")
    assert failure is not None
    assert "max_requests=1 reached" in str(failure.error)
    assert list(spill.iterdir()) == []


@asset
def many_cars() -> pl.DataFrame:
    """410 vehicles: x 100 dealers, 41,000 pairs (more than any collect may return)."""
    count = 410
    return pl.DataFrame(
        {
            "vin": make_vins(count),
            "price": [15_000 + 37 * i for i in range(count)],
            "miles": [1_000 + 29 * i for i in range(count)],
        }
    )


@asset
def many_rooftops() -> pl.DataFrame:
    return rooftops().head(100)


def test_the_spilled_step_never_collects_the_pairs_or_the_ranking(
    clean_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """41,000 pairs, no collect past 40,000 rows: the in-memory step trips it, the spilled not.

    The crossing, the ranking (VIN buckets of 9,000 rows), the outputs (sunk by the IO manager),
    the metadata and the checks all stay under the bound; so does the placement plan, which
    reads the stored ranking lazily (its candidates, vin_rank <= 10, and its vehicles), and its
    seven checks pass.
    """
    pairs = 410 * 100
    assert pairs > BOUND
    monkeypatch.setattr(_large, "BUCKET_ROWS", 9_000)
    heights = refuse_large_collects(monkeypatch)
    resources = {
        "marketmatch": MarketMatchResource(
            api_key=clean_sandbox.api_key, base_url=clean_sandbox.base_url
        ),
        "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "data")),
    }

    def step(spill_dir: Path | None) -> list[AssetsDefinition]:
        return rank_dealers_assets(
            name="placement",
            vehicles=many_cars,
            dealers=many_rooftops,
            mode="batch",
            spill_dir=spill_dir,
            assign=PlacementPlan(capacity=PLAN_CAPACITY, max_rank=PLAN_MAX_RANK),
        )

    in_memory = materialize(
        [many_cars, many_rooftops, *step(None)], resources=resources, raise_on_error=False
    )
    assert not in_memory.success  # the guard bites: crossing in memory collects 41,000 rows
    failure = in_memory.failure_data_for_node("placement")
    assert failure is not None
    assert f"a LazyFrame of {pairs} rows was collected" in str(failure.error)
    heights.clear()
    spilled = materialize(
        [many_cars, many_rooftops, *step(tmp_path / "spill")], resources=resources
    )
    assert spilled.success
    assert heights
    assert max(heights) <= BOUND
    ranked_md = materialization_metadata(spilled, "placement")
    failed_md = materialization_metadata(spilled, "placement_failures")
    assert ranked_md["dagster/row_count"] == ranked_md["stats/ranked"]
    assert ranked_md["dagster/row_count"] + failed_md["dagster/row_count"] == pairs
    checks = check_evaluations(spilled, AssetKey("placement"))
    assert {name: e.passed for name, e in checks.items()} == dict.fromkeys(RANKING_CHECKS, True)
    assert checks["complete"].metadata["distinct_input_pairs"].value == pairs
    assert checks["ranks_contiguous"].metadata["groups"].value == 410
    plan_checks = check_evaluations(spilled, AssetKey("placement_plan"))
    assert {name: e.passed for name, e in plan_checks.items()} == dict.fromkeys(PLAN_CHECKS, True)
    plan_md = materialization_metadata(spilled, "placement_plan")
    monkeypatch.undo()  # the test itself reads the stored ranking whole
    stored = pl.read_parquet(tmp_path / "data" / "placement" / "data.parquet")
    assert stored.height == ranked_md["dagster/row_count"]
    assert stored.group_by("vin").len()["len"].max() == 100
    candidates = int((stored["vin_rank"] <= PLAN_MAX_RANK).sum())  # (batch ranks are all exact)
    assert stored.height > BOUND > candidates  # what the plan collects: its candidates
    plan = mm.assign(stored, capacity=PLAN_CAPACITY, max_rank=PLAN_MAX_RANK)
    assert plan_md["dagster/row_count"] == plan.stats.placed
    assert plan.stats.candidate_pairs == candidates
    assert not (tmp_path / "spill" / "placement").exists()
