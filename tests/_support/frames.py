"""Small typed frames for tests, built from a few tuples."""

from __future__ import annotations

import polars as pl

from mm_pipeline._frames import RANKED_SCHEMA


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
