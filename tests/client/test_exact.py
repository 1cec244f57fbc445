"""Re-ranking rounds (``_exact.rank_group``) against an in-memory ranker that keeps the contract.

The ranker orders any subset by a per-item fit (ties by id), which is exactly the contract the
API promises; the sandbox-backed checks live in test_online_exact_sandbox.py.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_pipeline._exact import rank_group
from mm_pipeline._plan import group_rounds


class SubsetRanker:
    """Ranks chunks by a fixed fit per item; records every chunk it was asked for."""

    def __init__(self, fit: dict[int, float], *, failing: frozenset[int] = frozenset()) -> None:
        self.fit = fit
        self.failing = failing
        self.chunks: list[list[int]] = []

    async def __call__(self, chunk: list[int]) -> list[int]:
        self.chunks.append(list(chunk))
        ranked = [item for item in chunk if item not in self.failing]
        return sorted(ranked, key=lambda item: (-self.fit[item], item))

    def truth(self, items: list[int]) -> list[int]:
        kept = [item for item in items if item not in self.failing]
        return sorted(kept, key=lambda item: (-self.fit[item], item))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=700),
    chunk_size=st.integers(min_value=2, max_value=100),
    data=st.data(),
)
async def test_top_k_equals_ranking_of_the_whole_group(
    n: int, chunk_size: int, data: st.DataObject
) -> None:
    """Ranks 1..K equal the ranking of the whole group in one imaginary request."""
    top_k = data.draw(st.integers(min_value=1, max_value=chunk_size // 2), label="top_k")
    seed = data.draw(st.integers(min_value=0, max_value=2**32), label="seed")
    rng = random.Random(seed)
    fit = {i: float(rng.randint(0, 50)) for i in range(n)}  # many ties on purpose
    ranker = SubsetRanker(fit)
    items = list(range(n))
    result = await rank_group(items, rank_chunk=ranker, chunk_size=chunk_size, exact_top_k=top_k)
    truth = ranker.truth(items)
    assert sorted(result.order) == items
    assert result.order[: result.exact] == truth[: result.exact]
    assert result.exact == (n if n <= chunk_size else top_k)
    assert all(len(chunk) <= chunk_size for chunk in ranker.chunks)
    assert result.requests == len(ranker.chunks) == sum(group_rounds(n, chunk_size, top_k))
    assert result.rounds == len(group_rounds(n, chunk_size, top_k))
    assert result.violations == 0


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=101, max_value=600), data=st.data())
async def test_failed_items_leave_the_group_without_breaking_exactness(
    n: int, data: st.DataObject
) -> None:
    """Items a chunk cannot rank are left out, and the top-K of the rest is still exact."""
    failing = frozenset(data.draw(st.sets(st.integers(min_value=0, max_value=n - 1))))
    fit = {i: float((i * 7919) % 1000) for i in range(n)}
    ranker = SubsetRanker(fit, failing=failing)
    items = list(range(n))
    result = await rank_group(items, rank_chunk=ranker, chunk_size=100, exact_top_k=10)
    truth = ranker.truth(items)
    assert sorted(result.order) == sorted(truth)
    assert result.order[: result.exact] == truth[: result.exact]
    assert result.exact >= min(10, len(truth))


async def test_ranks_beyond_k_follow_the_documented_rule() -> None:
    """Past rank K: the final request's rest, then eliminations by round, local rank, chunk."""
    fit = {i: float(i) for i in range(12)}  # higher id = better
    ranker = SubsetRanker(fit)
    # Round 1, chunks [0-3] [4-7] [8-11]: 3, 2 / 7, 6 / 11, 10 go on; round 2, chunks
    # [3, 2, 7] [6, 11, 10]: 7, 3 / 11, 10 go on (2 and 6 eliminated at local rank 2); round 3
    # ranks [7, 3, 11, 10] in one request.
    result = await rank_group(list(range(12)), rank_chunk=ranker, chunk_size=4, exact_top_k=2)
    assert (result.exact, result.rounds) == (2, 3)
    # Then: the final request's rest (7, 3); round 2's eliminated (2, 6); round 1's by local
    # rank, then chunk: rank 2 -> 1, 5, 9; rank 3 -> 0, 4, 8.
    assert result.order == [11, 10, 7, 3, 2, 6, 1, 5, 9, 0, 4, 8]


async def test_a_single_chunk_is_exact_throughout() -> None:
    """A group that fits one request is ranked by that request alone, every rank exact."""
    fit = {i: float(-i) for i in range(30)}
    ranker = SubsetRanker(fit)
    result = await rank_group(list(range(30)), rank_chunk=ranker, chunk_size=30, exact_top_k=5)
    assert result.order == list(range(30))
    assert (result.exact, result.rounds, result.requests) == (30, 1, 1)


async def test_contradicting_rankings_are_counted() -> None:
    """A ranker whose later rounds reverse an earlier chunk's order is reported."""
    calls = 0

    async def fickle(chunk: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        ordered = sorted(chunk)
        return ordered if calls <= 3 else ordered[::-1]

    result = await rank_group(list(range(9)), rank_chunk=fickle, chunk_size=4, exact_top_k=2)
    assert result.violations > 0
    assert sorted(result.order) == list(range(9))


async def test_an_error_in_one_chunk_cancels_the_group() -> None:
    """A chunk that raises makes the whole group raise (no partial ranking)."""

    async def broken(chunk: list[int]) -> list[int]:
        if 0 in chunk:
            raise RuntimeError("boom")
        return sorted(chunk)

    with pytest.raises(RuntimeError, match="boom"):
        await rank_group(list(range(300)), rank_chunk=broken, chunk_size=100, exact_top_k=10)
