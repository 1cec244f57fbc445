"""Exact top-K ranks for groups larger than one request: re-ranking rounds.

The API ranks at most 100 dealers (20 VINs) per request, and the ranks of two requests are not
comparable. What makes a global ranking possible is the ranking contract: every pair has a fit
that depends on that pair alone, so ranking any subset keeps the relative order of the full
set. Hence an item among the global top K is among the top K of whatever chunk it lands in.

The algorithm, per group:

1. Split the group into balanced chunks of at most ``chunk_size`` (:func:`split_sizes`) and
   rank every chunk (concurrently).
2. If one request held every remaining item, its order is the group's order: all exact.
3. Otherwise keep the top ``exact_top_k`` of every chunk as candidates and rank those the same
   way (round 2, 3, ...) until one request holds all candidates. That request's ranks
   1..K are the group's exact ranks 1..K (``rank_exact`` true). (When every remaining item
   fits one request -- after failures, say -- they are all kept: same cost, more exact.)
4. The rest get ranks K+1..N by a documented, deterministic rule (``rank_exact`` false):
   first the remaining items of the final request in its order, then the items eliminated in
   the latest round before it, and so on back to round 1; within one round by their rank in
   the chunk that eliminated them, then by that chunk's position. An item ranked k-th in its
   chunk is thus placed after every item that beat it there -- the order is never
   contradicted by anything the API said, it is just not guaranteed to be the global one.

A group may also start from **pre-ranked chunks**: items already in an exact order of their
own, whatever their number (the batch route's ranking of a vehicle's dealers that have a zip).
They count as chunks ranked in a round 0 that sent no request: the candidates of round 1 are
the top ``exact_top_k`` of every pre-ranked chunk plus every unranked item (the ones the batch
could not rank, such as dealers known only by ``mc_location_id``), and the rounds go on as
above; pre-ranked items beyond the top K are eliminated in round 0, so they come last, in
their pre-ranked order. (A group that fits one request is sent whole: exact throughout.) One
pre-ranked chunk and no unranked item is the group's order as is.

While doing so it checks consistency: an item's relative order among the items of its previous
chunk must hold in the next round (an inversion is counted in ``violations``); equal scores for
the same pair in every request are checked by the caller, which sees the scores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from mm_pipeline._plan import split_sizes

__all__ = ["GroupRanking", "RankChunk", "rank_group"]

#: Rank one chunk of item ids: return the ids that were ranked, best first (failed ids omitted).
RankChunk = Callable[[list[int]], Coroutine[Any, Any, list[int]]]


@dataclass(frozen=True, kw_only=True)
class GroupRanking:
    """The outcome of ranking one group.

    Attributes
    ----------
    order
        Item ids best first; rank ``i + 1`` for ``order[i]``. Ids that failed are absent.
    exact
        Ranks ``1..exact`` are exact (all of them when ``exact == len(order)``).
    rounds
        Rounds that sent requests (1 when the group fitted one request; 0 when one pre-ranked
        chunk was the whole group).
    requests
        Chunk rankings requested (422 re-sends inside a chunk are not counted here).
    violations
        Relative-order contradictions seen between rounds.
    """

    order: list[int]
    exact: int
    rounds: int
    requests: int
    violations: int


def _chunks(items: Sequence[int], chunk_size: int) -> list[list[int]]:
    chunks: list[list[int]] = []
    start = 0
    for size in split_sizes(len(items), chunk_size):
        chunks.append(list(items[start : start + size]))
        start += size
    return chunks


def _inversions(ranking: Sequence[int], origin: dict[int, tuple[int, int]]) -> int:
    """Count items ranked above an item that beat them in their previous chunk.

    Items without an origin (ranked for the first time) are skipped.
    """
    last_rank: dict[int, int] = {}
    inversions = 0
    for item in ranking:
        if item not in origin:
            continue
        chunk, rank = origin[item]
        if rank < last_rank.get(chunk, -1):
            inversions += 1
        last_rank[chunk] = max(rank, last_rank.get(chunk, -1))
    return inversions


async def _rank_all(chunks: list[list[int]], rank_chunk: RankChunk) -> list[list[int]]:
    """Rank chunks concurrently; the first failure cancels the others and is raised."""
    if len(chunks) == 1:  # the common case, without the cost of a task group
        return [await rank_chunk(chunks[0])]
    try:
        async with asyncio.TaskGroup() as tasks:
            pending = [tasks.create_task(rank_chunk(chunk)) for chunk in chunks]
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in pending]


async def rank_group(
    items: Sequence[int],
    *,
    rank_chunk: RankChunk,
    chunk_size: int,
    exact_top_k: int,
    preranked: Sequence[Sequence[int]] = (),
) -> GroupRanking:
    """Rank one group of item ids with re-ranking rounds (see the module docstring).

    Parameters
    ----------
    items
        The group's unranked item ids, in input order (chunks follow this order).
    rank_chunk
        Ranks one chunk through the API; failed items are simply left out of its answer.
    chunk_size, exact_top_k
        Validated sizes (``1 <= exact_top_k <= chunk_size // 2``).
    preranked
        Chunks of further item ids already ranked, best first, of any size (not in ``items``);
        they join the rounds as chunks ranked in round 0.

    Returns
    -------
    GroupRanking

    Raises
    ------
    Exception
        Whatever ``rank_chunk`` raised first; the group's other requests are cancelled.

    Examples
    --------
    >>> import asyncio
    >>> fit = {i: (i * 37) % 101 for i in range(250)}  # any per-item fit
    >>> async def rank_chunk(chunk):
    ...     return sorted(chunk, key=lambda i: -fit[i])
    >>> truth = sorted(range(250), key=lambda i: -fit[i])
    >>> result = asyncio.run(rank_group(range(250), rank_chunk=rank_chunk, chunk_size=100,
    ...                                 exact_top_k=10))
    >>> result.order[:10] == truth[:10]
    True
    >>> result.exact, result.rounds, result.requests, len(result.order)
    (10, 2, 4, 250)

    Items 0..239 ranked elsewhere (one exact chunk), 240..249 not: one request merges them.

    >>> batch = sorted(range(240), key=lambda i: -fit[i])
    >>> merged = asyncio.run(rank_group(range(240, 250), rank_chunk=rank_chunk, chunk_size=100,
    ...                                 exact_top_k=10, preranked=[batch]))
    >>> merged.order[:10] == truth[:10]
    True
    >>> merged.exact, merged.rounds, merged.requests, len(merged.order)
    (10, 1, 1, 250)
    """
    rankings = [list(chunk) for chunk in preranked if chunk]  # the latest round's answers
    pending = list(items)  # items not ranked yet
    eliminated: list[tuple[int, int, int, int]] = []  # (round, rank in chunk, chunk, item)
    rounds = requests = violations = 0
    while pending or len(rankings) > 1:
        candidates: list[int] = []
        origin: dict[int, tuple[int, int]] = {}
        # Everything left fits one request (possible after failures, or with a small batch
        # part): rank it all, at no extra cost, rather than only the top K of each chunk.
        fits = len(pending) + sum(len(ranking) for ranking in rankings) <= chunk_size
        keep = chunk_size if fits else exact_top_k
        for index, ranking in enumerate(rankings):
            candidates.extend(ranking[:keep])
            for rank, item in enumerate(ranking):
                origin[item] = (index, rank)
                if rank >= keep:
                    eliminated.append((rounds, rank, index, item))
        candidates.extend(pending)
        pending = []
        chunks = _chunks(candidates, chunk_size)
        rounds += 1
        requests += len(chunks)
        answers = await _rank_all(chunks, rank_chunk)
        if origin:
            violations += sum(_inversions(answer, origin) for answer in answers)
        rankings = [answer for answer in answers if answer]
    final = rankings[0] if rankings else []
    eliminated.sort(key=lambda entry: (-entry[0], entry[1], entry[2]))
    order = final + [entry[3] for entry in eliminated]
    exact = len(order) if not eliminated else min(exact_top_k, len(final))
    return GroupRanking(
        order=order, exact=exact, rounds=rounds, requests=requests, violations=violations
    )
