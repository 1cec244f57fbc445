"""Upstream assets of a step: their keys, and their values as eager or lazy polars frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from dagster import AssetKey, AssetsDefinition, AssetSpec, DagsterType

__all__ = ["POLARS_FRAME", "UpstreamAsset", "asset_key", "eager", "lazy"]

UpstreamAsset = AssetKey | str | Sequence[str] | AssetSpec | AssetsDefinition
"""An upstream asset: its key (``AssetKey``, ``"name"``, ``["prefix", "name"]``) or definition."""


def asset_key(upstream: UpstreamAsset, argument: str) -> AssetKey:
    """Return the key of ``upstream``; a TypeError naming ``argument`` if it names no asset.

    Examples
    --------
    >>> asset_key(["crm", "rooftops"], "dealers").to_user_string()
    'crm/rooftops'
    """
    if isinstance(upstream, AssetSpec | AssetsDefinition):
        return upstream.key
    try:
        return AssetKey.from_coercible(upstream)
    except Exception as exc:  # Dagster raises its own check errors here
        raise TypeError(
            f"{argument}= takes an asset key or definition, got {type(upstream).__name__}"
        ) from exc


POLARS_FRAME = DagsterType(
    type_check_fn=lambda _context, value: isinstance(value, pl.DataFrame | pl.LazyFrame),
    name="PolarsFrame",
    description="A polars DataFrame or LazyFrame.",
    typing_type=pl.LazyFrame,
)
"""The type of an input a step reads lazily: any polars frame passes; ``typing_type`` says
``pl.LazyFrame``, so an IO manager that reads the annotation (``PolarsParquetIOManager``) scans
its files instead of reading them whole."""


def lazy(frame: Any, what: str) -> pl.LazyFrame:
    """Return a LazyFrame over ``frame`` (a DataFrame or LazyFrame); refuse anything else."""
    if isinstance(frame, pl.DataFrame | pl.LazyFrame):
        return frame.lazy()
    raise TypeError(f"{what}: expected a polars DataFrame or LazyFrame, got {type(frame).__name__}")


def eager(frame: Any, what: str) -> pl.DataFrame:
    """Collect a LazyFrame; accept a DataFrame; refuse anything else, naming the input."""
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    raise TypeError(f"{what}: expected a polars DataFrame or LazyFrame, got {type(frame).__name__}")
