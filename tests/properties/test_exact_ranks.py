"""Property tests against the sandbox: every rank marked exact is the rank of the whole group.

Over random group sizes, chunk sizes and ``exact_top_k`` (0 included), for both endpoints: a
group that fits one API request is compared with one request holding it, sent over HTTP; a
larger group with the sandbox's own model ranking every item at once (``Market.default()``,
which knows no request limit). The requests spent are the plan's, and never more than the
achievable minimum of issue 11.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.conftest import client_for, make_vins

# Each example ranks over HTTP; a failure is reported as drawn (shrinking would outlast it).
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)


def minimum(n: int, cap: int, top_k: int) -> int:
    """The fewest requests any schedule can spend on a group of n (issue 11)."""
    if n <= cap:
        return 1
    return math.ceil(n / cap) if not top_k else math.ceil((n - top_k) / (cap - top_k))


def one_request(sandbox: Sandbox, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ranked items of one request holding the whole group, over HTTP."""
    with client_for(sandbox) as http:
        answer = http.post(f"/v2/marketmatch/{path}/rank", json=body)
    answer.raise_for_status()
    items: list[dict[str, Any]] = answer.json()["ranked_matches"]
    return items


def assert_exact_rows(result: mm.RankResult, truth: list[Any], columns: list[str]) -> None:
    """Ranked rows flagged exact sit at their true rank; at least K of them are flagged."""
    got = list(result.ranked.select(columns).iter_rows())
    flags = result.ranked.get_column("rank_exact").to_list()
    exact = sum(flags)
    assert flags == [True] * exact + [False] * (len(flags) - exact)
    assert got[:exact] == truth[:exact]
    assert sorted(got) == sorted(truth)
    n, top_k = len(truth), result.stats.exact_top_k
    assert exact >= (n if n <= result.stats.chunk_size else min(top_k, n))
    assert result.ranked.get_column("vin_rank").to_list() == list(range(1, n + 1))
    assert result.stats.consistency_violations == result.stats.lost_candidates == 0


@SETTINGS
@given(
    n=st.integers(min_value=1, max_value=420),
    chunk_size=st.integers(min_value=2, max_value=100),
    offset=st.integers(min_value=0, max_value=20_000),
    data=st.data(),
)
def test_dealer_ranks_marked_exact_are_exact(
    sandbox: Sandbox, n: int, chunk_size: int, offset: int, data: st.DataObject
) -> None:
    """rank_dealers: exact rows equal the whole group's ranking; requests = plan <= minimum."""
    top_k = data.draw(st.integers(min_value=0, max_value=chunk_size - 1), label="top_k")
    car = pl.DataFrame({"vin": make_vins(1, offset=offset), "price": [21_000], "miles": [900]})
    dealers = Market.default().dealers.slice(offset, n).select("source", "zip")
    pairs = mm.cross_pairs(car, dealers)
    sandbox.reset()
    result = mm.rank_dealers(
        pairs,
        client=mm.MarketMatchClient(sandbox.api_key, sandbox.base_url),
        mode="online",
        chunk_size=chunk_size,
        exact_top_k=top_k,
        progress=False,
    )
    vin = car.to_dicts()[0]
    if n <= 100:
        items = one_request(sandbox, "dealers", {"vin": vin, "dealers": dealers.to_dicts()})
    else:
        outcome = Market.default().rank_dealers(vin, dealers.to_dicts())  # type: ignore[arg-type]
        items = outcome.ranked_matches  # type: ignore[union-attr]
    assert_exact_rows(result, [(m["source"], m["zip"]) for m in items], ["source", "zip"])
    plan = mm.plan(pairs, chunk_size=chunk_size, exact_top_k=top_k)
    assert result.stats.requests == plan.requests <= minimum(n, chunk_size, top_k)


@SETTINGS
@given(
    n=st.integers(min_value=1, max_value=120),
    chunk_size=st.integers(min_value=2, max_value=20),
    offset=st.integers(min_value=0, max_value=20_000),
    data=st.data(),
)
def test_vin_ranks_marked_exact_are_exact(
    sandbox: Sandbox, n: int, chunk_size: int, offset: int, data: st.DataObject
) -> None:
    """rank_vins: exact rows equal the whole group's ranking; requests = plan <= minimum."""
    top_k = data.draw(st.integers(min_value=0, max_value=chunk_size - 1), label="top_k")
    cars = pl.DataFrame(
        {
            "vin": make_vins(n, offset=offset),
            "price": [12_000 + 97 * i for i in range(n)],
            "miles": [300 * i for i in range(n)],
        }
    )
    dealer = Market.default().dealers.slice(offset % 5_000, 1).select("source", "zip")
    pairs = mm.cross_pairs(cars, dealer)
    sandbox.reset()
    result = mm.rank_vins(
        pairs,
        client=mm.MarketMatchClient(sandbox.api_key, sandbox.base_url),
        chunk_size=chunk_size,
        exact_top_k=top_k,
        progress=False,
    )
    spec = dealer.to_dicts()[0]
    if n <= 20:
        items = one_request(sandbox, "vins", {"dealer": spec, "vins": cars.to_dicts()})
    else:
        outcome = Market.default().rank_vins(spec, cars.to_dicts())  # type: ignore[arg-type]
        items = outcome.ranked_matches  # type: ignore[union-attr]
    assert_exact_rows(result, [(m["vin"],) for m in items], ["vin"])
    plan = mm.plan(pairs, endpoint="vins", chunk_size=chunk_size, exact_top_k=top_k)
    assert result.stats.requests == plan.requests <= minimum(n, chunk_size, top_k)
