"""Planning: sizes, chunking arithmetic and mm.plan (pure, no network)."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mm_pipeline as mm
from mm_pipeline._plan import group_rounds, resolve_sizes, split_sizes
from tests.client.conftest import market_dealers, vehicles


@given(n=st.integers(min_value=0, max_value=5_000), size=st.integers(min_value=2, max_value=100))
def test_split_sizes_are_balanced_and_cover_everything(n: int, size: int) -> None:
    """Chunks cover n, never exceed the size, differ by at most one, and are as few as possible."""
    sizes = split_sizes(n, size)
    assert sum(sizes) == n
    assert all(0 < s <= size for s in sizes)
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert len(sizes) == -(-n // size)


@given(
    n=st.integers(min_value=1, max_value=100_000),
    size=st.integers(min_value=2, max_value=100),
    data=st.data(),
)
def test_rounds_shrink_to_one_request(n: int, size: int, data: st.DataObject) -> None:
    """No round has more requests than the one before, and the last round is a single request."""
    top_k = data.draw(st.integers(min_value=1, max_value=size - 1))
    rounds = group_rounds(n, size, top_k)
    assert rounds[-1] == 1
    assert rounds == sorted(rounds, reverse=True)
    assert rounds[0] == max(1, n // size)


@pytest.mark.parametrize(
    ("endpoint", "chunk_size", "top_k", "message"),
    [
        ("dealers", 101, None, "from 2 to 100"),
        ("vins", 21, None, "from 2 to 20"),
        ("vins", 1, None, "from 2 to 20"),
        ("dealers", 100, 100, "chunk_size - 1 = 99"),
        ("dealers", 10, -1, "chunk_size - 1 = 9"),
        ("vins", None, True, "chunk_size - 1 = 19"),
        ("trucks", None, None, "'dealers' or 'vins'"),
    ],
)
def test_bad_sizes_are_refused(
    endpoint: str, chunk_size: int | None, top_k: int | None, message: str
) -> None:
    """chunk_size above the published limit and exact_top_k outside 0..chunk_size - 1 are errors."""
    with pytest.raises(ValueError, match=message):
        resolve_sizes(endpoint, chunk_size=chunk_size, exact_top_k=top_k)  # type: ignore[arg-type]


def test_default_top_k_is_capped_at_half_a_chunk() -> None:
    """The default exact_top_k is 10 for dealers, 3 for VINs, at most half a chunk; 0 is allowed."""
    assert resolve_sizes("dealers", chunk_size=None, exact_top_k=None) == (100, 10)
    assert resolve_sizes("dealers", chunk_size=7, exact_top_k=None) == (7, 3)
    assert resolve_sizes("vins", chunk_size=None, exact_top_k=None) == (20, 3)
    assert resolve_sizes("vins", chunk_size=4, exact_top_k=None) == (4, 2)
    assert resolve_sizes("dealers", chunk_size=None, exact_top_k=0) == (100, 0)
    assert resolve_sizes("dealers", chunk_size=None, exact_top_k=99) == (100, 99)


def test_plan_counts_groups_rounds_and_input_problems() -> None:
    """plan() sums rounds over groups and reports invalid rows and duplicates."""
    small = mm.cross_pairs(vehicles(3), market_dealers(40))  # 3 groups of 40: 1 request each
    big = mm.cross_pairs(vehicles(1, offset=10), market_dealers(1_000))  # 10 + 1 requests
    bad = small.head(2).with_columns(pl.lit(0, pl.Int64).alias("price"))
    pairs = pl.concat([small, big, small.head(5), bad])
    plan = mm.plan(pairs, rate_limit=10)
    assert plan.requests_per_round == (13, 1)
    assert (plan.requests, plan.rounds, plan.rerank_requests) == (14, 2, 1)
    assert (plan.groups, plan.largest_group, plan.pairs) == (4, 1_000, 1_120)
    assert (plan.rows, plan.invalid_rows, plan.duplicates_removed) == (1_127, 2, 5)
    assert plan.estimated_seconds == pytest.approx(1.4)
    text = repr(plan)
    assert "14 in 2 round(s) (13 + 1)" in text
    assert "2 invalid, 5 duplicates" in text


def test_plan_for_vins_groups_by_dealer() -> None:
    """endpoint='vins' groups by dealer and chunks by 20."""
    pairs = mm.cross_pairs(vehicles(50), market_dealers(3))
    plan = mm.plan(pairs, endpoint="vins", exact_top_k=5)
    assert plan.groups == 3
    assert plan.requests_per_round == (6, 3)  # 50 -> 2 full chunks, 2 x 5 + 10 -> 1


def test_plan_of_nothing() -> None:
    """An empty frame plans zero requests."""
    empty = mm.cross_pairs(vehicles(0), market_dealers(0))
    plan = mm.plan(empty)
    assert (plan.requests, plan.rounds, plan.groups, plan.largest_group) == (0, 0, 0, 0)
