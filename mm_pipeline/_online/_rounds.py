"""Exact top-K ranks for groups larger than one request: a tournament with fill (pure).

The API ranks at most ``cap`` items per request (100 dealers, 20 VINs), and the ranks of two
requests are not comparable. What makes a global ranking possible is the ranking contract:
every pair has a fit that depends on that pair alone, so ranking any subset keeps the relative
order of the full set. Hence an item among the global top K is among the top K of whatever
request it lands in, and a request can carry the current top K of earlier requests *and* fill
its remaining room with items not sent yet: each full request eliminates ``cap - K`` items.

The schedule (:class:`Rounds`), per group of ``n`` items:

- State: *outputs* (ranked lists answered by earlier requests; pre-ranked chunks, such as the
  batch route's order of a vehicle's dealers, are outputs of a round 0 that sent nothing), the
  *candidates* taken from them (the top K of every output) and the *fresh* items (never sent).
- Each round: when the candidates and fresh items come from one output alone, that output is
  the group's order. When they fit one request, the **final request** holds them, filled with
  the next items of the outputs (round-robin) up to ``cap`` -- more exact ranks at no cost.
  Otherwise the round sends ``(candidates + fresh) // cap`` **full** requests, candidates first
  (the merges), then fresh items; the rest waits for the next round. No request but the final
  one is ever less than full.

So round 1 sends ``n // cap`` full chunks and keeps the rest as fill, and a group costs
exactly ``ceil((n - K) / (cap - K))`` requests (1 when ``n <= cap``), the fewest any schedule
can reach: every request but the final one eliminates at most ``cap - K`` items.
:func:`group_rounds` counts the same schedule with numbers alone, so plans are exact (the
tests run both side by side).

**Exact ranks.** Every item left out of the final request is beaten by at least K items that
reached it (the candidates its output gave, each in the final request or itself beaten by K
that did). So ranks ``1..e`` of the final request are exact, where ``e`` is the least number of
items any output with items left over gave (``K``, or more thanks to the fill), and all ranks
are exact when nothing was left over. The rest (``rank_exact`` false) follow a deterministic
order that never places an item above one that beat it in any answer: among the items whose
betters are placed, the one answered latest first (so the final request's order leads), then
by its rank in that answer, then by request position.

**Lost candidates.** A candidate an earlier request ranked may fail in a later one (the API
contradicts itself). Every output it was taken from then gives its next item as a candidate
(``lost``), so ranks ``1..e`` stay exact; this may cost a request beyond the plan.

``exact_top_k = 0``: no re-ranking; ``ceil(n / cap)`` balanced chunks (:func:`split_sizes`).
The order interleaves the outputs by their ranks: every output's first item (outputs in
request order, pre-ranked first), then every second item, and so on; exact only when a single
output holds the group.

This module imports nothing from the package: it is the algorithm alone.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GroupRanking", "RankChunk", "Rounds", "group_rounds", "rank_group", "split_sizes"]

#: Rank one chunk of item ids: return the ids that were ranked, best first (failed ids omitted).
RankChunk = Callable[[list[int]], Coroutine[Any, Any, list[int]]]


def split_sizes(n: int, chunk_size: int) -> list[int]:
    """Split ``n`` items into the fewest balanced chunks of at most ``chunk_size``.

    Balanced (sizes differ by at most one) so that no chunk is tiny: 101 items in chunks of 100
    become 51 + 50, not 100 + 1.

    Examples
    --------
    >>> split_sizes(101, 100)
    [51, 50]
    >>> split_sizes(0, 100)
    []
    """
    if n <= 0:
        return []
    count = math.ceil(n / chunk_size)
    base, extra = divmod(n, count)
    return [base + 1] * extra + [base] * (count - extra)


@dataclass(frozen=True, kw_only=True)
class GroupRanking:
    """The outcome of ranking one group.

    Attributes
    ----------
    order
        Item ids best first; rank ``i + 1`` for ``order[i]``. Ids that failed are absent.
    exact
        Ranks ``1..exact`` are exact (all of them when ``exact == len(order)``).
    requests_per_round
        Requests sent in round 1, 2, ... (empty when one pre-ranked chunk was the group).
    violations
        Relative-order contradictions seen between rounds.
    lost
        Candidates ranked by one request that failed in a later one (each made the outputs it
        came from give their next item).
    """

    order: list[int]
    exact: int
    requests_per_round: tuple[int, ...]
    violations: int = 0
    lost: int = 0

    @property
    def rounds(self) -> int:
        """Rounds that sent requests."""
        return len(self.requests_per_round)

    @property
    def requests(self) -> int:
        """Chunk rankings requested (422 re-sends inside a chunk are not counted here)."""
        return sum(self.requests_per_round)


@dataclass(eq=False)
class _Output:
    """One ranked list, and how many of its leading items were taken as candidates."""

    items: list[int]
    round: int
    number: int  # request position, for the order of left-over items
    taken: int = 0
    alive: int = 0  # taken and not lost since
    forwarded: bool = False  # some taken item went into a request before the final one

    @property
    def left_over(self) -> bool:
        return self.taken < len(self.items)


@dataclass
class Rounds:
    """The schedule of one group, one round at a time (see the module docstring).

    Call :meth:`next_round` for the requests to send (``None`` when done), give their answers
    to :meth:`answered`, and read :meth:`result` at the end. Synchronous and pure: the async
    :func:`rank_group` and the cost function :func:`group_rounds` both drive it.
    """

    chunk_size: int
    exact_top_k: int
    fresh: list[int]
    outputs: list[_Output] = field(default_factory=list)
    candidates: list[tuple[int, _Output]] = field(default_factory=list)
    # every output an item was taken from (a lost item makes each give its next one)
    taken_from: dict[int, list[_Output]] = field(default_factory=dict)
    origin: dict[int, tuple[int, int]] = field(default_factory=dict)  # item -> (output, rank)
    per_round: list[int] = field(default_factory=list)
    violations: int = 0
    lost: int = 0
    final: _Output | None = None

    @classmethod
    def start(
        cls,
        items: Sequence[int],
        *,
        chunk_size: int,
        exact_top_k: int,
        preranked: Sequence[Sequence[int]] = (),
    ) -> Rounds:
        """Begin a group: unranked ``items`` plus chunks already ranked (round 0)."""
        rounds = cls(chunk_size=chunk_size, exact_top_k=exact_top_k, fresh=list(items))
        for chunk in preranked:
            if chunk:
                rounds._add_output(list(chunk))
        return rounds

    def _add_output(self, items: list[int]) -> None:
        output = _Output(items, round=len(self.per_round), number=len(self.outputs))
        self.outputs.append(output)
        if self.exact_top_k:
            self._take(output, self.exact_top_k)

    def _take(self, output: _Output, count: int) -> list[int]:
        taken = output.items[output.taken : output.taken + count]
        for rank, item in enumerate(taken, start=output.taken):
            self.candidates.append((item, output))
            self.taken_from.setdefault(item, []).append(output)
            self.origin[item] = (output.number, rank)
        output.taken += len(taken)
        output.alive += len(taken)
        return taken

    def _fill(self, room: int) -> list[int]:
        """Take up to ``room`` further items from the outputs, round-robin (the final fill).

        Only from outputs whose candidates are all in the final request: an item placed there
        must not go above one that beat it and was eliminated in an earlier request.
        """
        filled: list[int] = []
        open_outputs = [o for o in self.outputs if o.left_over and not o.forwarded]
        while room > len(filled) and open_outputs:
            for output in open_outputs:
                if len(filled) == room:
                    break
                filled += self._take(output, 1)
            open_outputs = [o for o in open_outputs if o.left_over]
        return filled

    def next_round(self) -> list[list[int]] | None:
        """Return the requests of the next round, or ``None`` when the group's order is known."""
        cap = self.chunk_size
        if not self.exact_top_k:
            if not self.fresh:
                return None
            chunks, start = [], 0
            for size in split_sizes(len(self.fresh), cap):
                chunks.append(self.fresh[start : start + size])
                start += size
            self.fresh = []
            return self._send(chunks)
        sources = {id(output) for _, output in self.candidates}
        if not self.fresh and len(sources) <= 1:
            if self.candidates:
                self.final = self.candidates[0][1]
            self.candidates = []
            return None
        pool = [item for item, _ in self.candidates] + self.fresh
        if len(pool) <= cap:
            chunk = pool + self._fill(cap - len(pool))
            self.candidates, self.fresh = [], []
            return self._send([chunk])
        count = len(pool) // cap
        sent = count * cap
        rest = pool[sent:]
        kept = max(0, len(self.candidates) - sent)
        for _, output in self.candidates[: len(self.candidates) - kept]:
            output.forwarded = True
        self.candidates = self.candidates[len(self.candidates) - kept :]
        self.fresh = rest[kept:]
        return self._send([pool[i * cap : (i + 1) * cap] for i in range(count)])

    def _send(self, chunks: list[list[int]]) -> list[list[int]]:
        self.per_round.append(len(chunks))
        return chunks

    def answered(self, chunks: Sequence[Sequence[int]], answers: Sequence[list[int]]) -> None:
        """Take the answers of the round's requests (each the ranked ids, best first)."""
        for chunk, answer in zip(chunks, answers, strict=True):
            self.violations += _inversions(answer, self.origin)
            ranked = set(answer)
            for item in chunk:
                if item not in ranked and item in self.taken_from:
                    self._lose(item)
            if answer:
                self._add_output(answer)

    def _lose(self, item: int) -> None:
        """Replace a candidate a later request failed: its outputs each give one more."""
        self.lost += 1
        for output in self.taken_from.pop(item):
            output.alive -= 1
            self._take(output, 1)

    def result(self) -> GroupRanking:
        """Return the order and how far it is exact (once :meth:`next_round` gave ``None``)."""
        if not self.exact_top_k:
            return self._interleaved()
        final = self.final.items if self.final is not None else []
        left = [o for o in self.outputs if o is not self.final and o.left_over]
        exact = min([len(final), *(o.alive for o in left)])
        placed = set(final[:exact])
        rest = [item for o in left for item in o.items[o.taken :]] + final[exact:]
        return GroupRanking(
            order=final[:exact] + _consistent_order(self.outputs, rest, placed),
            exact=exact,
            requests_per_round=tuple(self.per_round),
            violations=self.violations,
            lost=self.lost,
        )

    def _interleaved(self) -> GroupRanking:
        outputs = [o.items for o in self.outputs]
        longest = max(map(len, outputs), default=0)
        order = [items[r] for r in range(longest) for items in outputs if r < len(items)]
        return GroupRanking(
            order=order,
            exact=len(order) if len(outputs) == 1 else 0,
            requests_per_round=tuple(self.per_round),
            violations=self.violations,
        )


def _consistent_order(outputs: list[_Output], rest: list[int], placed: set[int]) -> list[int]:
    """Order the items beyond the exact ranks without contradicting any answer.

    An item comes only after every item that beat it in some answer (a topological order of
    the answers' chains); among the items free to come next, the one answered latest first,
    then by its rank in that answer, then by request position. A contradicting API (a cycle)
    leaves some items unplaced: they follow in the same preference.
    """
    where: dict[int, tuple[int, int, int]] = {}
    after: dict[int, list[int]] = {}
    blockers = dict.fromkeys(rest, 0)
    for output in outputs:
        previous = None
        for rank, item in enumerate(output.items):
            if item in placed or item not in blockers:
                continue
            where[item] = (-output.round, rank, output.number)
            if previous is not None:
                after.setdefault(previous, []).append(item)
                blockers[item] += 1
            previous = item
    ready = [(where[item], item) for item, count in blockers.items() if not count]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, item = heapq.heappop(ready)
        order.append(item)
        for later in after.get(item, ()):
            blockers[later] -= 1
            if not blockers[later]:
                heapq.heappush(ready, (where[later], later))
    if len(order) < len(blockers):
        done = set(order)
        order += sorted((i for i in blockers if i not in done), key=where.__getitem__)
    return order


def _inversions(ranking: Sequence[int], origin: dict[int, tuple[int, int]]) -> int:
    """Count items ranked above an item that beat them in the output they were taken from.

    Items without an origin (ranked for the first time) are skipped.
    """
    last_rank: dict[int, int] = {}
    inversions = 0
    for item in ranking:
        if item not in origin:
            continue
        output, rank = origin[item]
        if rank < last_rank.get(output, -1):
            inversions += 1
        last_rank[output] = max(rank, last_rank.get(output, -1))
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
        The group's unranked item ids, in input order (requests follow this order).
    rank_chunk
        Ranks one chunk through the API; failed items are simply left out of its answer.
    chunk_size, exact_top_k
        Validated sizes (``0 <= exact_top_k < chunk_size``).
    preranked
        Chunks of further item ids already ranked, best first, of any size (not in ``items``);
        they join the rounds as outputs of round 0.

    Returns
    -------
    GroupRanking

    Raises
    ------
    Exception
        Whatever ``rank_chunk`` raised first; the round's other requests are cancelled.

    Examples
    --------
    >>> import asyncio
    >>> def fit(i):  # any per-item fit, ties broken by id
    ...     return -((i * 37) % 101), i
    >>> async def rank_chunk(chunk):
    ...     return sorted(chunk, key=fit)
    >>> truth = sorted(range(250), key=fit)
    >>> result = asyncio.run(rank_group(range(250), rank_chunk=rank_chunk, chunk_size=100,
    ...                                 exact_top_k=10))
    >>> result.order[:result.exact] == truth[:result.exact]
    True
    >>> result.requests_per_round, result.exact, len(result.order)
    ((2, 1), 25, 250)

    Items 0..239 ranked elsewhere (one exact chunk), 240..249 not: one request merges them.

    >>> batch = sorted(range(240), key=fit)
    >>> merged = asyncio.run(rank_group(range(240, 250), rank_chunk=rank_chunk, chunk_size=100,
    ...                                 exact_top_k=10, preranked=[batch]))
    >>> merged.order[:merged.exact] == truth[:merged.exact]
    True
    >>> merged.requests_per_round, merged.exact, len(merged.order)
    ((1,), 90, 250)
    """
    rounds = Rounds.start(
        items, chunk_size=chunk_size, exact_top_k=exact_top_k, preranked=preranked
    )
    while (chunks := rounds.next_round()) is not None:
        rounds.answered(chunks, await _rank_all(chunks, rank_chunk))
    return rounds.result()


def group_rounds(
    n: int, chunk_size: int, exact_top_k: int, *, preranked: Sequence[int] = ()
) -> list[int]:
    """Count the requests per round of one group of ``n`` items: :class:`Rounds`, by numbers.

    ``preranked`` gives the sizes of chunks already ranked (the batch route's order of a
    vehicle's dealers with a zip, merged with the ``n`` unranked ones). An error-free run sends
    exactly these requests: ``ceil((n - K) / (chunk_size - K))`` in all (1 when ``n`` fits one
    request), ``ceil(n / chunk_size)`` when ``exact_top_k`` is 0.

    Examples
    --------
    >>> group_rounds(100, 100, 10)
    [1]
    >>> group_rounds(230, 100, 10)  # two full chunks, then 2 x 10 candidates + 30 fresh
    [2, 1]
    >>> group_rounds(1001, 100, 10)
    [10, 1, 1]
    >>> group_rounds(100, 20, 10)  # /vins/rank: ceil(90 / 10) = 9 requests
    [5, 2, 1, 1]
    >>> group_rounds(12, 100, 10, preranked=[308])  # 10 + 12 candidates: one request
    [1]
    >>> group_rounds(0, 100, 10, preranked=[308])  # nothing to merge
    []
    >>> group_rounds(1000, 100, 0)
    [10]
    """
    if not exact_top_k:  # one round of balanced chunks; pre-ranked chunks are not sent again
        return [math.ceil(n / chunk_size)] if n > 0 else []
    sizes = [size for size in preranked if size > 0]
    if n <= 0 and len(sizes) <= 1:
        return []
    # The schedule depends on counts alone: every round sends pool // cap full requests, each
    # answer gives K candidates, the rest waits; the final request holds what is left.
    pool = n + sum(min(exact_top_k, size) for size in sizes)
    per_round = []
    while pool > chunk_size:
        full = pool // chunk_size
        per_round.append(full)
        pool -= full * (chunk_size - exact_top_k)
    return [*per_round, 1]
