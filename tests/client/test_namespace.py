"""The ``marketmatch`` polars namespace on DataFrame and LazyFrame."""

from __future__ import annotations

import polars as pl

import mm_pipeline as mm
from mm_pipeline._namespace import MarketMatchNamespace
from mm_pipeline.sandbox import Sandbox
from tests.client.conftest import client_for, market_dealers, vehicles


def test_namespace_is_registered_on_import() -> None:
    """Importing mm_pipeline gives DataFrame and LazyFrame a ``marketmatch`` attribute."""
    frame = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"]})
    assert isinstance(frame.marketmatch, MarketMatchNamespace)  # type: ignore[attr-defined]
    assert isinstance(frame.lazy().marketmatch, MarketMatchNamespace)  # type: ignore[attr-defined]


def test_namespace_rank_dealers_equals_the_function(sandbox: Sandbox) -> None:
    """``pairs.marketmatch.rank_dealers`` returns the frames ``mm.rank_dealers`` returns."""
    pairs = mm.cross_pairs(vehicles(2), market_dealers(4))
    client = client_for(sandbox)
    namespace: MarketMatchNamespace = pairs.marketmatch  # type: ignore[attr-defined]
    via_namespace = namespace.rank_dealers(client=client, progress=False, mode="online")
    direct = mm.rank_dealers(pairs, client=client, progress=False, mode="online")
    assert via_namespace.ranked.equals(direct.ranked)
    assert via_namespace.ranked.height == 8


def test_lazy_namespace_rank_vins(sandbox: Sandbox) -> None:
    """A LazyFrame is collected and ranked the same way."""
    pairs = mm.cross_pairs(vehicles(3).lazy(), market_dealers(2))
    assert isinstance(pairs, pl.LazyFrame)
    namespace: MarketMatchNamespace = pairs.marketmatch  # type: ignore[attr-defined]
    result = namespace.rank_vins(client=client_for(sandbox), progress=False)
    assert result.ranked.height == 6
    assert result.ranked.get_column("vin_rank").to_list() == [1, 2, 3, 1, 2, 3]


def test_namespace_plan_matches_mm_plan() -> None:
    """``pairs.marketmatch.plan`` is ``mm.plan`` on the frame, options included."""
    pairs = mm.cross_pairs(vehicles(2), market_dealers(130))
    namespace: MarketMatchNamespace = pairs.marketmatch  # type: ignore[attr-defined]
    via_namespace = namespace.plan(chunk_size=50, exact_top_k=5)
    assert via_namespace == mm.plan(pairs, chunk_size=50, exact_top_k=5)
    assert via_namespace.requests_per_round == (4, 2)  # 130 = 2 x 50 + 30; 10 + 30 -> 1
