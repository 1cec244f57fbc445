"""cross_pairs: every vehicle with every dealer, as a pairs frame."""

from __future__ import annotations

from typing import overload

import polars as pl

from mm_pipeline._exceptions import InvalidInputError
from mm_pipeline._frames import PAIR_COLUMNS
from mm_pipeline._options import Frame

__all__ = ["cross_pairs"]


@overload
def cross_pairs(vehicles: pl.DataFrame, dealers: pl.DataFrame) -> pl.DataFrame: ...
@overload
def cross_pairs(vehicles: pl.LazyFrame, dealers: Frame) -> pl.LazyFrame: ...
@overload
def cross_pairs(vehicles: Frame, dealers: pl.LazyFrame) -> pl.LazyFrame: ...
def cross_pairs(vehicles: Frame, dealers: Frame) -> Frame:
    """Pair every vehicle with every dealer (a cross join), as a pairs frame.

    Parameters
    ----------
    vehicles
        ``vin``, ``price``, ``miles`` (other columns are ignored).
    dealers
        ``source`` and optional ``zip``, ``mc_location_id`` (other columns are ignored).

    Returns
    -------
    pl.DataFrame or pl.LazyFrame
        The six pair columns, vehicle by vehicle; lazy if either input is lazy.

    Examples
    --------
    >>> import polars as pl
    >>> vehicles = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000]})
    >>> dealers = pl.DataFrame({"source": ["a.com", "b.com"], "zip": ["30907", None]})
    >>> cross_pairs(vehicles, dealers).columns
    ['vin', 'price', 'miles', 'source', 'zip', 'mc_location_id']
    >>> cross_pairs(vehicles, dealers).height
    2
    """
    lazy = isinstance(vehicles, pl.LazyFrame) or isinstance(dealers, pl.LazyFrame)
    parts = []
    for name, frame, required in (
        ("vehicles", vehicles, ("vin", "price", "miles")),
        ("dealers", dealers, ("source",)),
    ):
        columns = frame.collect_schema().names()
        missing = [column for column in required if column not in columns]
        if missing:
            raise InvalidInputError(
                f"{name} is missing column(s) {', '.join(missing)}; got {', '.join(columns)}"
            )
        parts.append((frame.lazy(), columns))
    (vehicle_frame, _), (dealer_frame, dealer_columns) = parts
    dealer_frame = dealer_frame.select(
        "source",
        *(
            pl.col(c) if c in dealer_columns else pl.lit(None, pl.String).alias(c)
            for c in ("zip", "mc_location_id")
        ),
    )
    joined = vehicle_frame.select("vin", "price", "miles").join(dealer_frame, how="cross")
    joined = joined.select(PAIR_COLUMNS)
    return joined if lazy else joined.collect()
