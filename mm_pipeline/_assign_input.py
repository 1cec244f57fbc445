"""The ranked input of :func:`mm_pipeline.assign`: its candidate pairs and its distinct vehicles.

A ranked frame may hold far more rows than candidates (by default only the exact ranks, about
ten per vehicle, are). So the input, eager or lazy, is read with two lazy queries run by the
streaming engine: the candidate rows (the candidate rule and the columns pushed into the query
before anything is collected) and one row per distinct vehicle (an aggregate over every row, so
a vehicle without a candidate is still listed). A LazyFrame (a Parquet scan) is never collected
whole: what is held is the candidate rows, with every ranked column (a placed vehicle's plan row
is its ranked row), and the vehicles. An eager frame is already in memory: its candidate rows
are read without the ranked columns, which are gathered from the frame for the placed rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mm_pipeline._capacity import DEALER_COLUMNS, dealer_columns, dealer_key
from mm_pipeline._exceptions import InvalidInputError
from mm_pipeline._frames import VIN_FIELDS

__all__ = ["VEHICLE_COLUMNS", "RankedInput", "read_ranked"]

VEHICLE_COLUMNS = VIN_FIELDS
_V, _ROW, _COST, _DEALER = "_vehicle", "_row", "_cost", "_dealer"
_CANDIDATE, _TEXT = "_candidate", "_text_"


@dataclass(frozen=True, kw_only=True)
class RankedInput:
    """What :func:`mm_pipeline.assign` reads of a ranked frame.

    Attributes
    ----------
    candidates
        The candidate rows: ``_row`` (the row's number in the ranked frame), the vehicle
        columns, ``_cost``, the dealer columns as text and ``_dealer`` (the rooftop key).
    vehicles
        Every distinct vehicle of the ranked frame, candidate or not: the vehicle columns,
        ``_row`` (its first row) and ``_vehicle`` (its canonical number, by sorted key), in
        order of first appearance.
    columns
        The ranked frame's columns.
    """

    candidates: pl.DataFrame
    vehicles: pl.DataFrame
    columns: list[str]
    _frame: pl.DataFrame | None  # an eager input, whole
    _rows: pl.DataFrame | None  # a lazy input's candidate rows: _row and the ranked columns

    def ranked_rows(self, numbers: pl.Series) -> pl.DataFrame:
        """Return the ranked rows numbered *numbers* (candidate rows, by ``_row``), in order."""
        if self._frame is not None:
            return self._frame[numbers]
        assert self._rows is not None  # noqa: S101 (read_ranked(rows=True) keeps them)
        return (
            numbers.rename(_ROW)
            .to_frame()
            .join(self._rows, on=_ROW, how="left", maintain_order="left")
            .select(self.columns)
        )


def _query(ranked: pl.DataFrame | pl.LazyFrame) -> tuple[pl.LazyFrame, pl.DataFrame | None]:
    if isinstance(ranked, pl.DataFrame):
        return ranked.lazy(), ranked
    if isinstance(ranked, pl.LazyFrame):
        return ranked, None
    raise InvalidInputError(
        f"ranked must be a polars DataFrame or LazyFrame; got {type(ranked).__name__}"
    )


def _cost_name(cost: str | pl.Expr) -> str:
    return cost if isinstance(cost, str) else str(cost)


def _cost_error(cost: str | pl.Expr, exc: pl.exceptions.PolarsError) -> InvalidInputError:
    reason = str(exc).strip().split("\n", 1)[0]
    return InvalidInputError(f"cost {_cost_name(cost)!r} cannot be read: {reason}")


def _vehicles(query: pl.LazyFrame) -> pl.DataFrame:
    """Distinct vehicles, in order of first appearance: ``_vehicle`` is the canonical index."""
    first = (
        query.with_row_index(_ROW)
        .group_by(VEHICLE_COLUMNS)
        .agg(pl.col(_ROW).min())
        .collect(engine="streaming")
    )
    return (
        first.sort(VEHICLE_COLUMNS, nulls_last=True)
        .with_row_index(_V)
        .sort(_ROW)
        .select(*VEHICLE_COLUMNS, _ROW, pl.col(_V).cast(pl.Int64))
    )


def read_ranked(
    ranked: pl.DataFrame | pl.LazyFrame,
    cost: str | pl.Expr,
    max_rank: int | None,
    *,
    rows: bool = True,
) -> RankedInput:
    """Validate *ranked*; read its candidate rows (with *cost*) and its distinct vehicles.

    ``rows=False``: the ranked columns of a lazy input's candidate rows are not kept
    (:meth:`RankedInput.ranked_rows` is then unavailable), as :func:`check_plan` needs.

    Examples
    --------
    >>> frame = pl.DataFrame({"vin": ["V1", "V1", "V2"], "price": [1, 1, 2], "miles": [3, 3, 4],
    ...                       "source": ["a.com", "b.com", "a.com"], "vin_rank": [1, 2, 1],
    ...                       "rank_exact": [True, False, False]})
    >>> read = read_ranked(frame.lazy(), "vin_rank", None)
    >>> read.candidates.select("_row", "vin", "_cost", "_dealer").rows()
    [(0, 'V1', 1.0, 'at:a.com|')]
    >>> read.vehicles.select("vin", "_row", "_vehicle").rows()
    [('V1', 0, 0), ('V2', 2, 1)]
    >>> read.ranked_rows(read.candidates["_row"]).select("vin", "source").rows()
    [('V1', 'a.com')]
    """
    query, frame = _query(ranked)
    if max_rank is not None and (
        isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1
    ):
        raise InvalidInputError(f"max_rank must be a positive int or None; got {max_rank!r}")
    columns = query.collect_schema().names()
    needed = [*VEHICLE_COLUMNS, "vin_rank" if max_rank is not None else "rank_exact"]
    if isinstance(cost, str):
        needed.append(cost)
    missing = [c for c in dict.fromkeys(needed) if c not in columns]
    if missing:
        raise InvalidInputError(
            f"ranked is missing column(s) {', '.join(missing)}; got {', '.join(columns)}"
        )
    dealers = [e.name.prefix(_TEXT) for e in dealer_columns(columns)]
    candidate = (
        pl.col("rank_exact").fill_null(False)
        if max_rank is None
        else pl.col("vin_rank").le(max_rank).fill_null(False)
    )
    # Every ranked column of a lazy input's candidates, for the plan's rows; else the key only.
    keep = columns if frame is None and rows else VEHICLE_COLUMNS
    # The cost is computed before the filter, so an expression with an aggregate (a max, a
    # rank) means what it means on the whole frame; an elementwise one is computed on the
    # candidate rows only (polars pushes the filter beneath it).
    expression = (pl.col(cost) if isinstance(cost, str) else cost).cast(pl.Float64)
    try:  # the input's schema resolved: only the cost can fail here
        selected = (
            query.with_row_index(_ROW)
            .with_columns(expression.alias(_COST), candidate.alias(_CANDIDATE))
            .filter(_CANDIDATE)
            .select(_ROW, *keep, _COST, *dealers)
        )
        selected.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise _cost_error(cost, exc) from exc
    try:
        read = selected.collect(engine="streaming")
    except pl.exceptions.InvalidOperationError as exc:  # a value the cast refuses
        raise _cost_error(cost, exc) from exc
    candidates = read.select(
        _ROW,
        *VEHICLE_COLUMNS,
        _COST,
        *(pl.col(f"{_TEXT}{c}").alias(c) for c in DEALER_COLUMNS),
    ).with_columns(dealer_key().alias(_DEALER))
    return RankedInput(
        candidates=candidates,
        vehicles=_vehicles(query),
        columns=columns,
        _frame=frame,
        _rows=read.select(_ROW, *columns) if frame is None and rows else None,
    )
