"""The project's MarketMatch asset graph: daily inputs, placement, sourcing, best placement.

::

    vehicles ─────────┐
                      ├─> placement ──> best_placement
    candidate_dealers ┤    ├ placement_failures
                      └────┴──> placement_plan (capacity from candidate_dealers)
                                 └ placement_plan_unassigned
    acquisition_candidates ─> sourcing
                               └ sourcing_failures

Every asset is partitioned by day (MarketMatch refreshes its rankings daily). The two ranking
steps come from ``mm_pipeline.dagster``'s factories, as they would in any user's project; this
module adds only the inputs (read through :class:`SourceData`) and ``best_placement``.

(No ``from __future__ import annotations`` here: Dagster reads these annotations at runtime.)
"""

from typing import Literal

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MetadataValue,
    Output,
    asset,
)

from mm_pipeline.dagster import (
    DEALER_COLUMNS,
    VEHICLE_COLUMNS,
    PlacementPlan,
    SourceData,
    preview,
    rank_dealers_assets,
    rank_vins_assets,
    schema_metadata,
)
from mm_pipeline.schemas import PairsInput, RankedMatch

__all__ = [
    "ALL_ASSETS",
    "GROUP",
    "PARTITIONS",
    "SPILL_DIR",
    "best_placement",
    "placement",
    "placement_plan",
    "sourcing",
]

GROUP = "marketmatch"
PARTITIONS = DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
"""One partition per day, up to and including today (``end_offset=1``)."""

_KINDS = {"polars", "parquet"}
SPILL_DIR = "data/.mm_spill"
"""Where the placement step ranks through Parquet files, one folder per run, removed once stored
(relative to the working directory, beside the resource's answer cache ``data/.mm_cache``)."""


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
    (*VEHICLE_COLUMNS, *DEALER_COLUMNS),
    "Each dealer's acquisition candidates (dealer + vehicle per row), from "
    "SourceData.acquisitions.",
)

# Placement: every vehicle against every candidate dealer, online or by batch job (the
# resource's `mode`); the batch job's client reference is mm-placement-<day>. In bounded memory:
# the day's pairs are crossed lazily and ranked through Parquet files under SPILL_DIR (removed
# once the IO manager has sunk them to data/placement/...), so a day of 10M pairs fits. Then the
# plan: each vehicle to one dealer, within the `capacity` column of candidate_dealers (the
# sample's capacities place about 90 % of the vehicles; the placed_share check wants 85 %).
placement, placement_plan = rank_dealers_assets(
    name="placement",
    vehicles=vehicles,
    dealers=candidate_dealers,
    partitions_def=PARTITIONS,
    group_name=GROUP,
    assign=PlacementPlan(capacity=candidate_dealers, min_placed_share=0.85),
    spill_dir=SPILL_DIR,
)
# Sourcing: each dealer's acquisition candidates, online.
(sourcing,) = rank_vins_assets(
    name="sourcing", pairs=acquisition_candidates, partitions_def=PARTITIONS, group_name=GROUP
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
    placement_plan,
)
"""Every asset definition of the graph, upstream first."""
