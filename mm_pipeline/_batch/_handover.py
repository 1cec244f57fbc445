"""Hand batch ranks over to the online route: vehicles that also have dealers without a zip.

The batch file names dealers by ``source`` and ``zip``, so a vehicle's dealers known by
``mc_location_id`` alone are ranked online; its batch order goes with them as one pre-ranked
chunk (see :mod:`mm_pipeline._rank`). Both batch routes (in memory, and bucket by bucket into
Parquet) split their ranks here.
"""

from __future__ import annotations

import polars as pl

from mm_pipeline._frames import ROW
from mm_pipeline._plan import GROUP_KEYS

__all__ = ["split_preranked"]


def split_preranked(
    ranked: pl.DataFrame, online_pairs: pl.DataFrame, pairs: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split batch ranks into final ones and pre-ranked pairs of vehicles to complete online.

    Batch ranks order the dealers of a VIN across all its rows; they are renumbered 1..N per
    vehicle (``vin``, ``price``, ``miles``), which keeps their (exact) order. The pre-ranked
    pairs carry their input columns and ``_row`` (from ``pairs``), the batch scores and rank,
    and the rooftop id the batch resolved (``answered_mc_location_id``), as
    :func:`~mm_pipeline._online._run.rank_online` takes them.

    Examples
    --------
    >>> ranked = pl.DataFrame({"vin": ["A", "A", "B"], "price": [1, 1, 2], "miles": [3, 3, 4],
    ...     "mc_location_id": ["x", "y", "x"], "vin_score": [0.9, 0.5, 0.7],
    ...     "dealer_ymm_score": [0.1, 0.2, 0.3], "vin_rank": [2, 5, 1], "_row": [0, 1, 2]})
    >>> online = pl.DataFrame({"vin": ["A"], "price": [1], "miles": [3]})
    >>> final, pre = split_preranked(ranked, online, ranked.select("vin", "_row"))
    >>> final["vin"].to_list(), pre["vin_rank"].to_list()
    (['B'], [1, 2])
    """
    keys = list(GROUP_KEYS["dealers"])
    ranked = ranked.with_columns(pl.col("vin_rank").rank("ordinal").over(keys).cast(pl.UInt32))
    completed_online = online_pairs.select(keys).unique()
    hybrid = ranked.join(completed_online, on=keys, how="semi")
    preranked = pairs.join(
        hybrid.select(
            ROW,
            "vin_rank",
            "vin_score",
            "dealer_ymm_score",
            pl.col("mc_location_id").alias("answered_mc_location_id"),
        ),
        on=ROW,
    )
    final = ranked.join(completed_online, on=keys, how="anti")
    return final, preranked
