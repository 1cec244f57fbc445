"""A user's own Definitions built from the factories, materialized against the sandbox."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml  # type: ignore[import-untyped]
from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DailyPartitionsDefinition,
    Definitions,
    FilesystemIOManager,
    StaticPartitionsDefinition,
    TableSchema,
    asset,
    build_defs_for_component,
    materialize,
)

import mm_pipeline as mm
from mm_pipeline.dagster import (
    RANKING_CHECKS,
    MarketMatchResource,
    PolarsParquetIOManager,
    RankingComponent,
    rank_dealers_assets,
    rank_vins_assets,
)
from mm_pipeline.sandbox import Sandbox
from tests._support.dagster_runs import checks_passed, materialization_metadata
from tests.dagster.conftest import SAMPLE_DATA
from tests.reliability._support import ServedRequests

REGIONS = StaticPartitionsDefinition(["north", "south"])
PREFIX = ["acme", "marketmatch"]
GROUP = "dealer_ops"
VEHICLES = pl.read_csv(SAMPLE_DATA / "vehicles.csv", schema_overrides={"vin": pl.String})
DEALERS = pl.read_csv(SAMPLE_DATA / "dealers.csv", infer_schema=False)
ACQUISITIONS = pl.read_csv(SAMPLE_DATA / "acquisitions.csv", infer_schema=False).with_columns(
    pl.col("price", "miles").cast(pl.Int64)
)


@asset(partitions_def=REGIONS, group_name="inventory")
def my_inventory() -> pl.DataFrame:
    """The user's vehicles, with a column of their own the ranking ignores."""
    return VEHICLES.head(6).with_columns(stock_no=pl.int_range(pl.len()))


@asset(partitions_def=REGIONS, group_name="inventory")
def my_rooftops() -> pl.DataFrame:
    return DEALERS.head(5)


@asset
def lazy_inventory() -> pl.LazyFrame:
    return VEHICLES.head(3).lazy()


@asset
def lazy_rooftops() -> pl.LazyFrame:
    return DEALERS.head(4).lazy()


@asset(key=["crm", "buy_list"])
def buy_list() -> pl.DataFrame:
    return ACQUISITIONS.head(8)


def _resource(sb: Sandbox) -> MarketMatchResource:
    return MarketMatchResource(api_key=sb.api_key, base_url=sb.base_url)


def test_user_definitions_materialize_with_every_check_passing(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Own asset names, static partitions, group and key prefix: ranked, stored, all checks pass."""
    step = rank_dealers_assets(
        name="placement",
        vehicles=my_inventory,
        dealers="my_rooftops",
        partitions_def=REGIONS,
        group_name=GROUP,
        key_prefix=PREFIX,
        mode="online",
        exact_top_k=3,
    )
    resources = {
        "marketmatch": _resource(clean_sandbox),
        "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path)),
    }
    defs = Definitions(assets=[my_inventory, my_rooftops, *step], resources=resources)
    graph = defs.resolve_asset_graph()
    ranked, failures = AssetKey([*PREFIX, "placement"]), AssetKey([*PREFIX, "placement_failures"])
    assert {graph.get(k).group_name for k in (ranked, failures)} == {GROUP}
    assert graph.get(ranked).parent_keys == {AssetKey("my_inventory"), AssetKey("my_rooftops")}
    assert step[0].op.pool == "marketmatch_batch"
    result = materialize(
        [my_inventory, my_rooftops, *step], partition_key="south", resources=resources
    )
    assert result.success
    assert checks_passed(result, ranked) == dict.fromkeys(RANKING_CHECKS, True)
    placed = pl.read_parquet(tmp_path / "acme/marketmatch/placement/partition=south")
    assert placed.height == 6 * 5
    mm.schemas.RankedMatch.validate(placed)
    metadata = materialization_metadata(result, ranked)
    assert metadata["stats/mode"] == "online"
    assert metadata["summary"].startswith("**6 vehicles ranked**: 30 pairs, 0 failed.")
    assert "of the 5 dealers ranked" in metadata["summary"]
    assert clean_sandbox.api_key not in str(metadata)


def test_a_re_executed_partition_spends_no_request_on_what_it_already_ranked(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """The resource's answer cache is on by default: the same partition again sends nothing.

    Counted by the sandbox (the account's spent quota). With ``use_answer_cache=False`` the
    same re-execution sends every request again.
    """
    step = rank_dealers_assets(
        name="placement",
        vehicles=my_inventory,
        dealers="my_rooftops",
        partitions_def=REGIONS,
        mode="online",
    )
    assets = [my_inventory, my_rooftops, *step]
    io_manager = PolarsParquetIOManager(base_dir=str(tmp_path / "data"))
    cached = {"marketmatch": _resource(clean_sandbox), "io_manager": io_manager}
    uncached = {
        "marketmatch": MarketMatchResource(
            api_key=clean_sandbox.api_key, base_url=clean_sandbox.base_url, use_answer_cache=False
        ),
        "io_manager": io_manager,
    }
    stored = tmp_path / "data" / "placement" / "partition=south"
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        first = materialize(assets, partition_key="south", resources=cached)
        spent = served()
        ranked = pl.read_parquet(stored)
        again = materialize(assets, partition_key="south", resources=cached)
        assert served() == spent  # the sandbox saw nothing new
        without_cache = materialize(assets, partition_key="south", resources=uncached)
        assert served() == 2 * spent
    assert all(run.success for run in (first, again, without_cache))
    assert spent == materialization_metadata(first, "placement")["stats/requests"] > 0
    repeat = materialization_metadata(again, "placement")
    assert (repeat["stats/requests"], repeat["stats/cached_answers"]) == (0, spent)
    assert pl.read_parquet(stored).equals(ranked)


def test_column_descriptions_come_from_the_pandera_models() -> None:
    """The ranked and failures assets' column schemas carry the models' field descriptions."""
    (step,) = rank_vins_assets(name="sourcing", pairs="candidates")
    for key, model in (
        (AssetKey("sourcing"), mm.schemas.RankedMatch),
        (AssetKey("sourcing_failures"), mm.schemas.FailedMatch),
    ):
        schema = step.specs_by_key[key].metadata["dagster/column_schema"].schema
        assert isinstance(schema, TableSchema)
        expected = {n: c.description for n, c in model.to_schema().columns.items()}
        assert {c.name: c.description for c in schema.columns} == expected
        assert all(expected.values())


def test_default_pickling_io_manager_and_a_custom_resource_key(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """rank_vins over a prefixed pairs asset, unpartitioned, with Dagster's pickling IO manager."""
    step = rank_vins_assets(
        name="sourcing", pairs=AssetSpec(["crm", "buy_list"]), resource_key="mm_api"
    )
    assert step[0].op.pool == "marketmatch_api"
    result = materialize(
        [buy_list, *step],
        resources={
            "mm_api": _resource(clean_sandbox),
            "io_manager": FilesystemIOManager(base_dir=str(tmp_path)),
        },
    )
    assert result.success
    assert checks_passed(result, AssetKey("sourcing")) == dict.fromkeys(RANKING_CHECKS, True)
    ranked = result.output_for_node("sourcing", "ranked")
    failed = result.output_for_node("sourcing", "failures")
    assert isinstance(ranked, pl.DataFrame)
    assert ranked.height + failed.height == 8
    assert (tmp_path / "sourcing").is_file()  # pickled by Dagster's default IO manager


def test_lazyframe_upstream_assets(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """Upstream LazyFrames (pickled as such) are crossed and ranked like DataFrames."""
    step = rank_dealers_assets(
        name="placement", vehicles=lazy_inventory, dealers=lazy_rooftops, pool=None
    )
    result = materialize(
        [lazy_inventory, lazy_rooftops, *step],
        resources={
            "marketmatch": _resource(clean_sandbox),
            "io_manager": FilesystemIOManager(base_dir=str(tmp_path)),
        },
    )
    assert result.success
    assert isinstance(result.output_for_node("lazy_inventory"), pl.LazyFrame)
    assert checks_passed(result, AssetKey("placement")) == dict.fromkeys(RANKING_CHECKS, True)
    assert result.output_for_node("placement", "ranked").height == 3 * 4


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"mdoe": "batch"}, TypeError, "has no option 'mdoe' (did you mean 'mode'?)"),
        ({"mode": "fast"}, mm.ConfigurationError, "mode='fast': Input should be 'online'"),
        ({"exact_top_k": "5"}, mm.ConfigurationError, "exact_top_k='5'"),
        ({"client": None}, TypeError, "has no option 'client'"),
    ],
)
def test_a_bad_option_fails_when_the_definitions_are_built(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Option names and values are checked against mm.rank_dealers's signature, early."""
    with pytest.raises(error, match=re.escape(message)):
        rank_dealers_assets(name="placement", pairs="pairs", **options)


@pytest.mark.parametrize(
    ("factory", "arguments", "message"),
    [
        (
            rank_vins_assets,
            {"spill_dir": "data/.mm_spill"},
            "spill_dir= needs a ranking function with output=; mm.rank_vins ranks in memory only",
        ),
        (rank_dealers_assets, {"spill_dir": 3}, "spill_dir= takes a folder (str or Path), got int"),
        (
            rank_dealers_assets,
            {"output": "data/out"},
            "has no option 'output' (spill_dir= of the factory ranks through Parquet files)",
        ),
    ],
)
def test_spill_dir_is_checked_when_the_definitions_are_built(
    factory: Any, arguments: dict[str, Any], message: str
) -> None:
    """spill_dir= only where the ranking function has output=, and only a folder; no output=."""
    with pytest.raises(TypeError, match=re.escape(message)):
        factory(name="step", pairs="pairs", **arguments)


def test_rank_vins_has_no_mode() -> None:
    """rank_vins is online only: mode is not one of its options."""
    with pytest.raises(TypeError, match=r"mm.rank_vins has no option 'mode'"):
        rank_vins_assets(name="sourcing", pairs="pairs", mode="batch")


@pytest.mark.parametrize(
    "upstream",
    [{}, {"vehicles": "v"}, {"pairs": "p", "dealers": "d"}],
)
def test_upstream_is_pairs_or_vehicles_and_dealers(upstream: dict[str, Any]) -> None:
    """Exactly a pairs asset, or a vehicles and a dealers asset."""
    with pytest.raises(TypeError, match=r"needs either pairs= .* or both vehicles= and dealers="):
        rank_dealers_assets(name="placement", **upstream)


def test_the_readme_example_loads() -> None:
    """The README's "Use it in your Dagster project" example builds valid Definitions."""
    readme = (SAMPLE_DATA.parent / "README.md").read_text()
    section = readme.split("## Use it in your Dagster project", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    graph = namespace["defs"].resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "my_inventory", "my_rooftops", "placement", "placement_failures",
    }  # fmt: skip
    assert {k.name for k in graph.asset_check_keys} == set(RANKING_CHECKS)


@asset(partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
def daily_inventory() -> pl.DataFrame:
    return VEHICLES.head(3)


@asset(partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
def daily_rooftops() -> pl.DataFrame:
    return DEALERS.head(3)


COMPONENT_YAML = """
step: rank_dealers
name: placement
vehicles: daily_inventory
dealers: daily_rooftops
group_name: dealer_ops
key_prefix: [acme]
daily_partitions: {start_date: "2026-01-01"}
options: {mode: online, exact_top_k: 2}
"""


def test_the_yaml_component_builds_the_same_step(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """RankingComponent from YAML: daily partitions, prefix, options; every check passes."""
    component = RankingComponent.resolve_from_yaml(COMPONENT_YAML)
    defs = build_defs_for_component(component)
    step = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition)]
    assert {k.to_user_string() for a in step for k in a.keys} == {
        "acme/placement", "acme/placement_failures",
    }  # fmt: skip
    result = materialize(
        [daily_inventory, daily_rooftops, *step],
        partition_key="2026-06-01",
        resources={
            "marketmatch": _resource(clean_sandbox),
            "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path)),
        },
    )
    assert result.success
    ranked = AssetKey(["acme", "placement"])
    assert checks_passed(result, ranked) == dict.fromkeys(RANKING_CHECKS, True)
    assert (tmp_path / "acme/placement/date=2026-06-01/data.parquet").is_file()


def test_a_bad_option_in_yaml_is_named_when_the_component_loads() -> None:
    """A misspelt option in the YAML fails when the definitions are built, with a suggestion."""
    component = RankingComponent.resolve_from_yaml(COMPONENT_YAML.replace("mode:", "mdoe:"))
    with pytest.raises(TypeError, match=re.escape("no option 'mdoe' (did you mean 'mode'?)")):
        build_defs_for_component(component)


def test_the_readme_component_yaml_loads() -> None:
    """The README's defs.yaml names this component type and builds the placement step."""
    readme = (SAMPLE_DATA.parent / "README.md").read_text()
    document = yaml.safe_load(readme.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert document["type"] == "mm_pipeline.dagster.RankingComponent"
    defs = build_defs_for_component(RankingComponent.resolve_from_dict(document["attributes"]))
    assert {k.to_user_string() for a in defs.assets or [] if isinstance(a, AssetsDefinition)
            for k in a.keys} == {"placement", "placement_failures"}  # fmt: skip


def _input_types(yaml_text: str) -> set[str]:
    """The Dagster types of the inputs of the one ranking step a component YAML builds."""
    defs = build_defs_for_component(RankingComponent.resolve_from_yaml(yaml_text))
    (step,) = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition)]
    return {d.dagster_type.display_name for d in step.op.input_defs}


def test_spill_dir_in_yaml_reads_the_upstream_assets_lazily() -> None:
    """The component passes spill_dir on: inputs typed PolarsFrame (scanned by the IO manager)."""
    assert _input_types(COMPONENT_YAML + "spill_dir: data/.mm_spill\n") == {"PolarsFrame"}
    assert _input_types(COMPONENT_YAML) == {"Any"}
    sourcing = RankingComponent.resolve_from_yaml(
        "step: rank_vins\nname: sourcing\npairs: crm/buy_list\nspill_dir: data/.mm_spill\n"
    )
    with pytest.raises(TypeError, match=r"mm.rank_vins ranks in memory only"):
        build_defs_for_component(sourcing)
