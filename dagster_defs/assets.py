"""The MarketMatch asset graph: daily inputs, placement, sourcing, best placement.

::

    vehicles ─────────┐
                      ├─> placement ──> best_placement
    candidate_dealers ┘    └ placement_failures
    acquisition_candidates ─> sourcing
                               └ sourcing_failures

Every asset is partitioned by day (MarketMatch refreshes its rankings daily). The ranking assets
call ``mm_pipeline``'s public functions through :class:`MarketMatchResource` and hold no ranking
logic of their own; they run in Dagster concurrency pools because the rate limit and the
one-active-batch-job rule belong to the account, not to a run.

(No ``from __future__ import annotations`` here: Dagster reads these annotations at runtime.)
"""

from collections.abc import Iterator
from typing import Literal

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetOut,
    AssetsDefinition,
    Config,
    DailyPartitionsDefinition,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)
from pydantic import Field

import mm_pipeline as mm
from dagster_defs.checks import ranking_check_results, ranking_check_specs
from dagster_defs.metadata import preview, ranking_metadata, schema_metadata
from dagster_defs.resources import MarketMatchResource, SourceData
from mm_pipeline.schemas import FailedMatch, PairsInput, RankedMatch

__all__ = [
    "ACQUISITION_COLUMNS",
    "ALL_ASSETS",
    "API_POOL",
    "BATCH_POOL",
    "DEALER_COLUMNS",
    "GROUP",
    "PARTITIONS",
    "VEHICLE_COLUMNS",
    "RankingConfig",
    "acquisition_candidates",
    "best_placement",
    "candidate_dealers",
    "placement",
    "sourcing",
    "vehicles",
]

GROUP = "marketmatch"
PARTITIONS = DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
"""One partition per day, up to and including today (``end_offset=1``)."""

BATCH_POOL = "marketmatch_batch"
"""Pool of placement, which may submit a batch job: limit 1 (one active job per account)."""
API_POOL = "marketmatch_api"
"""Pool of the online-only ranking (sourcing): shares the account's rate limit."""

VEHICLE_COLUMNS = ("vin", "price", "miles")
DEALER_COLUMNS = ("source", "zip", "mc_location_id")
ACQUISITION_COLUMNS = (*VEHICLE_COLUMNS, *DEALER_COLUMNS)
_KINDS = {"polars", "parquet"}


class RankingConfig(Config):
    """Run configuration of a ranking asset."""

    max_failure_rate: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="The failure_rate check fails above this share of failed pairs.",
    )


def _source_asset(
    name: str,
    source: Literal["vehicles", "dealers", "acquisitions"],
    columns: tuple[str, ...],
    description: str,
) -> AssetsDefinition:
    @asset(
        name=name,
        partitions_def=PARTITIONS,
        group_name=GROUP,
        kinds=_KINDS,
        description=description,
        metadata=schema_metadata(PairsInput, columns=columns),
    )
    def _read(context: AssetExecutionContext, source_data: SourceData) -> Output[pl.DataFrame]:
        key = context.partition_key
        frame = source_data.read(source, partition_key=key)
        return Output(
            frame,
            metadata={
                "source": MetadataValue.path(str(source_data.path(source, partition_key=key))),
                "preview": preview(frame),
            },
        )

    return _read


vehicles = _source_asset(
    "vehicles",
    "vehicles",
    VEHICLE_COLUMNS,
    "The vehicles to place (vin, price, miles), as read for the day from SourceData.vehicles.",
)
candidate_dealers = _source_asset(
    "candidate_dealers",
    "dealers",
    DEALER_COLUMNS,
    "Candidate dealer rooftops (source, zip and/or mc_location_id), from SourceData.dealers.",
)
acquisition_candidates = _source_asset(
    "acquisition_candidates",
    "acquisitions",
    ACQUISITION_COLUMNS,
    "Each dealer's acquisition candidates (dealer + vehicle per row), from "
    "SourceData.acquisitions.",
)


def _distinct_pairs(pairs: pl.DataFrame) -> int:
    return pairs.select(c for c in ACQUISITION_COLUMNS if c in pairs.columns).n_unique()


def _ranking_events(
    name: str,
    pairs: pl.DataFrame,
    result: mm.RankResult,
    *,
    group_by: tuple[str, ...],
    config: RankingConfig,
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    """Yield a ranking asset's two outputs, then its check results."""
    yield Output(result.ranked, output_name=name, metadata=ranking_metadata(result))
    yield Output(
        result.failed,
        output_name=f"{name}_failures",
        metadata={"preview": preview(result.failed)},
    )
    yield from ranking_check_results(
        name,
        distinct_pairs=_distinct_pairs(pairs),
        ranked=result.ranked,
        failed=result.failed,
        group_by=group_by,
        max_failure_rate=config.max_failure_rate,
    )


def _ranking_outs(name: str, what: str) -> dict[str, AssetOut]:
    return {
        name: AssetOut(
            description=f"{what}: ranked pairs (mm.schemas.RankedMatch).",
            kinds=_KINDS,
            metadata=schema_metadata(RankedMatch),
        ),
        f"{name}_failures": AssetOut(
            description=f"{what}: pairs that could not be ranked, with error_code and "
            "error_message (mm.schemas.FailedMatch).",
            kinds=_KINDS,
            metadata=schema_metadata(FailedMatch),
        ),
    }


@multi_asset(
    outs=_ranking_outs("placement", "Dealers ranked for each vehicle"),
    partitions_def=PARTITIONS,
    group_name=GROUP,
    pool=BATCH_POOL,
    check_specs=ranking_check_specs("placement"),
)
def placement(
    context: AssetExecutionContext,
    config: RankingConfig,
    marketmatch: MarketMatchResource,
    vehicles: pl.DataFrame,
    candidate_dealers: pl.DataFrame,
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    """Rank every candidate dealer for every vehicle (``mm.rank_dealers`` over the cross pairs).

    Large frames go through the batch API (``mode``); the job's client reference is
    ``mm-placement-<partition>``, so a retried run of the day adopts the job it submitted.
    """
    pairs = mm.cross_pairs(vehicles, candidate_dealers)
    result = marketmatch.rank_dealers(
        pairs, client_reference=f"mm-placement-{context.partition_key}"
    )
    yield from _ranking_events("placement", pairs, result, group_by=VEHICLE_COLUMNS, config=config)


@multi_asset(
    outs=_ranking_outs("sourcing", "Acquisition candidates ranked for each dealer"),
    partitions_def=PARTITIONS,
    group_name=GROUP,
    pool=API_POOL,
    check_specs=ranking_check_specs("sourcing"),
)
def sourcing(
    config: RankingConfig,
    marketmatch: MarketMatchResource,
    acquisition_candidates: pl.DataFrame,
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    """Rank each dealer's acquisition candidates (``mm.rank_vins``, online)."""
    result = marketmatch.rank_vins(acquisition_candidates)
    yield from _ranking_events(
        "sourcing",
        acquisition_candidates,
        result,
        group_by=DEALER_COLUMNS,
        config=config,
    )


@asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    kinds=_KINDS,
    metadata=schema_metadata(RankedMatch),
)
def best_placement(placement: pl.LazyFrame) -> Output[pl.DataFrame]:
    """Each vehicle's rank-1 dealer, with its scores (one row per ranked vehicle)."""
    best = placement.filter(pl.col("vin_rank") == 1).sort(VEHICLE_COLUMNS).collect()
    return Output(best, metadata={"preview": preview(best)})


ALL_ASSETS = (
    vehicles,
    candidate_dealers,
    acquisition_candidates,
    placement,
    sourcing,
    best_placement,
)
"""Every asset definition of the graph, upstream first."""
