"""The placement plan step: ``mm.assign`` over a ranking step's ranked asset, with its checks.

``rank_dealers_assets(..., assign=PlacementPlan(capacity=...))`` appends this step to the
ranking step (the factory's extension point): one multi-asset ``<name>_plan`` (one row per
placed vehicle, ``mm.AssignResult.assigned``) + ``<name>_plan_unassigned`` (every vehicle not
placed, with a reason), partitioned and grouped like the ranking, reading the ranked asset (lazily:
a Parquet scan with ``PolarsParquetIOManager``, of which ``mm.assign`` and ``mm.check_plan``
collect the candidate rows and the distinct vehicles only) and, when capacity comes from an
asset, that asset (a dealers frame with a ``capacity`` column). It calls no API, so it needs no
resource and no pool.

(No ``from __future__ import annotations`` here: Dagster reads these annotations at runtime.)
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    Config,
    MetadataValue,
    Output,
    TableColumn,
    TableSchema,
    multi_asset,
)
from pydantic import Field

import mm_pipeline as mm
from mm_pipeline.dagster._metadata import plan_metadata, preview, schema_metadata
from mm_pipeline.dagster._plan_checks import plan_check_results, plan_check_specs
from mm_pipeline.dagster._step import RankingStep
from mm_pipeline.dagster._upstream import POLARS_FRAME, UpstreamAsset, asset_key, eager, lazy

__all__ = ["DEFAULT_MIN_PLACED_SHARE", "PlacementPlan", "PlanConfig", "placement_plan_asset"]

DEFAULT_MIN_PLACED_SHARE = 0.9
"""The ``placed_share`` check fails when fewer than this share of the vehicles is placed."""

_KINDS = {"polars"}


@dataclass(frozen=True, kw_only=True)
class PlacementPlan:
    """Options of the placement plan step appended by ``rank_dealers_assets(assign=...)``.

    Attributes
    ----------
    capacity
        How many vehicles a dealer takes: one int for every dealer, or an upstream asset (its
        key or definition) holding a dealers frame with ``capacity`` (as ``mm.assign``'s
        capacity frame; e.g. the step's own dealers asset).
    default_capacity, cost, max_rank
        As ``mm.assign``: the capacity of dealers the frame does not list, what a placement
        costs (a column name or a polars expression; default ``vin_rank``), which ranks are
        candidates (None: only exact ones).
    min_placed_share
        The ``placed_share`` check fails below this share of vehicles placed (run config
        :class:`PlanConfig` may override it per run).
    suffix
        The plan asset is ``<name>_<suffix>``, its unassigned vehicles
        ``<name>_<suffix>_unassigned``.

    Examples
    --------
    >>> PlacementPlan(capacity=3).capacity_key is None
    True
    >>> PlacementPlan(capacity=["crm", "rooftops"]).capacity_key.to_user_string()
    'crm/rooftops'
    >>> PlacementPlan(capacity=-1)
    Traceback (most recent call last):
    ...
    ValueError: PlacementPlan: capacity must be a non-negative int or an asset; got -1
    """

    capacity: int | UpstreamAsset
    default_capacity: int = 0
    cost: str | pl.Expr = "vin_rank"
    max_rank: int | None = None
    min_placed_share: float = DEFAULT_MIN_PLACED_SHARE
    suffix: str = "plan"

    def __post_init__(self) -> None:
        """Check the values that can be checked before any data is seen."""
        if isinstance(self.capacity, bool) or (
            isinstance(self.capacity, int) and self.capacity < 0
        ):
            raise ValueError(
                f"PlacementPlan: capacity must be a non-negative int or an asset; "
                f"got {self.capacity!r}"
            )
        if not 0.0 <= self.min_placed_share <= 1.0:
            raise ValueError(
                f"PlacementPlan: min_placed_share must lie in [0, 1]; got {self.min_placed_share}"
            )
        if isinstance(self.default_capacity, bool) or self.default_capacity < 0:
            raise ValueError(
                "PlacementPlan: default_capacity must be a non-negative int; "
                f"got {self.default_capacity!r}"
            )
        self.capacity_key  # noqa: B018 (a bad asset raises TypeError here, when defined)

    @property
    def capacity_key(self) -> AssetKey | None:
        """The key of the capacity asset (None: one int for every dealer)."""
        if isinstance(self.capacity, int):
            return None
        return asset_key(self.capacity, "capacity")


class PlanConfig(Config):
    """Run configuration of a placement plan step."""

    min_placed_share: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The placed_share check fails below this share of vehicles placed "
        "(None: the step's PlacementPlan.min_placed_share).",
    )


def _column_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """Column schemas of the plan (a ranked row + placement_cost) and of the unassigned."""
    from mm_pipeline.schemas import RankedMatch  # noqa: PLC0415 (pandera: 0.7 s)

    ranked = schema_metadata(RankedMatch)["dagster/column_schema"].schema
    cost = TableColumn(
        "placement_cost", "Float64", description="What this placement costs (lower is better)."
    )
    unassigned = [
        *(column for column in ranked.columns if column.name in ("vin", "price", "miles")),
        TableColumn("reason", "String", description="no_candidate, capacity or invalid."),
        TableColumn("candidates", "UInt32", description="The vehicle's candidate pairs."),
        TableColumn("message", "String", description="Why it was not placed, for people."),
    ]

    def metadata(columns: list[TableColumn]) -> dict[str, Any]:
        return {"dagster/column_schema": MetadataValue.table_schema(TableSchema(columns))}

    return metadata([*ranked.columns, cost]), metadata(unassigned)


def _plan(
    options: PlacementPlan,
    config: PlanConfig,
    plan_key: AssetKey,
    ranked: pl.LazyFrame,
    capacity: int | pl.DataFrame,
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    """Make the plan; yield its two outputs, then the check results.

    ``ranked`` is lazy (a scan of the stored asset, with ``PolarsParquetIOManager``): the plan
    and its checks hold its candidate rows and its distinct vehicles, never all its pairs.
    """
    plan = mm.assign(
        ranked,
        capacity=capacity,
        default_capacity=options.default_capacity,
        cost=options.cost,
        max_rank=options.max_rank,
    )
    yield Output(plan.assigned, output_name="plan", metadata=plan_metadata(plan))
    by_reason = plan.unassigned.group_by("reason").len().sort("reason").rows()
    yield Output(
        plan.unassigned,
        output_name="unassigned",
        metadata={
            "by_reason": MetadataValue.json(dict(by_reason)),
            "preview": preview(plan.unassigned),
        },
    )
    minimum = (
        options.min_placed_share if config.min_placed_share is None else config.min_placed_share
    )
    yield from plan_check_results(
        plan_key,
        plan=plan,
        ranked=ranked,
        capacity=capacity,
        default_capacity=options.default_capacity,
        min_placed_share=minimum,
    )


def placement_plan_asset(step: RankingStep, options: PlacementPlan) -> AssetsDefinition:
    """Build the placement plan multi-asset downstream of ``step`` (a ``RankingStep``).

    Examples
    --------
    >>> from mm_pipeline.dagster import rank_dealers_assets
    >>> _, plan = rank_dealers_assets(name="placement", pairs="pairs",
    ...                               assign=PlacementPlan(capacity="rooftops"))
    >>> sorted(key.to_user_string() for key in plan.keys)
    ['placement_plan', 'placement_plan_unassigned']
    >>> sorted(key.to_user_string() for key in plan.dependency_keys)
    ['placement', 'rooftops']
    """
    if not isinstance(options, PlacementPlan):
        raise TypeError(f"assign= takes a PlacementPlan, got {type(options).__name__}")
    plan_key = step.key(options.suffix)
    unassigned_key = step.key(f"{options.suffix}_unassigned")
    ranked_name = step.ranked_key.to_user_string()
    capacity_key = options.capacity_key
    capacity_text = (
        f"capacity {options.capacity} per dealer"
        if capacity_key is None
        else f"capacity from {capacity_key.to_user_string()}"
    )
    plan_schema, unassigned_schema = _column_schemas()
    # Read lazily whatever its size: mm.assign and the checks never need every ranked pair.
    ins = {"ranked": AssetIn(key=step.ranked_key, dagster_type=POLARS_FRAME)}
    if capacity_key is not None:
        ins["capacity"] = AssetIn(key=capacity_key)
    decorator = multi_asset(
        name="__".join(plan_key.path),
        outs={
            "plan": AssetOut(
                key=plan_key,
                description=f"Placement plan over {ranked_name} (mm.assign, {capacity_text}): "
                "one row per placed vehicle, its ranked row and placement_cost.",
                kinds=_KINDS,
                metadata=plan_schema,
            ),
            "unassigned": AssetOut(
                key=unassigned_key,
                description=f"Vehicles of {ranked_name} the plan does not place, with a reason "
                "(no_candidate, capacity, invalid).",
                kinds=_KINDS,
                metadata=unassigned_schema,
            ),
        },
        ins=ins,
        partitions_def=step.partitions_def,
        group_name=step.group_name,
        check_specs=plan_check_specs(plan_key),
    )
    if capacity_key is None:
        assert isinstance(options.capacity, int)  # noqa: S101 (narrowing for mypy)
        per_dealer: int = options.capacity

        def plan_fixed(
            context: AssetExecutionContext, config: PlanConfig, ranked: Any
        ) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
            yield from _plan(options, config, plan_key, lazy(ranked, ranked_name), per_dealer)

        return decorator(plan_fixed)

    def plan_from_asset(
        context: AssetExecutionContext, config: PlanConfig, ranked: Any, capacity: Any
    ) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
        frame = eager(capacity, capacity_key.to_user_string())
        yield from _plan(options, config, plan_key, lazy(ranked, ranked_name), frame)

    return decorator(plan_from_asset)
