"""Batch test data: the published example vehicles against sandbox rooftops."""

from __future__ import annotations

from functools import cache

import polars as pl

# The vehicles of the published examples (all decode in the sandbox).
EXAMPLE_VEHICLES = (
    ("WP1BE2AY5PDA28064", 20000, 3000),
    ("5FNYF8H54SB000197", 37610, 14428),
    ("JTJBM7FX1K5236458", 35087, 73788),
    ("YV4L12RL4R1757085", 33085, 45490),
    ("JTMDFREV7JJ214231", 25990, 34307),
    ("7YAKN4DA1SY001014", 38990, 38990),
    ("KL79MPSL8SB184667", 20355, 15313),
    ("1FMCU0GD0JUD56190", 13790, 73592),
    ("4T1C11BKXNU065125", 22590, 50947),
)
JOBS = "/v2/batch/marketmatch/rank/jobs"


@cache
def rooftops() -> pl.DataFrame:
    """The sandbox universe's rooftops that have a zip, as (source, zip), in universe order."""
    from mm_pipeline.sandbox._market import Market  # noqa: PLC0415

    return (
        Market.default()
        .dealers.filter(pl.col("zip").is_not_null())
        .select("source", "zip")
        .unique(maintain_order=True)
    )


def make_pairs(
    dealers: int, *, vehicles: int = len(EXAMPLE_VEHICLES), offset: int = 0
) -> pl.DataFrame:
    """Every example vehicle (the first ``vehicles``) against ``dealers`` sandbox rooftops."""
    cars = pl.DataFrame(
        list(EXAMPLE_VEHICLES[:vehicles]), schema=["vin", "price", "miles"], orient="row"
    )
    chosen = rooftops().slice(offset, dealers)
    assert chosen.height == dealers, "the sandbox universe has fewer rooftops than asked"
    return cars.join(chosen, how="cross").with_columns(
        pl.lit(None, pl.String).alias("mc_location_id")
    )
