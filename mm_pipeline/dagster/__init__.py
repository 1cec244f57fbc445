"""mm_pipeline in your Dagster project: ranking steps over your own assets (extra ``dagster``).

``pip install 'mm-pipeline[dagster]'``. The factories :func:`rank_dealers_assets` and
:func:`rank_vins_assets` return the definitions of one ranking step wired to your upstream asset
keys: the ranked asset, its failures asset, their checks, column schemas and metadata, in a
concurrency pool. They need a :class:`MarketMatchResource` (under ``marketmatch`` unless
``resource_key=`` says otherwise) and work with any IO manager that round-trips polars frames;
:class:`PolarsParquetIOManager` stores them as Parquet an analyst can scan.
:class:`RankingComponent` is the same step as a Dagster Component, configured in YAML.
``assign=PlacementPlan(capacity=...)`` adds a placement plan downstream of a ``rank_dealers``
step: each vehicle to one dealer under dealer capacity (``mm.assign``), with its own checks.
``spill_dir=`` makes a ``rank_dealers`` step rank more pairs than fit in memory: through
``mm.rank_dealers(..., output=...)``, its outputs LazyFrames the IO manager sinks.

Examples
--------
>>> import dagster as dg, polars as pl
>>> from mm_pipeline.dagster import MarketMatchResource, rank_dealers_assets
>>> @dg.asset
... def my_inventory() -> pl.DataFrame: ...
>>> @dg.asset
... def my_rooftops() -> pl.DataFrame: ...
>>> defs = dg.Definitions(
...     assets=[my_inventory, my_rooftops, *rank_dealers_assets(
...         name="placement", vehicles=my_inventory, dealers=my_rooftops, exact_top_k=5)],
...     resources={"marketmatch": MarketMatchResource(api_key=dg.EnvVar("MARKETCHECK_API_KEY"))},
... )
>>> sorted(c.name for c in defs.resolve_asset_graph().asset_check_keys)[:2]
['complete', 'failure_rate']
"""

from __future__ import annotations

try:
    import dagster  # noqa: F401 (only to say which extra is missing)
except ImportError as _missing:
    raise ImportError(
        "mm_pipeline.dagster needs Dagster, which is not installed: "
        "pip install 'mm-pipeline[dagster]'"
    ) from _missing

from mm_pipeline.dagster._checks import (
    RANKING_CHECKS,
    SCORE_RANGE,
    ranking_check_results,
    ranking_check_specs,
)
from mm_pipeline.dagster._component import DailyPartitions, RankingComponent
from mm_pipeline.dagster._factory import (
    API_POOL,
    BATCH_POOL,
    RankingConfig,
    rank_dealers_assets,
    rank_vins_assets,
)
from mm_pipeline.dagster._io_manager import PolarsParquetIOManager
from mm_pipeline.dagster._metadata import (
    plan_metadata,
    plan_summary,
    preview,
    ranking_metadata,
    ranking_summary,
    schema_metadata,
)
from mm_pipeline.dagster._plan import (
    DEFAULT_MIN_PLACED_SHARE,
    PlacementPlan,
    PlanConfig,
    placement_plan_asset,
)
from mm_pipeline.dagster._plan_checks import PLAN_CHECKS, plan_check_results, plan_check_specs
from mm_pipeline.dagster._resources import MarketMatchResource, SourceData
from mm_pipeline.dagster._step import DEALER_COLUMNS, VEHICLE_COLUMNS, RankingStep
from mm_pipeline.dagster._upstream import UpstreamAsset

__all__ = [
    "API_POOL",
    "BATCH_POOL",
    "DEALER_COLUMNS",
    "DEFAULT_MIN_PLACED_SHARE",
    "PLAN_CHECKS",
    "RANKING_CHECKS",
    "SCORE_RANGE",
    "VEHICLE_COLUMNS",
    "DailyPartitions",
    "MarketMatchResource",
    "PlacementPlan",
    "PlanConfig",
    "PolarsParquetIOManager",
    "RankingComponent",
    "RankingConfig",
    "RankingStep",
    "SourceData",
    "UpstreamAsset",
    "placement_plan_asset",
    "plan_check_results",
    "plan_check_specs",
    "plan_metadata",
    "plan_summary",
    "preview",
    "rank_dealers_assets",
    "rank_vins_assets",
    "ranking_check_results",
    "ranking_check_specs",
    "ranking_metadata",
    "ranking_summary",
    "schema_metadata",
]
