"""Helpers and fixtures shared by the client tests (ranking against the sandbox)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._session import set_backoff_scale
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.conftest import make_vins

UNDECODABLE_VIN = "ZZZBE2AY3PDA28064"  # valid check digit, unknown manufacturer
PAIR_KEY = ["vin", "price", "miles", "source", "zip"]


def vehicles(count: int, *, offset: int = 0) -> pl.DataFrame:
    """A vehicles frame (vin, price, miles) of distinct decodable VINs."""
    return pl.DataFrame(
        {
            "vin": make_vins(count, offset=offset),
            "price": [15_000 + 370 * i for i in range(offset, offset + count)],
            "miles": [1_000 + 2_900 * i for i in range(offset, offset + count)],
        }
    )


def market_dealers(count: int, *, offset: int = 0) -> pl.DataFrame:
    """Rooftops of the sandbox market, named by source and zip."""
    return Market.default().dealers.slice(offset, count).select("source", "zip")


def truth_order(vin: dict[str, Any], dealers: pl.DataFrame) -> list[tuple[str, str]]:
    """The sandbox's ranking of all ``dealers`` for one vehicle in one imaginary request."""
    specs = [{k: v for k, v in d.items() if v is not None} for d in dealers.to_dicts()]
    outcome = Market.default().rank_dealers(vin, specs)  # type: ignore[arg-type]
    matches: list[dict[str, Any]] = outcome.ranked_matches  # type: ignore[union-attr]
    return [(m["source"], m["zip"]) for m in matches]


def client_for(sb: Sandbox, **options: Any) -> mm.MarketMatchClient:
    """A client for the sandbox's primary account."""
    return mm.MarketMatchClient(sb.api_key, sb.base_url, **options)


def assert_accounted(pairs: pl.DataFrame, result: mm.RankResult) -> None:
    """Every distinct input pair is in exactly one of ranked and failed.

    Pairs are identified by vin, price, miles, source and the identification given: zip when
    the input had one, else mc_location_id (the output fills in what the input lacked).
    """
    if "mc_location_id" not in pairs.columns:
        pairs = pairs.with_columns(mc_location_id=pl.lit(None, pl.String))
    given = pairs.select(*PAIR_KEY, "mc_location_id").unique()
    columns = [*PAIR_KEY, "mc_location_id"]
    out = pl.concat([result.ranked.select(columns), result.failed.select(columns)])
    assert out.height == given.height
    assert out.select(columns).n_unique() == out.height
    with_zip = given.filter(pl.col("zip").is_not_null())
    without = given.filter(pl.col("zip").is_null())
    other = [*PAIR_KEY[:4], "mc_location_id"]
    assert with_zip.join(out, on=PAIR_KEY, how="anti", nulls_equal=True).is_empty()
    assert without.join(out, on=other, how="anti", nulls_equal=True).is_empty()


def assert_contiguous(ranked: pl.DataFrame, keys: list[str]) -> None:
    """vin_rank runs 1..N within every group, and the frame is sorted by group then rank."""
    check = ranked.group_by(keys, maintain_order=True).agg(pl.col("vin_rank"), pl.len().alias("n"))
    for ranks, n in check.select("vin_rank", "n").iter_rows():
        assert ranks == list(range(1, n + 1))


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Retry backoffs of zero seconds."""
    with set_backoff_scale(0.0):
        yield
