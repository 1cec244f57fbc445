"""Rank normalised, valid, distinct pairs online, group by group: the online route's driver.

Groups (by vehicle for ``/dealers/rank``, by dealer for ``/vins/rank``) are worked on by a pool
of workers; a group that fits one request is sent whole (its request body joined in polars),
a larger one is ranked in the re-ranking rounds of :mod:`~mm_pipeline._online._rounds`, each
chunk through :class:`~mm_pipeline._online._chunks.ChunkSender`. Groups interleave: while one
group waits for a round's answers, the other workers' requests go out.

A request that still fails after the session's retries fails its whole group: with
``on_request_failed="raise"`` (default) the run stops and the error is raised with a note
naming the groups and pairs affected -- never a partial result presented as complete; with
``"fail"`` the group's pairs go to ``failed`` as ``ranking_failed`` and the rest is ranked.
Errors about the account (401, 403, exhausted quota) and a reached ``max_requests`` always
stop the run.

A group may also carry pre-ranked pairs (the batch route's exact order of a vehicle's dealers
with a zip): they are one output of round 0 of the rounds (``preranked``); their batch scores
are checked against every online answer that mentions them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import polars as pl

from mm_pipeline._answers import decoder
from mm_pipeline._exceptions import (
    AuthenticationError,
    BudgetExceededError,
    Hint,
    MarketMatchError,
    PermissionDeniedError,
    QuotaExhaustedError,
    TransportError,
)
from mm_pipeline._frames import (
    DEALER_FIELDS,
    PAIR_COLUMNS,
    ROW,
    VIN_FIELDS,
    json_fragment,
    json_fragments,
)
from mm_pipeline._online._chunks import ChunkSender
from mm_pipeline._online._match import FIELDS, Keys
from mm_pipeline._online._record import Counters, OnlineOutcome, Record
from mm_pipeline._online._rounds import GroupRanking, rank_group
from mm_pipeline._plan import GROUP_KEYS, Endpoint
from mm_pipeline._progress import progress_bar
from mm_pipeline._redact import get_logger

if TYPE_CHECKING:
    from mm_pipeline._session import Session

__all__ = ["OnRequestFailed", "OnlineOptions", "rank_online"]

OnRequestFailed = Literal["raise", "fail"]

_log = get_logger("mm_pipeline.online")
#: Errors about the account (or its budget), not the request: they stop the run even with
#: on_request_failed="fail".
_ACCOUNT_ERRORS = (
    AuthenticationError,
    PermissionDeniedError,
    QuotaExhaustedError,
    BudgetExceededError,
)
#: Transport failures that say the API cannot be reached at all, for any group.
_UNREACHABLE = frozenset({"ConnectError", "ConnectTimeout"})
_FAIL_REQUEST = Hint(argument="on_request_failed='fail'", flag="--on-request-failed fail")


@dataclass(frozen=True, kw_only=True)
class OnlineOptions:
    """The options of an online run, resolved and validated (see :func:`rank_online`)."""

    endpoint: Endpoint
    chunk_size: int
    exact_top_k: int
    concurrency: int = 16
    on_request_failed: OnRequestFailed = "raise"
    progress: bool | None = None
    planned_requests: int | None = None


@dataclass(frozen=True, kw_only=True)
class _Groups:
    """The groups of a run, by number: positions, single spec and, if sent whole, items."""

    members: list[list[int]]  # positions to rank
    pre: list[list[int]]  # pre-ranked positions, in their rank order
    heads: list[str]  # the group's single spec (JSON)
    items: list[str | None]  # a group that fits one request: its items' JSON, joined


def _groups(
    pairs: pl.DataFrame,
    endpoint: Endpoint,
    *,
    first_pre: int,
    preranked: pl.DataFrame | None,
    chunk_size: int,
) -> _Groups:
    """Group the positions; a group that fits one request gets its request items joined."""
    json = pl.col("_json")
    whole = pl.len() <= chunk_size
    if first_pre < pairs.height:  # pre-ranked pairs: their groups are ranked in rounds
        whole = whole & (pl.col("_position") < first_pre).all()
    grouped = (
        pairs.with_row_index("_position")
        .with_columns(_json=json_fragment(pairs, FIELDS[endpoint]))
        .group_by(GROUP_KEYS[endpoint], maintain_order=True)
        .agg(pl.col("_position"), json.str.join(","), whole.alias("_whole"))
        .with_columns(items=pl.when("_whole").then("_json"))
    )
    grouped = grouped.with_columns(
        head=json_fragment(grouped, VIN_FIELDS if endpoint == "dealers" else DEALER_FIELDS)
    )
    groups: list[list[int]] = grouped.get_column("_position").to_list()
    heads: list[str] = grouped.get_column("head").to_list()
    items: list[str | None] = grouped.get_column("items").to_list()
    if preranked is None or not preranked.height:
        return _Groups(members=groups, pre=[[] for _ in groups], heads=heads, items=items)
    rank_of = preranked.get_column("vin_rank").to_list()
    members = [[p for p in group if p < first_pre] for group in groups]
    pre = [
        sorted((p for p in group if p >= first_pre), key=lambda p: rank_of[p - first_pre])
        for group in groups
    ]
    return _Groups(members=members, pre=pre, heads=heads, items=items)


def _chunk_json(pairs: pl.DataFrame, grouped: _Groups, endpoint: Endpoint) -> list[str | None]:
    """Request fragments per position of the groups not sent whole (ranked in rounds)."""
    item_json: list[str | None] = [None] * pairs.height
    chunked = [
        p
        for g, items_json in enumerate(grouped.items)
        if items_json is None
        for p in (*grouped.members[g], *grouped.pre[g])
    ]
    if chunked:
        for p, fragment in zip(
            chunked, json_fragments(pairs[chunked], FIELDS[endpoint]), strict=True
        ):
            item_json[p] = fragment
    return item_json


@contextlib.contextmanager
def _frozen_out_of_gc() -> Iterator[None]:
    """Exempt the objects alive now (the run's per-pair lists) from garbage collection.

    A full collection visits every element of every list it tracks; the per-pair lists hold
    millions, and the fan-out allocates enough to trigger collections all along (measured by
    ``make bench``, scenario 2). ``gc.freeze`` moves what exists now to a generation the
    collector skips; ``gc.unfreeze`` returns it at the end, so nothing is leaked.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _GroupFailedError(Exception):
    """Internal: a group could not be ranked and the run must stop."""

    def __init__(self, error: MarketMatchError, group: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.group = group


async def _rank_group(
    sender: ChunkSender,
    members: list[int],
    pre: list[int],
    *,
    head: str,
    items: str | None,
    options: OnlineOptions,
) -> GroupRanking:
    """Rank one group: in one request when it fits one (*items* given), else in rounds."""
    if items is not None:
        order = await sender.rank(members, head=head, whole_group=items)
        return GroupRanking(order=order, exact=len(order), requests_per_round=(1,))
    return await rank_group(
        members,
        rank_chunk=functools.partial(sender.rank, head=head),
        chunk_size=options.chunk_size,
        exact_top_k=options.exact_top_k,
        preranked=[pre],
    )


def _explain_stop(
    error: MarketMatchError,
    *,
    group_pairs: int,
    groups_left: tuple[int, int],
    pairs_left: tuple[int, int],
) -> None:
    """Note on ``error`` what a stopped run left undone, and suggest ``on_request_failed='fail'``.

    The suggestion is left out where it cannot help: errors about the account stop the run
    anyway, and an API that cannot be reached will not rank the other groups either.
    """
    note = (
        f"mm_pipeline: ranking stopped because a request failed after retries; no partial "
        f"result is returned. The failing group has {group_pairs:,} pairs; "
        f"{groups_left[0]:,} of {groups_left[1]:,} groups ({pairs_left[0]:,} of "
        f"{pairs_left[1]:,} pairs) were not completed."
    )
    unreachable = isinstance(error, TransportError) and error.kind in _UNREACHABLE
    if not isinstance(error, _ACCOUNT_ERRORS) and not unreachable:
        note += (
            f" Pass {_FAIL_REQUEST.argument} to rank the other groups and list these pairs with "
            f"the failed ones (error_code 'ranking_failed')."
        )
        error.hints = (*error.hints, _FAIL_REQUEST)
    error.add_note(note)


def _count(counters: Counters, result: GroupRanking, *, merged: bool, pairs: int) -> None:
    """Add a ranked group's figures to the run's counters."""
    if merged:
        counters.merge_requests += result.requests
    else:
        counters.rerank_rounds = max(counters.rerank_rounds, result.rounds - 1)
        counters.rerank_requests += sum(result.requests_per_round[1:])
    counters.consistency_violations += result.violations
    counters.lost_candidates += result.lost
    counters.groups_done += 1
    counters.pairs_done += pairs


async def rank_online(
    pairs: pl.DataFrame,
    *,
    session: Session,
    options: OnlineOptions,
    preranked: pl.DataFrame | None = None,
) -> OnlineOutcome:
    """Rank normalised, valid, distinct pairs online, group by group.

    Parameters
    ----------
    pairs
        The six pair columns plus ``_row``; every row is one distinct pair.
    session
        An open session (its semaphore bounds requests in flight).
    options
        Sizes as resolved by :func:`mm_pipeline._plan.resolve_sizes`; ``concurrency`` groups
        worked on at once (their chunk requests queue on the session); what a chunk that fails
        after retries does (``"raise"`` or ``"fail"`` its group); the progress bar (over
        requests, ``None``: only in terminals and notebooks) and its total.
    preranked
        Further pairs of the same groups already in an exact order per group (the batch
        route's ranks): the six pair columns as given, ``_row``, ``vin_rank``, ``vin_score``,
        ``dealer_ymm_score`` and ``answered_mc_location_id`` (the rooftop's id as resolved).
        Each group's pre-ranked pairs are one pre-ranked chunk of
        :func:`~mm_pipeline._online._rounds.rank_group`, merged with its pairs of ``pairs``;
        their requests are counted in ``Counters.merge_requests``. They come back in the
        outcome like the others (in ``failed`` when their group fails).

    Returns
    -------
    OnlineOutcome
        Every pair (and pre-ranked pair) exactly once in ``ranked`` or ``failed``.
    """
    endpoint = options.endpoint
    pairs = pairs.select(*PAIR_COLUMNS, ROW)
    first_pre = pairs.height  # positions from here on are pre-ranked
    if preranked is not None and preranked.height:
        pairs = pl.concat([pairs, preranked.select(pairs.columns)])
    grouped = _groups(
        pairs, endpoint, first_pre=first_pre, preranked=preranked, chunk_size=options.chunk_size
    )
    groups, pre_groups = grouped.members, grouped.pre
    rankings: list[tuple[list[int], int]] = [([], 0)] * len(groups)
    label = "ranking dealers" if endpoint == "dealers" else "ranking vehicles"
    planned = options.planned_requests
    with (
        progress_bar(options.progress, total=planned, desc=label) as bar,
        contextlib.ExitStack() as scope,
    ):
        record = Record.empty(pairs)
        sender = ChunkSender(
            session=session,
            progress=bar,
            pairs=pairs,
            keys=Keys.of(pairs, endpoint),
            record=record,
            decode=decoder(endpoint),
            item_json=_chunk_json(pairs, grouped, endpoint),
            planned=planned or 0,
        )
        scope.enter_context(_frozen_out_of_gc())  # until the result frames are built
        if preranked is not None and preranked.height:
            record.seed(first_pre, preranked)
        counters = record.counters
        queue: Iterator[tuple[int, list[int]]] = iter(enumerate(groups))

        async def worker() -> None:
            for number, members in queue:
                pre = pre_groups[number]
                try:
                    result = await _rank_group(
                        sender,
                        members,
                        pre,
                        head=grouped.heads[number],
                        items=grouped.items[number],
                        options=options,
                    )
                except MarketMatchError as exc:
                    if options.on_request_failed == "raise" or isinstance(exc, _ACCOUNT_ERRORS):
                        raise _GroupFailedError(exc, number) from None
                    record.fail(
                        members + pre,
                        "ranking_failed",
                        f"a request for this pair's group failed after retries: {exc}",
                        contradiction=False,
                    )
                    _log.warning("group %d failed after retries: %s", number, exc)
                    continue
                rankings[number] = (result.order, result.exact)
                _count(counters, result, merged=bool(pre), pairs=len(members) + len(pre))

        try:
            async with asyncio.TaskGroup() as tasks:
                for _ in range(max(1, min(options.concurrency, len(groups)))):
                    tasks.create_task(worker())
        except ExceptionGroup as group:
            stops = [exc for exc in group.exceptions if isinstance(exc, _GroupFailedError)]
            if not stops:  # not an API failure: a bug, surfaced as itself
                raise group.exceptions[0] from None
            number = stops[0].group
            error = stops[0].error
            _explain_stop(
                error,
                group_pairs=len(groups[number]) + len(pre_groups[number]),
                groups_left=(len(groups) - counters.groups_done, len(groups)),
                pairs_left=(pairs.height - counters.pairs_done, pairs.height),
            )
            raise error from None
        ranked, failed = record.frames(pairs, rankings)
    return OnlineOutcome(ranked=ranked, failed=failed, counters=counters)
