"""Factories of ranking steps wired to a user's own upstream assets.

``rank_dealers_assets`` / ``rank_vins_assets`` build one ranking step -- the ranked asset, its
failures asset and their checks, in one multi-asset -- over the upstream assets the user names:
a pairs asset, or (for ``rank_dealers``) a vehicles and a dealers asset that are crossed with
``mm.cross_pairs``. The step reaches MarketMatch through :class:`MarketMatchResource` under
``resource_key`` and stores its outputs with whatever IO manager the user configured.

Extension point: a step downstream of a ranking is a function ``(RankingStep, ...) ->
AssetsDefinition`` (``_step``) that reads ``step.ranked_key`` and names its asset
``step.key("<suffix>")``; the factory appends it to the list it returns. The placement plan
(``assign=``, ``_plan``) is one.

With ``spill_dir=`` a step ranks in bounded memory (``_spill``): upstream assets are read
lazily, crossed lazily, ranked through ``mm.rank_dealers(..., output=<run folder>)``, and the
LazyFrames of the result are yielded for the IO manager to store.

(No ``from __future__ import annotations`` here: Dagster reads these annotations at runtime.)
"""

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
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
    Output,
    PartitionsDefinition,
    multi_asset,
)
from pydantic import Field

import mm_pipeline as mm
from mm_pipeline.dagster._checks import ranking_check_results, ranking_check_specs
from mm_pipeline.dagster._metadata import Frame, preview, ranking_metadata, schema_metadata
from mm_pipeline.dagster._plan import PlacementPlan, placement_plan_asset
from mm_pipeline.dagster._resources import MarketMatchResource
from mm_pipeline.dagster._spill import distinct_rows, remove_spill, spill_folder
from mm_pipeline.dagster._step import DEALER_COLUMNS, VEHICLE_COLUMNS, Kind, RankingStep
from mm_pipeline.dagster._upstream import POLARS_FRAME, UpstreamAsset, asset_key, eager, lazy

__all__ = ["API_POOL", "BATCH_POOL", "RankingConfig", "rank_dealers_assets", "rank_vins_assets"]

BATCH_POOL = "marketmatch_batch"
"""Default pool of ``rank_dealers`` steps, which may submit a batch job: give it limit 1 (one
active batch job per account)."""
API_POOL = "marketmatch_api"
"""Default pool of ``rank_vins`` steps (online only): they share the account's rate limit."""

_PAIR_COLUMNS = (*VEHICLE_COLUMNS, *DEALER_COLUMNS)
_KINDS = {"polars"}

StepEvent = Output[Any] | AssetCheckResult
Distinct = Callable[[mm.RankStats], int]
"""How a step counts its distinct input pairs (for the ``complete`` check), given the stats."""


class RankingConfig(Config):
    """Run configuration of a ranking step."""

    max_failure_rate: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="The failure_rate check fails above this share of failed pairs.",
    )


def _prefix(key_prefix: str | Sequence[str] | None) -> tuple[str, ...]:
    if key_prefix is None:
        return ()
    return (key_prefix,) if isinstance(key_prefix, str) else tuple(key_prefix)


def _folder(spill_dir: str | Path | None) -> Path | None:
    """``spill_dir`` as a Path; a TypeError naming it if it is not a folder."""
    if spill_dir is None or isinstance(spill_dir, Path):
        return spill_dir
    if isinstance(spill_dir, str | os.PathLike):
        return Path(spill_dir)
    raise TypeError(f"spill_dir= takes a folder (str or Path), got {type(spill_dir).__name__}")


def _client_reference(step: RankingStep, context: AssetExecutionContext) -> str:
    """``<client_reference or mm-<name>>[-<partition>]``: a retried run adopts its batch job."""
    base = str(step.options.get("client_reference") or f"mm-{step.name}")
    return f"{base}-{context.partition_key}" if context.has_partition_key else base


def _rank(
    step: RankingStep, context: AssetExecutionContext, pairs: Frame, output: Path | None
) -> mm.RankResult[pl.DataFrame] | mm.RankResult[pl.LazyFrame]:
    """Rank ``pairs`` with the step's resource: in memory, or into ``output`` (LazyFrames)."""
    resource: MarketMatchResource = getattr(context.resources, step.resource_key)
    options = dict(step.options)
    if step.kind == "rank_vins":
        return resource.rank_vins(pairs, **options)
    options["client_reference"] = _client_reference(step, context)
    if output is None:
        return resource.rank_dealers(pairs, **options)
    context.log.info(f"Ranking through {output} (spill_dir): the outputs are Parquet scans")
    return resource.rank_dealers(pairs, output=output, **options)


def _run(
    step: RankingStep,
    context: AssetExecutionContext,
    config: RankingConfig,
    pairs: Frame,
    distinct_pairs: Distinct,
) -> Iterator[StepEvent]:
    """Rank ``pairs``; yield the two outputs, then the check results.

    With ``step.spill_dir`` the outputs are LazyFrames scanning the run's folder. Dagster stores
    an output (the IO manager's ``handle_output``) when it is yielded, before this generator
    resumes, so the folder is removed at the end (after the checks have read it), or when the
    step fails.
    """
    output = spill_folder(step, context)
    try:
        result = _rank(step, context, pairs, output)
        yield Output(
            result.ranked,
            output_name="ranked",
            metadata=ranking_metadata(result, group_by=step.group_by, labels=step.labels),
        )
        failed_metadata = {"preview": preview(result.failed)}
        yield Output(result.failed, output_name="failures", metadata=failed_metadata)
        yield from ranking_check_results(
            step.ranked_key,
            distinct_pairs=distinct_pairs(result.stats),
            ranked=result.ranked,
            failed=result.failed,
            group_by=step.group_by,
            max_failure_rate=config.max_failure_rate,
        )
    finally:
        if output is not None and step.spill_dir is not None:
            remove_spill(output, step.spill_dir)


def _in_memory(
    step: RankingStep, context: AssetExecutionContext, config: RankingConfig, pairs: pl.DataFrame
) -> Iterator[StepEvent]:
    """Rank ``pairs`` in memory; the ``complete`` check counts their distinct rows."""
    distinct = pairs.select(c for c in _PAIR_COLUMNS if c in pairs.columns).n_unique()
    yield from _run(step, context, config, pairs, lambda _: distinct)


def _counted_by_the_ranking(stats: mm.RankStats) -> int:
    """Distinct input rows as the ranking counted them (a pairs asset too large to hash here)."""
    return stats.rows - stats.duplicates_removed


def _ranking_asset(step: RankingStep, ins: Mapping[str, AssetKey], what: str) -> AssetsDefinition:
    """Build the multi-asset of ``step`` (ranked + failures + checks) reading ``ins``."""
    from mm_pipeline.schemas import FailedMatch, RankedMatch  # noqa: PLC0415 (pandera: 0.7 s)

    upstream = " and ".join(key.to_user_string() for key in ins.values())
    decorator = multi_asset(
        name="__".join(step.ranked_key.path),
        outs={
            "ranked": AssetOut(
                key=step.ranked_key,
                description=f"{what} (mm.{step.kind} over {upstream}): ranked pairs "
                "(mm.schemas.RankedMatch).",
                kinds=_KINDS,
                metadata=schema_metadata(RankedMatch),
            ),
            "failures": AssetOut(
                key=step.failures_key,
                description=f"{what}: pairs that could not be ranked, with error_code and "
                "error_message (mm.schemas.FailedMatch).",
                kinds=_KINDS,
                metadata=schema_metadata(FailedMatch),
            ),
        },
        ins={
            name: AssetIn(key=key)
            if step.spill_dir is None
            else AssetIn(key=key, dagster_type=POLARS_FRAME)  # scanned, not read whole
            for name, key in ins.items()
        },
        partitions_def=step.partitions_def,
        group_name=step.group_name,
        required_resource_keys={step.resource_key},
        pool=step.pool,
        check_specs=ranking_check_specs(step.ranked_key),
    )
    if "pairs" in ins:

        def rank_pairs(
            context: AssetExecutionContext, config: RankingConfig, pairs: Any
        ) -> Iterator[StepEvent]:
            if step.spill_dir is not None:
                lazy_pairs = lazy(pairs, upstream)
                yield from _run(step, context, config, lazy_pairs, _counted_by_the_ranking)
                return
            yield from _in_memory(step, context, config, eager(pairs, upstream))

        return decorator(rank_pairs)

    def rank_crossed(
        context: AssetExecutionContext, config: RankingConfig, vehicles: Any, dealers: Any
    ) -> Iterator[StepEvent]:
        names = ins["vehicles"].to_user_string(), ins["dealers"].to_user_string()
        if step.spill_dir is not None:  # a lazy cross join: the pairs are never in memory
            cars, rooftops = lazy(vehicles, names[0]), lazy(dealers, names[1])

            def distinct(_: mm.RankStats) -> int:
                # Every distinct vehicle with every distinct dealer: no hash of the pairs.
                return distinct_rows(cars, VEHICLE_COLUMNS) * distinct_rows(
                    rooftops, DEALER_COLUMNS
                )

            yield from _run(step, context, config, mm.cross_pairs(cars, rooftops), distinct)
            return
        crossed = eager(
            mm.cross_pairs(eager(vehicles, names[0]), eager(dealers, names[1])), upstream
        )
        unique = crossed.select(_PAIR_COLUMNS).n_unique()
        yield from _run(step, context, config, crossed, lambda _: unique)

    return decorator(rank_crossed)


_WHAT: dict[Kind, str] = {
    "rank_dealers": "Dealers ranked for each vehicle",
    "rank_vins": "Candidate vehicles ranked for each dealer",
}


def _ranking_step(step: RankingStep, upstream: Mapping[str, UpstreamAsset]) -> AssetsDefinition:
    """Resolve the upstream keys and build the ranking multi-asset of ``step``."""
    ins = {arg: asset_key(value, arg) for arg, value in upstream.items()}
    return _ranking_asset(step, ins, _WHAT[step.kind])


def rank_dealers_assets(
    *,
    name: str,
    pairs: UpstreamAsset | None = None,
    vehicles: UpstreamAsset | None = None,
    dealers: UpstreamAsset | None = None,
    partitions_def: PartitionsDefinition | None = None,
    group_name: str | None = None,
    key_prefix: str | Sequence[str] | None = None,
    resource_key: str = "marketmatch",
    pool: str | None = BATCH_POOL,
    assign: PlacementPlan | None = None,
    spill_dir: str | Path | None = None,
    **options: Any,
) -> list[AssetsDefinition]:
    """Definitions of one ``mm.rank_dealers`` step over your own upstream assets.

    Parameters
    ----------
    name
        Name of the ranked asset; its failures asset is ``<name>_failures``.
    pairs
        An upstream asset of vehicle-dealer pairs (``vin, price, miles, source`` and optional
        ``zip``, ``mc_location_id``) ...
    vehicles, dealers
        ... or a vehicles asset (``vin, price, miles``) and a dealers asset (``source``,
        optional ``zip``, ``mc_location_id``), every vehicle paired with every dealer
        (``mm.cross_pairs``). Upstream values may be polars DataFrames or LazyFrames.
    partitions_def
        Partitions of the step (those of the upstream assets, typically); None: unpartitioned.
    group_name, key_prefix
        Asset group, and key prefix of the step's assets (not of the upstream ones).
    resource_key
        Resource key of the :class:`MarketMatchResource`.
    pool
        Dagster concurrency pool (default ``marketmatch_batch``: give it limit 1, since an
        account has one active batch job at a time). None: no pool.
    assign
        Also plan where each vehicle goes (``mm.assign`` under dealer capacity): a
        :class:`PlacementPlan` appends the ``<name>_plan`` and ``<name>_plan_unassigned``
        assets, downstream of ``<name>``, with the checks of :data:`PLAN_CHECKS`.
    spill_dir
        Rank more pairs than fit in memory: a folder (relative to the working directory unless
        absolute) under which each run ranks through ``mm.rank_dealers(...,
        output=<spill_dir>/<asset key path>/<partition key or "unpartitioned">)``. The upstream
        assets are read lazily (``PolarsParquetIOManager`` scans them; any polars frame is
        accepted), vehicles and dealers are crossed lazily, and the ``<name>`` and
        ``<name>_failures`` outputs are LazyFrames over the Parquet files written there; the IO
        manager stores each when it is yielded (``PolarsParquetIOManager`` sinks it, never
        collecting it) and the run's folder is removed once the step is done. Metadata and
        checks are small lazy aggregates (row counts also come from ``stats/ranked`` and
        ``stats/failed``); the ``complete`` check's distinct input pairs are the distinct
        vehicles times the distinct dealers, or, for a pairs asset, the ranking's own count
        (``stats.rows - stats.duplicates_removed``). Pairs are ranked as ``output=`` ranks them
        (see ``mm.rank_dealers``). The IO manager must write a LazyFrame's rows: a pickling one
        would store a plan over files this step removes. None (default): in memory.
    **options
        Options of ``mm.rank_dealers`` (``mode``, ``exact_top_k``, ``chunk_size``,
        ``on_request_failed``, ``cache_dir``, ...), over the resource's defaults. The batch
        job's client reference is ``<client_reference or mm-<name>>-<partition key>``.

    Returns
    -------
    list[AssetsDefinition]
        The ranking multi-asset: ``<name>`` (``mm.schemas.RankedMatch``) and
        ``<name>_failures`` (``mm.schemas.FailedMatch``), with the checks of
        :data:`RANKING_CHECKS` on ``<name>``; run config :class:`RankingConfig`. With
        ``assign=``, then the plan multi-asset (run config :class:`PlanConfig`).

    Raises
    ------
    TypeError
        When the upstream arguments do not name a pairs asset or a vehicles and a dealers
        asset, an option is not one of ``mm.rank_dealers``'s, or ``spill_dir`` is no folder.
    mm_pipeline.ConfigurationError
        When an option's value does not fit it (e.g. ``mode="fast"``).

    Examples
    --------
    >>> assets = rank_dealers_assets(
    ...     name="placement", vehicles="my_inventory", dealers="my_rooftops", mode="online"
    ... )
    >>> sorted(key.to_user_string() for key in assets[0].keys)
    ['placement', 'placement_failures']
    >>> big = rank_dealers_assets(name="placement", vehicles="my_inventory",
    ...                           dealers="my_rooftops", mode="batch", spill_dir="data/.mm_spill")
    >>> [d.dagster_type.display_name for d in big[0].op.input_defs]
    ['PolarsFrame', 'PolarsFrame']
    """
    crossed = pairs is None and vehicles is not None and dealers is not None
    if not crossed and (pairs is None or vehicles is not None or dealers is not None):
        raise TypeError(
            "rank_dealers_assets needs either pairs= (a pairs asset) or both vehicles= and "
            "dealers= (crossed with mm.cross_pairs), not both"
        )
    upstream = {"pairs": pairs, "vehicles": vehicles, "dealers": dealers}
    step = RankingStep(name, "rank_dealers", _prefix(key_prefix), partitions_def, group_name,
                       resource_key, pool, options, _folder(spill_dir))  # fmt: skip
    ranking = _ranking_step(step, {k: v for k, v in upstream.items() if v is not None})
    # Steps downstream of the ranking build on `step` and are appended here.
    return [ranking] if assign is None else [ranking, placement_plan_asset(step, assign)]


def rank_vins_assets(
    *,
    name: str,
    pairs: UpstreamAsset,
    partitions_def: PartitionsDefinition | None = None,
    group_name: str | None = None,
    key_prefix: str | Sequence[str] | None = None,
    resource_key: str = "marketmatch",
    pool: str | None = API_POOL,
    **options: Any,
) -> list[AssetsDefinition]:
    """Definitions of one ``mm.rank_vins`` step (always online) over your own pairs asset.

    As :func:`rank_dealers_assets`, with each dealer rooftop's candidate vehicles as the pairs;
    ``options`` are those of ``mm.rank_vins`` and the default pool is ``marketmatch_api``.
    ``spill_dir=`` is refused (TypeError): ``mm.rank_vins`` has no ``output=`` route.

    Examples
    --------
    >>> assets = rank_vins_assets(name="sourcing", pairs="candidates", key_prefix="mm")
    >>> sorted(key.to_user_string() for key in assets[0].keys)
    ['mm/sourcing', 'mm/sourcing_failures']
    """
    spill_dir = _folder(options.pop("spill_dir", None))  # refused by RankingStep, with a reason
    step = RankingStep(name, "rank_vins", _prefix(key_prefix), partitions_def, group_name,
                       resource_key, pool, options, spill_dir)  # fmt: skip
    return [_ranking_step(step, {"pairs": pairs})]
