"""Concurrent chunk requests: encode, send, prune 422s, match answers back to input pairs.

:func:`rank_online` ranks normalised, valid, distinct pairs through ``/dealers/rank`` or
``/vins/rank``. Pairs are addressed by their position in that frame; everything per pair lives
in plain Python lists indexed by position (request JSON fragments, match keys, scores, errors),
and the result frames are built once at the end, so the per-pair overhead is a few list and
dict operations.

Request bodies are joined from per-pair JSON fragments that polars encodes vectorised. Answers
are matched to the request's items by key, tolerantly: ``/dealers/rank`` items by ``source``
plus ``zip`` / ``mc_location_id`` where both sides have them, ``/vins/rank`` items by ``vin``
plus ``price`` / ``miles`` where both sides have them; extra fields are ignored.

- 422 on a chunk: the items named in ``failed_vins`` / ``missing_dealers`` /
  ``multi_location_sources`` go to ``failed`` (``vin_decode_failed`` / ``dealer_not_found`` /
  ``multi_location_requires_zip``) and the rest of the chunk is sent again. A 422 that names
  nothing in the chunk fails the whole chunk (``ranking_failed``, with the server's message).
- ``failed_items`` of a 200 go to ``failed`` (``vin_decode_failed`` unless the item carries an
  ``error_code``); a sent pair the answer does not mention goes to ``failed`` as
  ``ranking_failed``. Nothing is dropped.
- Any other error (after the session's retries) fails the chunk's whole group: with
  ``on_request_failed="raise"`` (default) the run stops and the error is raised with a note
  naming the groups and pairs affected -- never a partial result presented as complete; with
  ``"fail"`` the group's pairs go to ``failed`` as ``ranking_failed`` and the rest is ranked.
  Errors about the account (401, 403, exhausted quota) always stop the run.

A group may also carry pre-ranked pairs (the batch route's exact order of a vehicle's dealers
with a zip): they are merged with the group's other pairs by the re-ranking rounds of
``_online._rounds`` (``rank_online``'s ``preranked``); their batch scores are checked against every
online answer that mentions them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import orjson
import polars as pl

from mm_pipeline._answers import TypedAnswer, decoder
from mm_pipeline._exceptions import (
    AuthenticationError,
    MarketMatchError,
    PermissionDeniedError,
    QuotaExhaustedError,
    TransportError,
    UnprocessableError,
)
from mm_pipeline._frames import (
    DEALER_FIELDS,
    FAILED_SCHEMA,
    PAIR_COLUMNS,
    RANKED_SCHEMA,
    ROW,
    VIN_FIELDS,
    json_fragment,
    json_fragments,
)
from mm_pipeline._online._rounds import GroupRanking, rank_group
from mm_pipeline._plan import GROUP_KEYS, Endpoint
from mm_pipeline._progress import Progress, progress_bar
from mm_pipeline._redact import get_logger

if TYPE_CHECKING:
    from mm_pipeline._client import Session

__all__ = ["Counters", "OnRequestFailed", "OnlineOutcome", "rank_online"]

OnRequestFailed = Literal["raise", "fail"]

_log = get_logger("mm_pipeline.fanout")
_PATHS: dict[Endpoint, tuple[str, str, str]] = {
    # path, key of the single spec, key of the list
    "dealers": ("/v2/marketmatch/dealers/rank", "vin", "dealers"),
    "vins": ("/v2/marketmatch/vins/rank", "dealer", "vins"),
}
#: Errors about the account, not the request: they stop the run even with on_request_failed="fail".
_ACCOUNT_ERRORS = (AuthenticationError, PermissionDeniedError, QuotaExhaustedError)
_FIELDS: dict[Endpoint, tuple[str, str, str]] = {"dealers": DEALER_FIELDS, "vins": VIN_FIELDS}
#: Readers of a typed answer's items: (key, second, third) per endpoint, scores, rank.
_KEYS = {
    endpoint: tuple(operator.attrgetter(name) for name in fields)
    for endpoint, fields in _FIELDS.items()
}
_VIN_SCORE = operator.attrgetter("vin_score")
_DEALER_SCORE = operator.attrgetter("dealer_ymm_score")
_RANK = operator.attrgetter("vin_rank")
_ZIP = operator.attrgetter("zip")
_MC_LOCATION_ID = operator.attrgetter("mc_location_id")
_MESSAGES = {
    "vin_decode_failed": "the API could not decode this VIN",
    "dealer_not_found": "the API does not know this dealer",
    "multi_location_requires_zip": (
        "this dealer has several locations: give zip or mc_location_id"
    ),
}


@dataclass(kw_only=True)
class Counters:
    """What an online run counted (see :class:`~mm_pipeline.RankStats` for the meanings)."""

    rerank_rounds: int = 0
    rerank_requests: int = 0
    merge_requests: int = 0
    consistency_violations: int = 0
    lost_candidates: int = 0
    resent_after_422: int = 0
    unmatched_answers: int = 0
    groups_done: int = 0
    pairs_done: int = 0


@dataclass(kw_only=True)
class OnlineOutcome:
    """Ranked and failed pairs of an online run (both with ``_row``), and its counters."""

    ranked: pl.DataFrame
    failed: pl.DataFrame
    counters: Counters = field(default_factory=Counters)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return (value if value.__class__ is str else str(value)).strip() or None


def _same(given: Any, answered: Any) -> bool:
    """Tell whether an answered value may stand for a given one (a missing side matches)."""
    if given is None or answered is None:
        return True
    if isinstance(given, int) and isinstance(answered, int | float):
        return given == answered
    return str(given) == str(answered).strip()


def _echoed(given: list[Any], answered: list[Any]) -> bool:
    """Tell whether answered values equal the given ones wherever one was given."""
    return (
        given == answered
        or given.count(None) == len(given)
        or all(g is None or g == a for g, a in zip(given, answered, strict=True))
    )


def _merge(fast: dict[Any, int], index: dict[Any, list[int]]) -> None:
    """Move the unmatched positions of the fast path into the tolerant index."""
    for key, position in fast.items():
        index.setdefault(key, []).append(position)


def _score(value: Any) -> float | None:
    """Read an answered number as a float (None when it is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _rank_value(value: Any) -> float:
    """Sort key of an answered ``vin_rank``: the number, or last when it is missing."""
    number = _score(value)
    return float("inf") if number is None else number


@dataclass
class _ExactLog:
    """Scores and answered ids of single-request groups, one entry per ranked pair.

    Each such pair is answered once, so nothing needs looking up while ranking: the values
    are appended as they come, and scattered into the result columns once, at the end. The
    answered ``zip`` / ``mc_location_id`` are kept only when some pair did not give its own
    (the result takes them only there).
    """

    keep_zip: bool
    keep_mc: bool
    positions: list[int] = field(default_factory=list)
    vin_score: list[float] = field(default_factory=list)
    dealer_score: list[float] = field(default_factory=list)
    answered_zip: list[str | None] = field(default_factory=list)
    answered_mc: list[str | None] = field(default_factory=list)


@dataclass(kw_only=True)
class _ChunkRanker:
    """Per-run state: one entry per pair position, shared by all chunk requests."""

    endpoint: Endpoint
    session: Session
    progress: Progress
    pairs: pl.DataFrame
    # request fragments of groups not sent whole (the group's single spec is passed to
    # rank_chunk; a group sent whole has its items joined already)
    item_json: list[str | None]
    # match keys (dealers: source, zip, mc_location_id; vins: vin, price, miles)
    key: list[Any]
    second: list[Any]
    third: list[Any]
    unkeyed: tuple[bool, bool, bool]  # the key column is null throughout (nothing to match)
    rows: pl.Series
    decode: Callable[[bytes], Any]
    zip_given: list[str | None]
    mc_given: list[str | None]
    # results
    vin_score: list[float | None]
    dealer_score: list[float | None]
    answered_zip: list[str | None]
    answered_mc: list[str | None]
    error_code: list[str | None]
    error_message: list[str | None]
    # results of single-request groups (see _record_exact), as flat columns
    exact: _ExactLog
    counters: Counters = field(default_factory=Counters)
    planned: int = 0

    def _body(self, positions: list[int], head: str, items: str | None = None) -> bytes:
        """Encode the request for *positions* (*items*: their JSON fragments joined, if known)."""
        _path, single, many = _PATHS[self.endpoint]
        if items is None:
            known = [self.item_json[p] for p in positions]
            fragments = [f for f in known if f is not None]
            if len(fragments) < len(known):  # a group sent whole, sent again without some
                fragments = json_fragments(self.pairs[positions], _FIELDS[self.endpoint])
            items = ",".join(fragments)
        return f'{{"{single}":{head},"{many}":[{items}]}}'.encode()

    def _index(self, positions: list[int]) -> dict[Any, list[int]]:
        """Map match keys to the chunk's positions (several when a key repeats)."""
        index: dict[Any, list[int]] = {}
        for p in positions:
            index.setdefault(self.key[p], []).append(p)
        return index

    def _take(self, index: dict[Any, list[int]], item: Any) -> int | None:
        """Pop the first request position an answered item (dict) can stand for, tolerantly."""
        if not isinstance(item, dict):
            return None
        if self.endpoint == "dealers":
            key = _text(item.get("source"))
            key = key.lower() if key else key
            second, third = _text(item.get("zip")), _text(item.get("mc_location_id"))
        else:
            key = _text(item.get("vin"))
            key = key.upper() if key else key
            second, third = item.get("price"), item.get("miles")
        candidates = index.get(key)
        if not candidates:
            return None
        for i, p in enumerate(candidates):
            if _same(self.second[p], second) and _same(self.third[p], third):
                del candidates[i]
                return p
        return None

    def _fail(
        self, positions: list[int], code: str, message: str, *, contradiction: bool = True
    ) -> None:
        for p in positions:
            if self.error_code[p] is None:
                self.error_code[p] = code
                self.error_message[p] = message
            if self.vin_score[p] is not None:
                # Ranked in an earlier round, failed now: the API contradicts itself.
                self.counters.consistency_violations += int(contradiction)
                self.vin_score[p] = self.dealer_score[p] = None

    def _named_by_422(self, positions: list[int], exc: UnprocessableError) -> dict[int, str]:
        """Map the chunk's positions a 422 names to their error codes."""
        named: dict[int, str] = {}
        vins = {str(v).strip().upper() for v in exc.failed_vins}
        if self.endpoint == "vins":
            # One dealer, many VINs: a dealer problem concerns the whole chunk.
            dealer_code = (
                "dealer_not_found"
                if exc.missing_dealers
                else "multi_location_requires_zip"
                if exc.multi_location_sources
                else None
            )
            for p in positions:
                code = "vin_decode_failed" if self.key[p] in vins else dealer_code
                if code:
                    named[p] = code
            return named
        if vins:  # one VIN, many dealers: the VIN concerns the whole chunk
            named = dict.fromkeys(positions, "vin_decode_failed")
        index = self._index(positions)
        for dealer in exc.missing_dealers:
            found = self._take(index, dealer if isinstance(dealer, dict) else {"source": dealer})
            if found is not None:
                named.setdefault(found, "dealer_not_found")
        for source in exc.multi_location_sources:
            host = (_text(source) or "").lower()
            same = [p for p in positions if self.key[p] == host]
            bare = [p for p in same if self.second[p] is None and self.third[p] is None]
            for p in bare or same:
                named.setdefault(p, "multi_location_requires_zip")
        return named

    def _prune(self, positions: list[int], exc: UnprocessableError) -> list[int]:
        """Fail the items a 422 names; return the rest (all of them failed if none named)."""
        detail = f"422: {exc.message}"
        named = self._named_by_422(positions, exc)
        if not named:
            self._fail(
                positions,
                "ranking_failed",
                f"the API refused the request without naming the failing items ({detail})",
            )
            return []
        for p, code in named.items():
            self._fail([p], code, f"{_MESSAGES[code]} ({detail})")
        return [p for p in positions if p not in named]

    def _absorb(self, positions: list[int], answer: Any) -> list[int]:
        """Record a 200 answer; return the ranked positions, best first."""
        if isinstance(answer, TypedAnswer):
            exact = self._record_exact(positions, answer)
            if exact is not None:
                return exact
            answer = msgspec.to_builtins(answer)  # and read it tolerantly, below
        items = answer.get("ranked_matches") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise TransportError(
                "the response has no ranked_matches list",
                kind="InvalidResponse",
                method="POST",
                url=_PATHS[self.endpoint][0],
            )
        ranked, index = self._match_ranked(positions, items)
        for item in answer.get("failed_items") or []:
            p = self._take(index, item)
            if p is None:
                self.counters.unmatched_answers += 1
                continue
            code = item.get("error_code") if isinstance(item, dict) else None
            message = item.get("error_message") if isinstance(item, dict) else None
            code = code if isinstance(code, str) and code else "vin_decode_failed"
            if not isinstance(message, str) or not message:
                message = (
                    f"{_MESSAGES.get(code, 'the API could not rank this pair')} (failed_items)"
                )
            self._fail([p], code, message)
        for p in (p for candidates in index.values() for p in candidates):
            alias = self._alias(p, ranked)
            if alias is None:
                self._fail([p], "ranking_failed", "the API's answer did not mention this pair")
            else:
                self._fail(
                    [p],
                    "duplicate_conflict",
                    f"names the same rooftop as input row {self.rows[alias]} (as the API resolved "
                    "it), which the API ranks once per request; see that row's rank",
                    contradiction=False,
                )
        return ranked

    def _record_exact(self, positions: list[int], answer: TypedAnswer) -> list[int] | None:
        """Record a typed answer that echoes its chunk exactly; ``None`` for any other answer.

        The hot path of the library, for groups that fit one request (the positions are
        answered nowhere else): C-level passes over the items instead of a Python loop per
        pair. It takes the answers the API gives almost always -- every sent item ranked once
        and echoed as sent (match keys unique in the chunk, or with the ZIP / price where a
        key repeats), scores present, ``vin_rank`` ascending, no ``failed_items`` -- and
        leaves any other answer, untouched, to the tolerant path (:meth:`_match_ranked`),
        which gives the same result for these.
        """
        items: list[Any] = answer.ranked_matches
        if answer.failed_items or len(items) != len(positions):
            return None
        key, second, third = _KEYS[self.endpoint]
        given: list[Any] = list(map(self.key.__getitem__, positions))
        answered: Iterator[Any] = map(key, items)
        by_key = dict(zip(given, positions, strict=True))
        if len(by_key) != len(positions):  # a key repeats (one source, several rooftops)
            seconds_given = list(map(self.second.__getitem__, positions))
            by_key = dict(zip(zip(given, seconds_given, strict=True), positions, strict=True))
            if None in seconds_given or len(by_key) != len(positions):
                return None
            answered = zip(answered, map(second, items), strict=True)
        ranked: list[Any] = list(map(by_key.get, answered))
        if None in ranked or len(set(ranked)) != len(ranked):
            return None
        # Present and typed: the typed decoding saw to it.
        vin_score = list(map(_VIN_SCORE, items))
        dealer_score = list(map(_DEALER_SCORE, items))
        ranks = list(map(_RANK, items))
        if not all(map(operator.le, ranks, ranks[1:])):
            return None
        seconds, thirds = list(map(second, items)), list(map(third, items))
        if not (
            (self.unkeyed[1] or _echoed(list(map(self.second.__getitem__, ranked)), seconds))
            and (self.unkeyed[2] or _echoed(list(map(self.third.__getitem__, ranked)), thirds))
        ):
            return None
        log = self.exact
        log.positions += ranked
        log.vin_score += vin_score
        log.dealer_score += dealer_score
        dealers = self.endpoint == "dealers"
        if log.keep_zip:
            log.answered_zip += seconds if dealers else map(_ZIP, items)
        if log.keep_mc:
            log.answered_mc += thirds if dealers else map(_MC_LOCATION_ID, items)
        return ranked

    def _match_ranked(  # noqa: PLR0912, PLR0915 (the per-pair hot loop is kept in one frame)
        self, positions: list[int], items: list[Any]
    ) -> tuple[list[int], dict[Any, list[int]]]:
        """Match ``ranked_matches`` to positions and record their scores.

        The hot path of the library (once per ranked pair): an item whose key is unique in the
        chunk and echoed as sent is matched with one dict pop and two comparisons; a key that
        repeats in the chunk (several rooftops of one source) goes to the tolerant
        :meth:`_take`, and so does everything after an item that is not echoed as sent.
        Returns the ranked positions best first, and the index of the positions not matched.
        """
        key, second, third = self.key, self.second, self.third
        vin_score, dealer_score = self.vin_score, self.dealer_score
        zip_given, mc_given = self.zip_given, self.mc_given
        answered_zip, answered_mc = self.answered_zip, self.answered_mc
        k1, k2, k3 = _FIELDS[self.endpoint]
        by_key = dict(zip([key[p] for p in positions], positions, strict=True))
        index: dict[Any, list[int]] = {}
        if len(by_key) != len(positions):  # repeated keys are matched tolerantly
            index = {k: ps for k, ps in self._index(positions).items() if len(ps) > 1}
            by_key = {k: p for k, p in by_key.items() if k not in index}
        fast: dict[Any, int] | None = by_key
        ranked: list[int] = []
        ranks: list[float] = []
        for item in items:
            p = None
            if fast is not None:
                k = item.get(k1) if isinstance(item, dict) else None
                p = fast.pop(k, None)
                if p is not None and not (
                    (second[p] is None or second[p] == item.get(k2))
                    and (third[p] is None or third[p] == item.get(k3))
                ):
                    fast[k] = p
                    p = None
                if p is None and k not in index:  # not as sent: match the rest tolerantly
                    _merge(fast, index)
                    fast = None
            if p is None and (p := self._take(index, item)) is None:
                self.counters.unmatched_answers += 1
                continue
            vs, ds = item.get("vin_score"), item.get("dealer_ymm_score")
            if vs.__class__ is not float or ds.__class__ is not float:
                vs, ds = _score(vs), _score(ds)
                if vs is None or ds is None:
                    self._fail([p], "ranking_failed", "the API ranked this pair without scores")
                    continue
            if vin_score[p] is None:
                vin_score[p], dealer_score[p] = vs, ds
                # Kept as answered (strings are cleaned vectorised in _assemble).
                if zip_given[p] is None:
                    value = item.get("zip")
                    answered_zip[p] = value if value.__class__ is str else _text(value)
                if mc_given[p] is None:
                    value = item.get("mc_location_id")
                    answered_mc[p] = value if value.__class__ is str else _text(value)
            elif vin_score[p] != vs or dealer_score[p] != ds:
                self.counters.consistency_violations += 1
            rank = item.get("vin_rank")
            ranks.append(rank if rank.__class__ is int else _rank_value(rank))
            ranked.append(p)
        if any(a > b for a, b in itertools.pairwise(ranks)):
            # The API sorts by vin_rank; trust the rank and keep the answer's order for ties.
            order = sorted(range(len(ranked)), key=ranks.__getitem__)
            ranked = [ranked[i] for i in order]
        if fast is not None:
            _merge(fast, index)
        return ranked, index

    def _alias(self, p: int, ranked: list[int]) -> int | None:
        """Find a ranked position naming the rooftop ``p`` names, however differently."""
        if self.endpoint != "dealers":
            return None
        for q in ranked:
            if (
                self.key[q] == self.key[p]
                and _same(self.second[p], self.answered_zip[q])
                and _same(self.third[p], self.answered_mc[q])
            ):
                return q
        return None

    def seed(self, first: int, preranked: pl.DataFrame) -> None:
        """Record the scores of pre-ranked pairs (positions ``first``...), as if answered.

        A later answer that scores one of them differently counts as a consistency violation.
        """
        columns = ("vin_score", "dealer_ymm_score", "answered_mc_location_id")
        vin_score, dealer_score, answered_mc = (preranked.get_column(c).to_list() for c in columns)
        end = first + preranked.height
        self.vin_score[first:end] = vin_score
        self.dealer_score[first:end] = dealer_score
        self.answered_mc[first:end] = answered_mc

    async def rank_chunk(
        self, positions: list[int], *, head: str, whole_group: str | None = None
    ) -> list[int]:
        """Rank one chunk of the group whose single spec is ``head`` (JSON).

        422s are pruned and the rest of the chunk re-sent. Returns the ranked positions, best
        first. ``whole_group``: the chunk is its group's only request, whose items are these
        JSON fragments, joined; its answer may then be recorded by :meth:`_record_exact`.
        """
        path = _PATHS[self.endpoint][0]
        decode: Callable[[bytes], Any] = orjson.loads if whole_group is None else self.decode
        items = whole_group
        while positions:
            try:
                body, items = self._body(positions, head, items), None
                answer = await self.session.post_json(path, body, decode=decode)
            except UnprocessableError as exc:
                self.progress.update()
                positions = self._prune(positions, exc)
                if positions:
                    self.counters.resent_after_422 += 1
                    self.planned += 1
                    self.progress.set_total(self.planned)
                continue
            self.progress.update()
            return self._absorb(positions, answer)
        return []


class _GroupFailedError(Exception):
    """Internal: a group could not be ranked and the run must stop."""

    def __init__(self, error: MarketMatchError, group: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.group = group


def _ranker(  # noqa: PLR0917 (private, one call site)
    pairs: pl.DataFrame,
    grouped: _Groups,
    endpoint: Endpoint,
    session: Session,
    progress: Progress,
    planned: int,
) -> _ChunkRanker:
    n = pairs.height
    items = _FIELDS[endpoint]
    item_json: list[str | None] = [None] * n
    chunked = [
        p
        for g, items_json in enumerate(grouped.items)
        if items_json is None
        for p in (*grouped.members[g], *grouped.pre[g])
    ]
    if chunked:
        for p, fragment in zip(chunked, json_fragments(pairs[chunked], items), strict=True):
            item_json[p] = fragment
    key, second, third = (pairs.get_column(name).to_list() for name in items)
    unkeyed = [pairs.get_column(name).null_count() == n for name in items]
    if endpoint == "dealers":
        zip_given, mc_given = second, third
    else:
        zip_given, mc_given = (pairs.get_column(name).to_list() for name in DEALER_FIELDS[1:])
    none: list[Any] = [None] * n
    return _ChunkRanker(
        endpoint=endpoint,
        session=session,
        progress=progress,
        pairs=pairs,
        item_json=item_json,
        key=key,
        second=second,
        third=third,
        unkeyed=(unkeyed[0], unkeyed[1], unkeyed[2]),
        rows=pairs.get_column(ROW),
        decode=decoder(endpoint),
        zip_given=zip_given,
        mc_given=mc_given,
        exact=_ExactLog(
            keep_zip=pairs.get_column("zip").has_nulls(),
            keep_mc=pairs.get_column("mc_location_id").has_nulls(),
        ),
        vin_score=none.copy(),
        dealer_score=none.copy(),
        answered_zip=none.copy(),
        answered_mc=none.copy(),
        error_code=none.copy(),
        error_message=none.copy(),
        planned=planned,
    )


def _cleaned(values: pl.Series) -> pl.Series:
    """Answered strings trimmed, blank as null."""
    return values.str.strip_chars().replace("", None)


def _assemble(
    pairs: pl.DataFrame, ranker: _ChunkRanker, rankings: list[tuple[list[int], int]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build the result frames: per-position lists become columns, gathered in polars."""
    take = pl.Series(
        list(itertools.chain.from_iterable(order for order, _ in rankings)), dtype=pl.Int64
    )
    sizes = pl.DataFrame(
        [(len(order), exact_count) for order, exact_count in rankings],
        schema={"size": pl.Int64, "exact": pl.Int64},
        orient="row",
    )
    ranks = sizes.select(
        vin_rank=pl.int_ranges(1, pl.col("size") + 1, dtype=pl.UInt32),
        exact=pl.col("exact").cast(pl.UInt32),
    ).explode("vin_rank")
    log = ranker.exact
    logged = pl.Series(log.positions, dtype=pl.Int64)

    def at(
        values: list[Any], dtype: pl.DataType, log_values: list[Any], rows: pl.Series = take
    ) -> pl.Series:
        if values.count(None) == len(values):  # nothing recorded per position
            column = pl.repeat(None, len(values), dtype=dtype, eager=True)
        else:
            column = pl.Series(values, dtype=dtype)
        if log_values:
            column = column.scatter(logged, pl.Series(log_values, dtype=dtype))
        return column.gather(rows)

    ranked = pairs.select(*RANKED_SCHEMA.names()[:6], ROW)[take].with_columns(
        pl.col("zip").fill_null(_cleaned(at(ranker.answered_zip, pl.String(), log.answered_zip))),
        pl.col("mc_location_id").fill_null(
            _cleaned(at(ranker.answered_mc, pl.String(), log.answered_mc))
        ),
        vin_score=at(ranker.vin_score, pl.Float64(), log.vin_score),
        dealer_ymm_score=at(ranker.dealer_score, pl.Float64(), log.dealer_score),
        vin_rank=ranks.get_column("vin_rank"),
        rank_exact=ranks.select(pl.col("vin_rank") <= pl.col("exact")).to_series(),
    )
    codes = pl.Series(ranker.error_code, dtype=pl.String)
    failed_at = codes.is_not_null().arg_true()
    failed = pairs.select(*FAILED_SCHEMA.names()[:6], ROW)[failed_at].with_columns(
        vin_score=pl.lit(None, pl.Float64),
        dealer_ymm_score=pl.lit(None, pl.Float64),
        vin_rank=pl.lit(None, pl.UInt32),
        error_code=codes.gather(failed_at),
        error_message=at(ranker.error_message, pl.String(), [], rows=failed_at),
    )
    return (
        ranked.select(*RANKED_SCHEMA.names(), ROW),
        failed.select(*FAILED_SCHEMA.names(), ROW),
    )


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
        .with_columns(_json=json_fragment(pairs, _FIELDS[endpoint]))
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


@contextlib.contextmanager
def _long_lived() -> Iterator[None]:
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


async def _rank_group(
    ranker: _ChunkRanker,
    members: list[int],
    pre: list[int],
    *,
    head: str,
    items: str | None,
    chunk_size: int,
    exact_top_k: int,
) -> GroupRanking:
    """Rank one group: in one request when it fits one (*items* given), else in rounds."""
    if items is not None:
        order = await ranker.rank_chunk(members, head=head, whole_group=items)
        return GroupRanking(order=order, exact=len(order), requests_per_round=(1,))
    return await rank_group(
        members,
        rank_chunk=functools.partial(ranker.rank_chunk, head=head),
        chunk_size=chunk_size,
        exact_top_k=exact_top_k,
        preranked=[pre],
    )


async def rank_online(
    pairs: pl.DataFrame,
    *,
    endpoint: Endpoint,
    session: Session,
    chunk_size: int,
    exact_top_k: int,
    concurrency: int,
    on_request_failed: OnRequestFailed = "raise",
    progress: bool | None = None,
    planned_requests: int | None = None,
    preranked: pl.DataFrame | None = None,
) -> OnlineOutcome:
    """Rank normalised, valid, distinct pairs online, group by group.

    Parameters
    ----------
    pairs
        The six pair columns plus ``_row``; every row is one distinct pair.
    endpoint, chunk_size, exact_top_k
        As resolved by :func:`mm_pipeline._plan.resolve_sizes`.
    session
        An open session (its semaphore bounds requests in flight).
    concurrency
        Groups worked on at once (their chunk requests queue on the session).
    on_request_failed
        What a chunk that fails after retries does: ``"raise"`` or ``"fail"`` its group.
    progress
        Progress bar over requests (``None``: only in terminals and notebooks).
    planned_requests
        The plan's request count, for the progress bar's total.
    preranked
        Further pairs of the same groups already in an exact order per group (the batch
        route's ranks): the six pair columns as given, ``_row``, ``vin_rank``, ``vin_score``,
        ``dealer_ymm_score`` and ``answered_mc_location_id`` (the rooftop's id as resolved).
        Each group's pre-ranked pairs are one pre-ranked chunk of
        :func:`~mm_pipeline._online._rounds.rank_group`, merged with its pairs of ``pairs``; their
        requests are counted in ``Counters.merge_requests``. They come back in the outcome like
        the others (in ``failed`` when their group fails).

    Returns
    -------
    OnlineOutcome
        Every pair (and pre-ranked pair) exactly once in ``ranked`` or ``failed``.
    """
    pairs = pairs.select(*PAIR_COLUMNS, ROW)
    first_pre = pairs.height  # positions from here on are pre-ranked
    if preranked is not None and preranked.height:
        pairs = pl.concat([pairs, preranked.select(pairs.columns)])
    grouped = _groups(
        pairs, endpoint, first_pre=first_pre, preranked=preranked, chunk_size=chunk_size
    )
    groups, pre_groups = grouped.members, grouped.pre
    rankings: list[tuple[list[int], int]] = [([], 0)] * len(groups)
    label = "ranking dealers" if endpoint == "dealers" else "ranking vehicles"
    with (
        progress_bar(progress, total=planned_requests, desc=label) as bar,
        contextlib.ExitStack() as scope,
    ):
        ranker = _ranker(pairs, grouped, endpoint, session, bar, planned_requests or 0)
        scope.enter_context(_long_lived())  # until the result frames are built
        if preranked is not None and preranked.height:
            ranker.seed(first_pre, preranked)
        counters = ranker.counters
        queue: Iterator[tuple[int, list[int]]] = iter(enumerate(groups))

        async def worker() -> None:
            for number, members in queue:
                pre = pre_groups[number]
                try:
                    result = await _rank_group(
                        ranker,
                        members,
                        pre,
                        head=grouped.heads[number],
                        items=grouped.items[number],
                        chunk_size=chunk_size,
                        exact_top_k=exact_top_k,
                    )
                except MarketMatchError as exc:
                    if on_request_failed == "raise" or isinstance(exc, _ACCOUNT_ERRORS):
                        raise _GroupFailedError(exc, number) from None
                    ranker._fail(
                        members + pre,
                        "ranking_failed",
                        f"a request for this pair's group failed after retries: {exc}",
                        contradiction=False,
                    )
                    _log.warning("group %d failed after retries: %s", number, exc)
                    continue
                rankings[number] = (result.order, result.exact)
                if pre:
                    counters.merge_requests += result.requests
                else:
                    counters.rerank_rounds = max(counters.rerank_rounds, result.rounds - 1)
                    counters.rerank_requests += sum(result.requests_per_round[1:])
                counters.consistency_violations += result.violations
                counters.lost_candidates += result.lost
                counters.groups_done += 1
                counters.pairs_done += len(members) + len(pre)

        try:
            async with asyncio.TaskGroup() as tasks:
                for _ in range(max(1, min(concurrency, len(groups)))):
                    tasks.create_task(worker())
        except ExceptionGroup as group:
            stops = [exc for exc in group.exceptions if isinstance(exc, _GroupFailedError)]
            if not stops:  # not an API failure: a bug, surfaced as itself
                raise group.exceptions[0] from None
            number = stops[0].group
            error = stops[0].error
            error.add_note(
                f"mm_pipeline: ranking stopped because a request failed after retries; no "
                f"partial result is returned. The failing group has "
                f"{len(groups[number]) + len(pre_groups[number]):,} pairs; "
                f"{len(groups) - counters.groups_done:,} of {len(groups):,} groups "
                f"({pairs.height - counters.pairs_done:,} of {pairs.height:,} pairs) were not "
                f"completed. Pass on_request_failed='fail' to rank the other groups and get "
                f"these pairs in result.failed (error_code 'ranking_failed')."
            )
            raise error from None
        ranked, failed = _assemble(pairs, ranker, rankings)
    return OnlineOutcome(ranked=ranked, failed=failed, counters=counters)
