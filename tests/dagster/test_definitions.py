"""The Definitions load, and declare what the deployment relies on."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    AssetKey,
    DagsterInstance,
    EnvVar,
    RunRequest,
    TableSchema,
    build_schedule_context,
)

import mm_pipeline as mm
from dagster_defs import defs
from dagster_defs._local import INSTANCE_TEMPLATE
from mm_pipeline.dagster import MarketMatchResource
from tests._support.dagster_runs import ASSETS, CHECKS


def test_asset_check_schedule_and_job_keys() -> None:
    """The graph holds exactly the documented assets, checks, job and schedule."""
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == ASSETS
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == CHECKS
    assert graph.get(AssetKey("placement_plan")).parent_keys == {
        AssetKey("placement"), AssetKey("candidate_dealers"),
    }  # fmt: skip
    assert [s.name for s in defs.schedules or []] == ["marketmatch_daily_schedule"]
    job = defs.resolve_job_def("marketmatch_daily")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == ASSETS
    assert {g for key in graph.get_all_asset_keys() for g in [graph.get(key).group_name]} == {
        "marketmatch"
    }


def test_ranking_assets_share_account_pools() -> None:
    """Placement (may batch) and sourcing (online) run in the account-wide concurrency pools."""
    graph = defs.resolve_asset_graph()
    pools = {
        key.to_user_string(): graph.get(key).assets_def.op.pool
        for key in graph.get_all_asset_keys()
    }
    assert pools["placement"] == pools["placement_failures"] == "marketmatch_batch"
    assert pools["sourcing"] == pools["sourcing_failures"] == "marketmatch_api"
    assert pools["vehicles"] is None
    assert pools["placement_plan"] is None  # calls no API


def test_schedule_runs_the_days_partition_with_a_retry_policy() -> None:
    """At 06:00 UTC the schedule asks for that day's partition; the job carries run retries."""
    schedule = defs.resolve_schedule_def("marketmatch_daily_schedule")
    assert schedule.cron_schedule == "0 6 * * *"
    context = build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 28, 6, 0, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert len(requests) == 1
    assert isinstance(requests[0], RunRequest)
    assert requests[0].partition_key == "2026-11-28"
    tags = defs.resolve_job_def("marketmatch_daily").tags
    assert tags["dagster/max_retries"] == "2"
    assert tags["dagster/retry_strategy"] == "FROM_FAILURE"


def test_instance_template_sets_pool_limit_and_run_retries(tmp_path: Path) -> None:
    """The documented dagster.yaml is a valid instance config: pools limited to 1, retries on."""
    shutil.copyfile(INSTANCE_TEMPLATE, tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2


def test_column_schemas_come_from_the_pandera_models() -> None:
    """Each asset's dagster/column_schema lists its pandera model's columns, in order."""
    graph = defs.resolve_asset_graph()

    def columns(asset: str) -> list[str]:
        schema = (graph.get(AssetKey(asset)).metadata or {})["dagster/column_schema"].value
        assert isinstance(schema, TableSchema)
        return [column.name for column in schema.columns]

    ranked = list(mm.schemas.RankedMatch.to_schema().columns)
    assert columns("placement") == columns("sourcing") == columns("best_placement") == ranked
    assert columns("placement_failures") == list(mm.schemas.FailedMatch.to_schema().columns)
    assert columns("vehicles") == ["vin", "price", "miles"]


def test_the_key_is_an_env_var_and_never_in_a_repr() -> None:
    """The deployed resource reads MARKETCHECK_API_KEY at run time; reprs never show a key."""
    resource = (defs.resources or {})["marketmatch"]
    assert isinstance(resource, MarketMatchResource)
    assert isinstance(resource.api_key, EnvVar)
    assert resource.api_key == "MARKETCHECK_API_KEY"  # the variable's name, not a value
    configured = MarketMatchResource(api_key="mc_test_do_not_show")
    assert "mc_test_do_not_show" not in repr(configured)
    assert "mc_test_do_not_show" not in str(configured)
