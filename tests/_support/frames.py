"""Typed ranked frames for tests: a few tuples, the sample data ranked, a large synthetic one."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mm_pipeline._frames import RANKED_SCHEMA

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def ranked(*rows: tuple[str, str, int, bool]) -> pl.DataFrame:
    """Rows of (vin, dealer source, vin_rank, rank_exact); the dealer's zip and id follow."""
    return pl.DataFrame(
        [
            (vin, 9000, 100, source, "30907", source.upper(), 1000.0, 1500.0 - rank, rank, exact)
            for vin, source, rank, exact in rows
        ],
        schema=RANKED_SCHEMA,
        orient="row",
    )


def sample_ranked(vehicles: int = 200) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The demo's shape: sample vehicles x every sample dealer with a ZIP, ranked by the sandbox
    model (exact top 10), and dealers.csv (with its capacities)."""
    from mm_pipeline import cross_pairs  # noqa: PLC0415
    from mm_pipeline.sandbox._market import Market  # noqa: PLC0415

    cars = pl.read_csv(SAMPLES / "vehicles.csv").head(vehicles)
    dealers = pl.read_csv(
        SAMPLES / "dealers.csv", schema_overrides={"zip": pl.String, "mc_location_id": pl.String}
    )
    pairs = cross_pairs(cars, dealers.filter(pl.col("zip").is_not_null()))
    frame = (
        Market.default()
        .rank_batch(pairs.drop("mc_location_id"))
        .drop("error")
        .with_columns(rank_exact=pl.col("vin_rank") <= 10)
    )
    return frame, dealers


def many_ranked(vehicles: int, dealers: int, *, exact: int) -> pl.DataFrame:
    """Every vehicle ranked against every dealer (a permutation per vehicle), its top *exact*
    exact; the last tenth of the vehicles has no exact rank at all."""
    vehicle = pl.int_range(vehicles, dtype=pl.Int64, eager=True).alias("v").to_frame()
    dealer = pl.int_range(dealers, dtype=pl.Int64, eager=True).alias("d").to_frame()
    rank = ((pl.col("v") * 7 + pl.col("d")) % dealers + 1).cast(pl.UInt32)
    return (
        vehicle.join(dealer, how="cross")
        .select(
            vin=pl.format("VIN{}", pl.col("v").cast(pl.String).str.pad_start(8, "0")),
            price=10_000 + pl.col("v") % 997,
            miles=1_000 + pl.col("v") % 991,
            source=pl.format("d{}.example.com", pl.col("d")),
            zip=(10_000 + pl.col("d")).cast(pl.String),
            mc_location_id=pl.format("loc-{}", pl.col("d")),
            vin_score=pl.lit(1000.0),
            dealer_ymm_score=1500.0 - rank.cast(pl.Float64),
            vin_rank=rank,
            rank_exact=(rank <= exact) & (pl.col("v") < vehicles - vehicles // 10),
        )
        .cast(dict(RANKED_SCHEMA))  # type: ignore[arg-type]
    )
