"""A small Parquet IO manager for polars frames, one file per asset and partition.

dagster-polars' Parquet IO manager cannot read back under polars 2 (it passes ``rechunk=`` to
``scan_parquet``, removed in polars 2.0), so this project keeps its own: it is the whole of what
the assets need, and it lays files out so that an analyst can read them with plain polars.

Layout under ``base_dir`` (default ``data/``, relative to the working directory)::

    {base_dir}/{asset}/date={YYYY-MM-DD}/data.parquet    daily-partitioned assets
    {base_dir}/{asset}/partition={key}/data.parquet       other partitioned assets
    {base_dir}/{asset}/data.parquet                       unpartitioned assets

so ``pl.scan_parquet("data/placement/", hive_partitioning=True)`` reads every day at once, with
the day as a ``date`` column.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import polars as pl
from dagster import (
    AssetKey,
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    TimeWindowPartitionsDefinition,
)
from pydantic import Field

__all__ = ["DEFAULT_BASE_DIR", "PolarsParquetIOManager"]

DEFAULT_BASE_DIR: Final = "data"
"""The data folder by default (relative to the working directory)."""

_FILE_NAME = "data.parquet"


class PolarsParquetIOManager(ConfigurableIOManager):
    """Store ``pl.DataFrame`` / ``pl.LazyFrame`` outputs as Parquet; load them back as either.

    An input annotated ``pl.LazyFrame`` is loaded with ``pl.scan_parquet`` (nothing read until it
    is collected); anything else is loaded eagerly as a ``pl.DataFrame``. Files are written to a
    temporary name and renamed into place, so a crashed run never leaves a half-written file.

    Examples
    --------
    >>> import polars as pl, tempfile
    >>> from dagster import asset, materialize
    >>> @asset
    ... def numbers() -> pl.DataFrame:
    ...     return pl.DataFrame({"n": [1, 2, 3]})
    >>> with tempfile.TemporaryDirectory() as base:
    ...     ok = materialize([numbers], resources={"io_manager": PolarsParquetIOManager(
    ...         base_dir=base)}).success
    ...     print(ok, pl.read_parquet(f"{base}/numbers/data.parquet")["n"].sum())
    True 6
    """

    base_dir: str = Field(
        default=DEFAULT_BASE_DIR,
        description="Folder holding one sub-folder per asset (relative to the working directory).",
    )

    def path_for(
        self,
        asset_key: AssetKey,
        partition_key: str | None = None,
        *,
        time_partitioned: bool = True,
    ) -> Path:
        """Return the Parquet file of ``asset_key`` (and ``partition_key``, if partitioned)."""
        folder = Path(self.base_dir, *asset_key.path)
        if partition_key is not None:
            folder = folder / f"{'date' if time_partitioned else 'partition'}={partition_key}"
        return folder / _FILE_NAME

    def _paths(self, context: InputContext | OutputContext) -> list[Path]:
        if not context.has_asset_partitions:
            return [self.path_for(context.asset_key)]
        timed = isinstance(context.asset_partitions_def, TimeWindowPartitionsDefinition)
        return [
            self.path_for(context.asset_key, key, time_partitioned=timed)
            for key in context.asset_partition_keys
        ]

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        """Write ``obj`` atomically to the asset's (single) partition file."""
        if not isinstance(obj, pl.DataFrame | pl.LazyFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: PolarsParquetIOManager stores polars "
                f"frames, got {type(obj).__name__}"
            )
        (path,) = self._paths(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if isinstance(obj, pl.LazyFrame):
            obj.sink_parquet(tmp)
            rows = pl.scan_parquet(tmp).select(pl.len()).collect().item()
        else:
            obj.write_parquet(tmp)
            rows = obj.height
        tmp.replace(path)
        context.add_output_metadata(
            {
                "dagster/row_count": MetadataValue.int(rows),
                "path": MetadataValue.path(str(path)),
            }
        )

    def load_input(self, context: InputContext) -> pl.DataFrame | pl.LazyFrame:
        """Scan the partition file(s) of the upstream asset; collect unless a LazyFrame is asked."""
        paths = self._paths(context)
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has not been materialized for "
                f"{len(missing)} partition(s); missing: {', '.join(missing[:5])}"
            )
        frame = pl.scan_parquet(paths)
        if context.dagster_type.typing_type is pl.LazyFrame:
            return frame
        return frame.collect()
