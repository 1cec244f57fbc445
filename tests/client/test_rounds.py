"""Re-ranking rounds (``_online._rounds``) against an in-memory ranker that keeps the contract.

The ranker orders any subset by a per-item fit (ties by id), which is exactly the contract the
API promises; the sandbox-backed checks live in test_online_exact_sandbox.py.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_pipeline._online._rounds import group_rounds, rank_group
from tests.conftest import SubsetRanker


def bound(n: int, cap: int, top_k: int) -> int:
    """The fewest requests any schedule can spend (issue 11): every request but the last
    eliminates at most cap - K items."""
    if n <= cap:
        return min(n, 1)
    if not top_k:
        return math.ceil(n / cap)
    return max(math.ceil(n / cap), math.ceil((n - top_k) / (cap - top_k)))


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=700),
    chunk_size=st.integers(min_value=2, max_value=100),
    data=st.data(),
)
async def test_exact_ranks_equal_the_ranking_of_the_whole_group(
    n: int, chunk_size: int, data: st.DataObject
) -> None:
    """Every rank marked exact equals one imaginary request holding the whole group."""
    top_k = data.draw(st.integers(min_value=0, max_value=chunk_size - 1), label="top_k")
    seed = data.draw(st.integers(min_value=0, max_value=2**32), label="seed")
    rng = random.Random(seed)
    fit = {i: float(rng.randint(0, 50)) for i in range(n)}  # many ties on purpose
    ranker = SubsetRanker(fit)
    items = list(range(n))
    result = await rank_group(items, rank_chunk=ranker, chunk_size=chunk_size, exact_top_k=top_k)
    truth = ranker.truth(items)
    assert sorted(result.order) == items
    assert result.order[: result.exact] == truth[: result.exact]
    if n <= chunk_size:
        assert result.exact == n
    else:
        assert result.exact >= min(top_k, n)
    sizes = [len(chunk) for chunk in ranker.chunks]
    assert all(size <= chunk_size for size in sizes)
    if top_k:  # every request but the final one is full
        assert all(size == chunk_size for size in sizes[:-1])
    assert result.requests == len(ranker.chunks) == sum(group_rounds(n, chunk_size, top_k))
    assert result.requests <= bound(n, chunk_size, top_k)
    assert result.rounds == len(group_rounds(n, chunk_size, top_k))
    assert result.violations == result.lost == 0
    # beyond the exact ranks too, no item is placed above one that beat it in an answer
    position = {item: i for i, item in enumerate(result.order)}
    for chunk in ranker.chunks:
        answer = [position[item] for item in ranker.truth(chunk)]
        assert answer == sorted(answer)


@pytest.mark.parametrize(
    ("cap", "top_ks"),
    [(100, (0, 1, 3, 10, 20, 50, 90, 99)), (20, (1, 3, 4, 10, 19)), (7, (1, 3, 6))],
)
def test_the_cost_function_meets_the_bound_for_every_size(cap: int, top_ks: tuple[int]) -> None:
    """group_rounds costs exactly the achievable minimum for n = 0..3000 and a range of K."""
    for top_k in top_ks:
        for n in range(3_001):
            assert sum(group_rounds(n, cap, top_k)) == bound(n, cap, top_k), (n, top_k)


@pytest.mark.parametrize(
    ("n", "cap", "requests"),
    [
        *[(150, 100, 2), (230, 100, 3), (1000, 100, 11), (1001, 100, 12), (3000, 100, 34)],
        *[(46, 20, 4), (100, 20, 9), (500, 20, 49)],
    ],
)
def test_the_issue_table_at_k_10(n: int, cap: int, requests: int) -> None:
    """The 'achievable' column of issue 11 (K = 10)."""
    assert sum(group_rounds(n, cap, 10)) == requests


def test_rounds_are_few_for_large_groups() -> None:
    """A tournament takes about log_{cap/K}(n) round trips, the first holding n // cap requests."""
    assert group_rounds(3000, 100, 10) == [30, 3, 1]
    assert group_rounds(50_000, 100, 10) == [500, 50, 5, 1]
    assert group_rounds(500, 20, 3) == [25, 3, 1, 1]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=101, max_value=600), data=st.data())
async def test_failed_items_leave_the_group_without_breaking_exactness(
    n: int, data: st.DataObject
) -> None:
    """Items a chunk cannot rank are left out, and the exact ranks of the rest stay exact."""
    failing = frozenset(data.draw(st.sets(st.integers(min_value=0, max_value=n - 1))))
    fit = {i: float((i * 7919) % 1000) for i in range(n)}
    ranker = SubsetRanker(fit, failing=failing)
    items = list(range(n))
    result = await rank_group(items, rank_chunk=ranker, chunk_size=100, exact_top_k=10)
    truth = ranker.truth(items)
    assert sorted(result.order) == sorted(truth)
    assert result.order[: result.exact] == truth[: result.exact]
    assert result.exact >= min(10, len(truth))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=21, max_value=400),
    chunk_size=st.integers(min_value=4, max_value=30),
    data=st.data(),
)
async def test_a_candidate_lost_in_a_later_round_is_replaced(
    n: int, chunk_size: int, data: st.DataObject
) -> None:
    """Candidates that fail when sent again: their outputs give their next; ranks stay exact."""
    top_k = data.draw(st.integers(min_value=1, max_value=chunk_size - 1), label="top_k")
    lost = frozenset(data.draw(st.sets(st.integers(min_value=0, max_value=n - 1), max_size=20)))
    rng = random.Random(data.draw(st.integers(min_value=0, max_value=2**32), label="seed"))
    fit = {i: float(rng.randint(0, 1000)) for i in range(n)}
    ranker = SubsetRanker(fit, fail_on_repeat=lost)
    result = await rank_group(
        list(range(n)), rank_chunk=ranker, chunk_size=chunk_size, exact_top_k=top_k
    )
    # The items that failed at some point are out; the truth is the order of the others.
    dropped = {item for item in lost if sum(item in chunk for chunk in ranker.chunks) > 1}
    truth = [item for item in ranker.truth(list(range(n))) if item not in dropped]
    assert sorted(result.order) == sorted(truth)
    assert result.order[: result.exact] == truth[: result.exact]
    assert result.exact >= min(top_k, len(truth))
    assert result.lost == len(dropped)


async def test_a_lost_candidate_costs_a_request_and_is_counted() -> None:
    """The best item failing in the final request: its chunk's next item is asked for."""
    fit = {i: float(i) for i in range(150)}  # higher id = better; 149 is the best
    ranker = SubsetRanker(fit, fail_on_repeat=frozenset({99}))
    result = await rank_group(list(range(150)), rank_chunk=ranker, chunk_size=100, exact_top_k=10)
    truth = [i for i in range(149, -1, -1) if i != 99]
    assert result.lost == 1
    assert result.requests == 3  # one more than planned (2)
    assert result.order[: result.exact] == truth[: result.exact]
    assert result.exact >= 10


async def test_ranks_beyond_the_exact_ones_follow_the_documented_rule() -> None:
    """Past the exact ranks: the final request's order, then left-overs by round, rank, request."""
    fit = {i: float(i) for i in range(12)}  # higher id = better
    ranker = SubsetRanker(fit)
    # Round 1: three full chunks [0-3] [4-7] [8-11]; their top 2 (3, 2 / 7, 6 / 11, 10) are six
    # candidates: round 2 sends one full request [3, 2, 7, 6] (-> 7, 6 go on), 11, 10 wait;
    # round 3 sends [11, 10, 7, 6] as the final request (no room left to fill).
    result = await rank_group(list(range(12)), rank_chunk=ranker, chunk_size=4, exact_top_k=2)
    assert ranker.chunks == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
        [3, 2, 7, 6],
        [11, 10, 7, 6],
    ]
    assert (result.exact, result.requests_per_round) == (2, (3, 1, 1))
    # Then: round 2's left-over (3, 2); round 1's by rank, then request: 1, 5, 9; 0, 4, 8.
    assert result.order == [11, 10, 7, 6, 3, 2, 1, 5, 9, 0, 4, 8]


async def test_the_final_request_is_filled_for_more_exact_ranks() -> None:
    """150 items: one full chunk, then its top 10 + 50 fresh + 40 more of its order (top 50)."""
    fit = {i: float((i * 7919) % 1000) for i in range(150)}
    ranker = SubsetRanker(fit)
    result = await rank_group(list(range(150)), rank_chunk=ranker, chunk_size=100, exact_top_k=10)
    first = ranker.truth(list(range(100)))
    assert ranker.chunks[1] == first[:10] + list(range(100, 150)) + first[10:50]
    assert result.exact == 50
    assert result.order[:50] == ranker.truth(list(range(150)))[:50]


async def test_top_k_zero_ranks_chunks_once_and_interleaves_them() -> None:
    """exact_top_k=0: ceil(n / cap) balanced chunks, ranks interleaved by chunk rank."""
    fit = {i: float(i) for i in range(9)}
    ranker = SubsetRanker(fit)
    result = await rank_group(list(range(9)), rank_chunk=ranker, chunk_size=4, exact_top_k=0)
    assert ranker.chunks == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert result.order == [2, 5, 8, 1, 4, 7, 0, 3, 6]
    assert (result.exact, result.requests_per_round) == (0, (3,))


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
        return ordered if calls <= 2 else ordered[::-1]

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
