"""The ``Definitions`` object: assets, checks, job, schedule, resources."""

from __future__ import annotations

from dagster import Definitions, EnvVar

from dagster_defs.assets import ALL_ASSETS
from dagster_defs.schedules import marketmatch_daily, marketmatch_daily_schedule
from mm_pipeline.dagster import MarketMatchResource, PolarsParquetIOManager, SourceData

__all__ = ["defs"]

defs = Definitions(
    assets=ALL_ASSETS,
    jobs=[marketmatch_daily],
    schedules=[marketmatch_daily_schedule],
    resources={
        "marketmatch": MarketMatchResource(api_key=EnvVar("MARKETCHECK_API_KEY")),
        "source_data": SourceData(root="sample_data"),
        "io_manager": PolarsParquetIOManager(),
    },
)
