"""Dagster metadata built from polars frames, pandera models and ranking results.

Nothing here ever sees the API key: results and frames carry none, and the client is not
touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandera.polars as pa
import polars as pl
from dagster import (
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)

import mm_pipeline as mm

__all__ = ["preview", "ranking_metadata", "schema_metadata"]

_PREVIEW_ROWS = 10


def schema_metadata(
    model: type[pa.DataFrameModel], *, columns: Iterable[str] | None = None
) -> dict[str, Any]:
    """Definition metadata holding the column schema of a pandera model (``dagster/column_schema``).

    Parameters
    ----------
    model
        A pandera polars ``DataFrameModel``.
    columns
        Only these columns, in this order (default: all of the model's).

    Examples
    --------
    >>> class Pair(pa.DataFrameModel):
    ...     vin: str = pa.Field(str_length=17)
    ...     zip: str | None = pa.Field(nullable=True)
    >>> schema = schema_metadata(Pair)["dagster/column_schema"].schema
    >>> [(c.name, c.type, c.constraints.nullable, c.constraints.other) for c in schema.columns]
    [('vin', 'String', False, ['str_length(17)']), ('zip', 'String', True, [])]
    """
    model_columns = model.to_schema().columns
    names = list(model_columns) if columns is None else list(columns)
    schema = TableSchema(
        columns=[
            TableColumn(
                name,
                type=str(model_columns[name].dtype),
                description=model_columns[name].description,
                constraints=TableColumnConstraints(
                    nullable=model_columns[name].nullable,
                    unique=model_columns[name].unique,
                    other=[str(check.error) for check in model_columns[name].checks],
                ),
            )
            for name in names
        ]
    )
    return {"dagster/column_schema": MetadataValue.table_schema(schema)}


def preview(frame: pl.DataFrame, *, rows: int = _PREVIEW_ROWS) -> MetadataValue:
    """Render the first ``rows`` rows as a markdown table (Dagster renders it in the UI).

    Examples
    --------
    >>> print(preview(pl.DataFrame({"vin": ["A", "B"], "vin_rank": [1, 2]}), rows=1).value)
    | vin | vin_rank |
    |-----|----------|
    | A   | 1        |
    """
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=rows,
        tbl_cols=-1,
        tbl_width_chars=10_000,
        fmt_str_lengths=80,
    ):
        return MetadataValue.md(str(frame.head(rows)))


def ranking_metadata(result: mm.RankResult) -> dict[str, Any]:
    """Materialization metadata of a ranking asset: failures by code, request stats, preview.

    Row counts come from the IO manager (``dagster/row_count``); every field of
    ``result.stats`` (requests, retries, batch job ids, elapsed, ...) is reported as
    ``stats/<field>``.
    """
    by_code = result.failed.group_by("error_code").len().sort("error_code").rows()
    stats = {
        f"stats/{name}": MetadataValue.json(list(value)) if isinstance(value, tuple) else value
        for name, value in result.stats.as_dict().items()
    }
    return {
        "failures_by_error_code": MetadataValue.json(dict(by_code)),
        **stats,
        "preview": preview(result.ranked),
    }
