"""Dealer identity (a rooftop) and the capacity each dealer takes, for :func:`mm_pipeline.assign`.

A dealer is a rooftop: its ``mc_location_id`` when the row has one, else ``source`` + ``zip``.
Ranked frames carry all three (the API fills in the rooftop it resolved), while a capacity frame
may name a rooftop either way, so a ranked dealer finds its capacity row by, in order:
``mc_location_id``; ``source`` + ``zip`` (capacity rows without an id); ``source`` alone
(capacity rows with neither zip nor id, for single-location dealers); else ``default_capacity``.
"""

from __future__ import annotations

import polars as pl

from mm_pipeline._exceptions import InvalidInputError
from mm_pipeline._frames import DEALER_FIELDS

__all__ = ["DEALER_COLUMNS", "dealer_columns", "dealer_frame", "dealer_key", "resolve_capacity"]

DEALER_COLUMNS = DEALER_FIELDS
_SHOWN = 10


def dealer_columns(columns: list[str]) -> list[pl.Expr]:
    """Return the dealer columns of a frame with *columns* as text, a missing one as nulls.

    Examples
    --------
    >>> pl.DataFrame({"source": ["a.com"], "zip": [30907]}).select(
    ...     dealer_columns(["source", "zip"])).row(0)
    ('a.com', '30907', None)
    """
    if "source" not in columns and "mc_location_id" not in columns:
        raise InvalidInputError(
            "a dealer needs 'mc_location_id' or 'source' (+ 'zip'); "
            f"got columns {', '.join(columns) or '(none)'}"
        )
    return [
        (pl.col(c).cast(pl.String) if c in columns else pl.lit(None, pl.String)).alias(c)
        for c in DEALER_COLUMNS
    ]


def dealer_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """*frame*'s dealer columns as text, a missing ``zip`` / ``mc_location_id`` as nulls."""
    return frame.select(dealer_columns(frame.columns))


def dealer_key() -> pl.Expr:
    """One text key per rooftop: ``id:<mc_location_id>``, else ``at:<source>|<zip>``.

    Null when the row names no dealer (no id and no source).

    Examples
    --------
    >>> frame = pl.DataFrame({"source": ["a.com", "a.com"], "zip": ["30907", None],
    ...                       "mc_location_id": ["x1", None]})
    >>> frame.select(dealer_key().alias("dealer"))["dealer"].to_list()
    ['id:x1', 'at:a.com|']
    """
    return (
        pl.when(pl.col("mc_location_id").is_not_null())
        .then(pl.lit("id:") + pl.col("mc_location_id"))
        .when(pl.col("source").is_not_null())
        .then(pl.lit("at:") + pl.col("source") + pl.lit("|") + pl.col("zip").fill_null(""))
    )


def _invalid(message: str, rows: pl.DataFrame) -> InvalidInputError:
    shown = rows.head(_SHOWN).to_dicts()
    more = f" (and {rows.height - _SHOWN:,} more)" if rows.height > _SHOWN else ""
    return InvalidInputError(
        f"capacity: {rows.height:,} row(s) {message}: {shown}{more}", failure_cases=rows
    )


def _checked(capacity: pl.DataFrame) -> pl.DataFrame:
    """Validate the capacity frame; return ``row``, the dealer columns, ``capacity``, ``_key``."""
    if "capacity" not in capacity.columns:
        raise InvalidInputError(
            f"capacity frame needs a 'capacity' column; got {', '.join(capacity.columns)}"
        )
    values = capacity.get_column("capacity")
    if not (values.dtype.is_integer() or values.dtype.is_float() or values.dtype == pl.Null):
        raise InvalidInputError(
            f"capacity must hold non-negative integers; column 'capacity' is {values.dtype}"
        )
    frame = pl.concat(
        [
            dealer_frame(capacity).with_row_index("row"),
            capacity.select(pl.col("capacity").cast(pl.Float64)),
        ],
        how="horizontal",
    )
    value = pl.col("capacity")
    problems = frame.with_columns(
        reason=pl.when(value.is_null() | value.is_nan())
        .then(pl.lit("capacity is missing"))
        .when(value < 0)
        .then(pl.lit("capacity is negative"))
        .when(value.is_infinite() | (value != value.floor()))
        .then(pl.lit("capacity is not an integer"))
        .when(dealer_key().is_null())
        .then(pl.lit("names no dealer (no source, no mc_location_id)"))
    ).filter(pl.col("reason").is_not_null())
    if problems.height:
        raise _invalid("are not valid", problems)
    # More than 2**31 vehicles never reach one dealer: clipping keeps huge values castable.
    frame = frame.with_columns(
        value.clip(upper_bound=2**31).cast(pl.Int64), _match_key().alias("_key")
    )
    duplicated = frame.filter(pl.col("_key").is_duplicated()).drop("_key")
    if duplicated.height:
        raise _invalid("name a dealer more than once", duplicated)
    return frame


def _match_key() -> pl.Expr:
    """How a capacity row names its dealer: by id, by source + zip, or by source alone."""
    return (
        pl.when(pl.col("mc_location_id").is_not_null())
        .then(pl.lit("id:") + pl.col("mc_location_id"))
        .when(pl.col("zip").is_not_null())
        .then(pl.lit("at:") + pl.col("source") + pl.lit("|") + pl.col("zip"))
        .otherwise(pl.lit("src:") + pl.col("source"))
    )


def resolve_capacity(
    dealers: pl.DataFrame, capacity: int | pl.DataFrame, *, default_capacity: int
) -> pl.Series:
    """Return the capacity of each row of *dealers* (``source``, ``zip``, ``mc_location_id``).

    Parameters
    ----------
    dealers
        One row per distinct dealer (its dealer columns, as in the ranked frame).
    capacity
        An int for every dealer, or a frame with dealer columns and ``capacity``.
    default_capacity
        The capacity of a dealer that the capacity frame does not list.

    Returns
    -------
    pl.Series
        ``capacity`` (Int64), aligned with *dealers*.

    Raises
    ------
    InvalidInputError
        A negative, missing or non-integer capacity, a row naming no dealer, or a dealer
        named twice (the message lists the rows, ``failure_cases`` holds them all).

    Examples
    --------
    >>> dealers = pl.DataFrame({"source": ["a.com", "b.com"], "zip": ["30907", "10001"],
    ...                         "mc_location_id": ["x1", "y2"]})
    >>> caps = pl.DataFrame({"source": ["b.com"], "zip": ["10001"], "capacity": [5]})
    >>> resolve_capacity(dealers, caps, default_capacity=1).to_list()
    [1, 5]
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int | pl.DataFrame):
        raise InvalidInputError(
            "capacity must be a non-negative int or a frame with dealer columns and 'capacity'; "
            f"got {type(capacity).__name__}"
        )
    if isinstance(default_capacity, bool) or not isinstance(default_capacity, int):
        raise InvalidInputError(
            f"default_capacity must be a non-negative int; got {type(default_capacity).__name__}"
        )
    for name, value in (("capacity", capacity), ("default_capacity", default_capacity)):
        if isinstance(value, int) and value < 0:
            raise InvalidInputError(f"{name} must be non-negative; got {value}")
    if isinstance(capacity, int):
        return pl.Series("capacity", [capacity] * dealers.height, dtype=pl.Int64)
    table = _checked(capacity).select("_key", "capacity")
    keys = dealers.select(
        by_id=pl.lit("id:") + pl.col("mc_location_id"),
        by_zip=pl.lit("at:") + pl.col("source") + pl.lit("|") + pl.col("zip"),
        by_source=pl.lit("src:") + pl.col("source"),
    )
    found = [
        keys.join(table, left_on=column, right_on="_key", how="left", maintain_order="left")
        .get_column("capacity")
        .alias(column)
        for column in ("by_id", "by_zip", "by_source")
    ]
    fallback = pl.lit(default_capacity, pl.Int64)
    return pl.DataFrame(found).select(pl.coalesce(*keys.columns, fallback).alias("capacity"))[
        "capacity"
    ]
