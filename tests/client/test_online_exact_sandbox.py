"""Exact top-K across chunks, checked against the sandbox's ranking of the whole group.

The ground truth is ``Market.default()`` ranking every candidate in one call (bypassing the
100-dealer limit), i.e. the one imaginary request the re-ranking rounds must reproduce.
"""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.client.test_rank_online import (
    client_for,
    market_dealers,
    truth_order,
    vehicles,
)
from tests.conftest import make_vins


@settings(max_examples=8, deadline=None)
@given(
    group_size=st.integers(min_value=101, max_value=420),
    chunk_size=st.integers(min_value=8, max_value=100),
    offset=st.integers(min_value=0, max_value=20_000),
    data=st.data(),
)
def test_dealer_ranks_one_to_k_equal_the_whole_group_ranking(
    sandbox: Sandbox, group_size: int, chunk_size: int, offset: int, data: st.DataObject
) -> None:
    """For random group and chunk sizes, ranks 1..K equal the sandbox's single-request order."""
    top_k = data.draw(st.integers(min_value=1, max_value=chunk_size // 2), label="top_k")
    car = vehicles(1, offset=offset)
    dealers = market_dealers(group_size, offset=offset)
    result = mm.rank_dealers(
        mm.cross_pairs(car, dealers),
        client=client_for(sandbox),
        mode="online",
        chunk_size=chunk_size,
        exact_top_k=top_k,
        progress=False,
    )
    truth = truth_order(car.to_dicts()[0], dealers)
    got = list(result.ranked.select("source", "zip").iter_rows())
    assert got[:top_k] == truth[:top_k]
    assert sorted(got) == sorted(truth)
    assert result.ranked.get_column("rank_exact").to_list() == [True] * top_k + [False] * (
        group_size - top_k
    )
    assert result.ranked.get_column("vin_rank").to_list() == list(range(1, group_size + 1))
    assert result.stats.consistency_violations == 0
    plan = mm.plan(mm.cross_pairs(car, dealers), chunk_size=chunk_size, exact_top_k=top_k)
    assert result.stats.requests == plan.requests
    assert result.stats.rerank_rounds == plan.rounds - 1


def test_vin_ranks_one_to_k_equal_the_whole_group_ranking(sandbox: Sandbox) -> None:
    """rank_vins over 150 VINs for one dealer (chunks of 20, 4 rounds) gets the exact top 10."""
    cars = pl.DataFrame(
        {
            "vin": make_vins(150, offset=500),
            "price": [20_000 + 97 * i for i in range(150)],
            "miles": [500 * i for i in range(150)],
        }
    )
    dealer = market_dealers(1, offset=777)
    result = mm.rank_vins(mm.cross_pairs(cars, dealer), client=client_for(sandbox), progress=False)
    spec = dealer.to_dicts()[0]
    outcome = Market.default().rank_vins(spec, cars.to_dicts())  # type: ignore[arg-type]
    truth = [m["vin"] for m in outcome.ranked_matches]  # type: ignore[union-attr]
    assert result.ranked.get_column("vin").head(10).to_list() == truth[:10]
    # 150 -> 8 chunks -> 80 candidates -> 4 chunks -> 40 -> 2 chunks -> 20 -> one request
    assert (result.stats.rerank_rounds, result.stats.rerank_requests) == (3, 7)
    assert result.stats.consistency_violations == 0
