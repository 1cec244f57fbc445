"""Deterministic benchmark inputs drawn from the sandbox market, and their precomputed answers.

Vehicles come from ``sample_data.generate.make_vehicles`` (valid, distinct VINs); each vehicle
is paired with distinct rooftops of the sandbox universe (``source`` + ``zip``), so every pair
ranks cleanly. With at most 100 dealers per vehicle, every vehicle is one ``/dealers/rank``
request, and the sandbox's answer to it equals its batch ranking of that vehicle's rows (one
scoring implementation), which is how :func:`answers` precomputes responses without HTTP.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from mm_pipeline.sandbox._market import Market
from sample_data.generate import make_vehicles

__all__ = ["BATCH_DEALERS", "KEY_COLUMNS", "MATCH_FIELDS", "answers", "canonical", "pairs"]

KEY_COLUMNS = ("vin", "price", "miles", "source", "zip")
"""The columns of a benchmark pairs frame (and of a batch upload)."""
MATCH_FIELDS = (*KEY_COLUMNS, "mc_location_id", "vin_score", "dealer_ymm_score", "vin_rank")
"""The fields of a ``RankedMatch``, in the API's order."""
MATCH_SCHEMA = pl.Schema(
    {
        "vin": pl.String,
        "price": pl.Int64,
        "miles": pl.Int64,
        "source": pl.String,
        "zip": pl.String,
        "mc_location_id": pl.String,
        "vin_score": pl.Float64,
        "dealer_ymm_score": pl.Float64,
        "vin_rank": pl.Int64,
    }
)
"""The ``RankedMatch`` fields with the dtypes outputs are compared in."""
BATCH_DEALERS = (10, 150)
"""Candidate dealers per vehicle in batch-shaped data (as ``sample_data/generate.py``)."""


def pairs(vehicles: int, *, dealers: int | tuple[int, int], seed: int) -> pl.DataFrame:
    """Pair each of *vehicles* vehicles with distinct rooftops of the sandbox market.

    Parameters
    ----------
    vehicles
        How many distinct vehicles (groups).
    dealers
        Dealers per vehicle: a fixed count, or an inclusive ``(low, high)`` range.
    seed
        Everything is drawn from ``numpy.random.default_rng(seed)``.

    Returns
    -------
    pl.DataFrame
        ``vin``, ``price``, ``miles``, ``source``, ``zip``, vehicle after vehicle.
    """
    rng = np.random.default_rng(seed)
    cars = make_vehicles(rng, vehicles)
    universe = Market.default().dealers.select("source", "zip")
    low, high = (dealers, dealers) if isinstance(dealers, int) else dealers
    counts = rng.integers(low, high + 1, size=vehicles)
    # Consecutive entries of one random permutation, from a random start: distinct per vehicle.
    order = rng.permutation(universe.height)
    starts = np.repeat(rng.integers(0, universe.height, size=vehicles), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    picks = order[(starts + offsets) % universe.height]
    owner = np.repeat(np.arange(vehicles), counts)
    joined: pl.DataFrame = pl.concat([cars[owner], universe[picks]], how="horizontal")
    return joined


def answers(frame: pl.DataFrame) -> pl.DataFrame:
    """Precompute the sandbox's ``/dealers/rank`` response body for every vehicle of *frame*.

    Returns
    -------
    pl.DataFrame
        ``vin`` and ``body`` (the JSON response, as bytes), one row per vehicle.
    """
    ranked = Market.default().rank_batch(frame.select(KEY_COLUMNS))
    errors = ranked.get_column("error").drop_nulls()
    if errors.len():
        raise ValueError(f"benchmark pairs must all rank cleanly; got {errors.value_counts()}")
    items = ranked.sort("vin", "vin_rank").select(
        "vin", pl.struct(MATCH_FIELDS).struct.json_encode().alias("item")
    )
    return (
        items.group_by("vin", maintain_order=True)
        .agg(pl.col("item").str.join(","))
        .select(
            "vin",
            pl.format('{{"ranked_matches":[{}],"failed_items":[]}}', "item")
            .cast(pl.Binary)
            .alias("body"),
        )
    )


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """The match fields of any ranked output, typed and sorted, for comparing outputs."""
    return frame.select(MATCH_SCHEMA.names()).cast(MATCH_SCHEMA).sort("vin", "vin_rank", "source")
