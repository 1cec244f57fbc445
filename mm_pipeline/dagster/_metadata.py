"""Dagster metadata built from polars frames, pandera models and ranking results.

Frames may be DataFrames or LazyFrames (a ranking's ``RankResult`` with ``output=``: scans of
Parquet files that need not fit in memory): everything here is computed as small lazy
aggregates (counts, the first rows, a histogram), never by collecting a whole frame.

Nothing here ever sees the API key: results and frames carry none, and the client is not
touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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

__all__ = [
    "count_rows",
    "plan_metadata",
    "plan_summary",
    "preview",
    "ranking_metadata",
    "ranking_summary",
    "schema_metadata",
]

_PREVIEW_ROWS = 10
_TOP = 5
_LOW, _STEP, _BINS = 400.0, 200.0, 13  # 200-point bins over the published 400-3000
_PAIR_COLUMNS = ("vin", "price", "miles", "source", "zip", "mc_location_id")
_SHOWN = ("vin", "source", "zip")
_BAR = 30
_LABELS = ("groups", "candidates")

Frame = pl.DataFrame | pl.LazyFrame


def _small(frame: pl.LazyFrame) -> pl.DataFrame:
    """Collect a small aggregate (a count, a head, a histogram) with the streaming engine."""
    return frame.collect(engine="streaming")


def count_rows(frame: Frame) -> int:
    """Count the rows of ``frame`` without collecting it (a Parquet scan reads the footers).

    Examples
    --------
    >>> count_rows(pl.LazyFrame({"vin": ["A", "B"]}))
    2
    """
    return int(_small(frame.lazy().select(pl.len())).item())


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


def preview(frame: Frame, *, rows: int = _PREVIEW_ROWS) -> MetadataValue:
    """Render the first ``rows`` rows as a markdown table (Dagster renders it in the UI).

    A LazyFrame is read up to its first ``rows`` rows only.

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
        return MetadataValue.md(str(_small(frame.lazy().head(rows))))


def ranking_metadata(
    result: mm.RankResult[pl.DataFrame] | mm.RankResult[pl.LazyFrame],
    *,
    group_by: Sequence[str],
    labels: tuple[str, str] = _LABELS,
) -> dict[str, Any]:
    """Materialization metadata of a ranking asset: summary, failures by code, stats, preview.

    Row counts come from the IO manager (``dagster/row_count``) and from ``result.stats``
    (``stats/ranked``, ``stats/failed``): every field of ``result.stats`` (requests, retries,
    batch job ids, elapsed, ...) is reported as ``stats/<field>``; ``summary`` is
    :func:`ranking_summary`. The result's frames may be LazyFrames (``output=``): only small
    aggregates of them are collected.
    """
    by_code = _small(result.failed.lazy().group_by("error_code").len().sort("error_code")).rows()
    stats = {
        f"stats/{name}": MetadataValue.json(list(value)) if isinstance(value, tuple) else value
        for name, value in result.stats.as_dict().items()
    }
    return {
        "summary": ranking_summary(result.ranked, result.failed, group_by=group_by, labels=labels),
        "failures_by_error_code": MetadataValue.json(dict(by_code)),
        **stats,
        "preview": preview(result.ranked),
    }


def _bar(count: int, largest: int) -> str:
    return "\u2588" * max(1 if count else 0, round(_BAR * count / largest)) if largest else ""


def ranking_summary(
    ranked: Frame,
    failed: Frame,
    *,
    group_by: Sequence[str],
    labels: tuple[str, str] = _LABELS,
) -> MetadataValue:
    """Summarize a ranking in markdown, for the asset's page in the UI.

    What an analyst asks first: how many groups were ranked and how many pairs failed, how the
    rank-1 scores are spread (a histogram of ``dealer_ymm_score`` in 200-point bins), and how
    concentrated the rank-1 places are on a few candidates.

    Parameters
    ----------
    ranked, failed
        A ranking's result frames, in memory or lazy (only aggregates of them are collected).
    group_by
        The columns of a ranking group (the vehicle for ``rank_dealers``, the rooftop for
        ``rank_vins``); the other pair columns identify the ranked candidate.
    labels
        What a group and a candidate are, plural (``("vehicles", "dealers")``).

    Examples
    --------
    >>> ranked = pl.DataFrame({"vin": ["V1", "V1", "V2"], "source": ["a", "b", "a"],
    ...     "dealer_ymm_score": [1500.0, 900.0, 1450.0], "vin_rank": [1, 2, 1]})
    >>> text = ranking_summary(ranked, ranked.clear(), group_by=["vin"]).value
    >>> print(text.splitlines()[0])
    **2 groups ranked**: 3 pairs, 0 failed.
    >>> print(text.splitlines()[2])
    Rank 1 goes to 1 of the 2 candidates ranked.
    >>> print(text.splitlines()[-1])
    | a | 2 | 100.0% |
    """
    group_label, candidate_label = labels
    ranked, failed = ranked.lazy(), failed.lazy()
    columns = ranked.collect_schema().names()
    candidate = [c for c in _PAIR_COLUMNS if c in columns and c not in group_by]
    shown = [c for c in candidate if c in _SHOWN]  # a rooftop by source + zip, a vehicle by vin
    best = ranked.filter(pl.col("vin_rank") == 1)
    groups = count_rows(best)
    lines = [
        f"**{groups:,} {group_label} ranked**: {count_rows(ranked):,} pairs, "
        f"{count_rows(failed):,} failed."
    ]
    if not (groups and candidate):
        return MetadataValue.md("\n".join(lines))
    leaders = best.group_by(candidate).len("rank_1")
    top = _small(
        leaders.sort(["rank_1", *candidate], descending=[True] + [False] * len(candidate)).head(
            _TOP
        )
    )
    score_bin = ((pl.col("dealer_ymm_score") - _LOW) // _STEP).clip(0, _BINS - 1).cast(pl.Int64)
    bins = _small(best.group_by(score_bin.alias("bin")).len())
    counts = dict(bins.iter_rows())
    largest = max(counts.values())
    candidates = count_rows(ranked.select(candidate).unique())
    lines += [
        "",
        f"Rank 1 goes to {count_rows(leaders):,} of the {candidates:,} {candidate_label} ranked.",
        "",
        "Rank-1 dealer_ymm_score:",
        "",
        "| score | pairs | |",
        "|---|---:|---|",
    ]
    for index in range(min(counts), max(counts) + 1):
        count, start = counts.get(index, 0), _LOW + _STEP * index
        lines.append(f"| {start:.0f}-{start + _STEP:.0f} | {count:,} | {_bar(count, largest)} |")
    lines += [
        "",
        f"Most rank-1 places (top {_TOP}):",
        "",
        f"| {' | '.join(shown)} | rank 1 | share |",
        f"|{'---|' * len(shown)}---:|---:|",
    ]
    for row in top.iter_rows(named=True):
        cells = " | ".join("" if row[c] is None else str(row[c]) for c in shown)
        lines.append(f"| {cells} | {row['rank_1']:,} | {row['rank_1'] / groups:.1%} |")
    return MetadataValue.md("\n".join(lines))


def _counted(count: int, largest: int) -> str:
    return f"{count:,} {_bar(count, largest)}".rstrip()


def plan_metadata(plan: mm.AssignResult) -> dict[str, Any]:
    """Materialization metadata of a placement plan: headline figures, summary, stats, preview.

    ``objective`` and ``greedy_objective`` (total cost of the plan and of the greedy baseline,
    which may place fewer vehicles: ``greedy_placed``),
    ``largest_dealer_share_rank1`` (the largest share one dealer would get if every vehicle went
    to its first choice) and ``largest_dealer_share_plan``, ``vehicles_placed``,
    ``solve_seconds``; ``summary`` is :func:`plan_summary`; ``stats`` every field of
    ``plan.stats``.
    """
    s = plan.stats
    return {
        "vehicles_placed": s.placed,
        "objective": MetadataValue.float(s.objective),
        "greedy_objective": MetadataValue.float(s.greedy_objective),
        "greedy_placed": s.greedy_placed,
        "largest_dealer_share_rank1": MetadataValue.float(round(s.first_choice_largest_share, 6)),
        "largest_dealer_share_plan": MetadataValue.float(round(s.largest_share, 6)),
        "solve_seconds": MetadataValue.float(round(s.solve_seconds, 6)),
        "summary": plan_summary(plan),
        "stats": MetadataValue.json(s.as_dict()),
        "preview": preview(plan.assigned),
    }


def plan_summary(plan: mm.AssignResult, *, top: int = 10) -> MetadataValue:
    """Summarize a placement plan in markdown: placed vehicles, then first choice against plan.

    The table lists the ``top`` dealers that are most often a vehicle's first choice, with their
    capacity, their first choices and what the plan gives them, as bars on one scale.

    Examples
    --------
    >>> ranked = pl.DataFrame({"vin": ["V1", "V1", "V2", "V2"], "price": [1] * 4,
    ...     "miles": [1] * 4, "source": ["a", "b", "a", "b"], "zip": ["1"] * 4,
    ...     "vin_rank": [1, 2, 1, 2], "rank_exact": [True] * 4})
    >>> lines = plan_summary(mm.assign(ranked, capacity=1)).value.splitlines()
    >>> print(lines[0])
    **2 of 2 vehicles placed** at 2 dealers (capacity 2).
    >>> print(lines[2])
    Objective 3 (OPTIMAL); the greedy baseline places 2 at 3.
    >>> print(lines[4])
    Largest dealer share: 100.0% by first choice (rank 1), 50.0% in the plan.
    >>> for line in lines[-4:]:
    ...     print(line)
    | dealer | capacity | first choice | plan |
    |---|---:|---|---|
    | a 1 | 1 | 2 ██████████████████████████████ | 1 ███████████████ |
    | b 1 | 1 | 0 | 1 ███████████████ |
    """
    s = plan.stats
    lines = [
        f"**{s.placed:,} of {s.vehicles:,} vehicles placed** at {s.dealers:,} dealers "
        f"(capacity {s.capacity:,}).",
        "",
        f"Objective {s.objective:,.6g} ({s.status}); the greedy baseline places "
        f"{s.greedy_placed:,} at {s.greedy_objective:,.6g}.",
        "",
        f"Largest dealer share: {s.first_choice_largest_share:.1%} by first choice (rank 1), "
        f"{s.largest_share:.1%} in the plan.",
    ]
    dealers = plan.dealers.head(top)
    if not dealers.height:
        return MetadataValue.md("\n".join(lines))
    largest = int(dealers.select(pl.max_horizontal("first_choice", "placed").max()).item())
    lines += [
        "",
        f"Vehicles per dealer, first choice against plan (top {dealers.height}):",
        "",
        "| dealer | capacity | first choice | plan |",
        "|---|---:|---|---|",
    ]
    for row in dealers.iter_rows(named=True):
        name = " ".join(str(row[c]) for c in ("source", "zip") if row[c] is not None)
        first, placed = row["first_choice"], row["placed"]
        lines.append(
            f"| {name or row['mc_location_id']} | {row['capacity']:,} | "
            f"{_counted(first, largest)} | {_counted(placed, largest)} |"
        )
    return MetadataValue.md("\n".join(lines))
