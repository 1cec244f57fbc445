"""One chunk request: encode, send, prune what a 422 names, re-ask an untrustworthy answer.

:class:`ChunkSender` ranks one chunk of a group (positions of the run's frame) through
``/dealers/rank`` or ``/vins/rank`` and records the answer (:func:`absorb`):

- 422: the items named in ``failed_vins`` / ``missing_dealers`` / ``multi_location_sources``
  go to ``failed`` (:func:`~mm_pipeline._online._refusals.refusals_of_422`) and the rest of
  the chunk is sent again. A 422 that names nothing in the chunk fails the whole chunk
  (``ranking_failed``, with the server's message).
- 200: ``ranked_matches`` are matched to positions (:mod:`~mm_pipeline._online._match`);
  ``failed_items`` go to ``failed`` with the code of
  :func:`~mm_pipeline._online._refusals.failed_item_code`; a sent pair the answer does not
  mention goes to ``failed`` as ``ranking_failed``. Nothing is dropped.
- An answer with a ranked item whose ``vin_rank`` cannot be trusted
  (:func:`~mm_pipeline._online._refusals.refused_ranks`) is asked once more; if the second
  answer has such items too, they go to ``failed`` as ``ranking_failed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import orjson
import polars as pl

from mm_pipeline._answers import TypedAnswer
from mm_pipeline._exceptions import TransportError, UnprocessableError
from mm_pipeline._frames import json_fragments
from mm_pipeline._online._match import (
    FIELDS,
    Keys,
    alias,
    match_ranked,
    record_echo,
    take,
)
from mm_pipeline._online._record import Record
from mm_pipeline._online._refusals import (
    MESSAGES,
    failed_item_code,
    refusals_of_422,
    refused_ranks,
)
from mm_pipeline._plan import Endpoint
from mm_pipeline._progress import Progress
from mm_pipeline._rows import row_name

if TYPE_CHECKING:
    from mm_pipeline._session import Session

__all__ = ["PATHS", "ChunkSender", "absorb"]

PATHS: dict[Endpoint, tuple[str, str, str]] = {
    # path, key of the single spec, key of the list
    "dealers": ("/v2/marketmatch/dealers/rank", "vin", "dealers"),
    "vins": ("/v2/marketmatch/vins/rank", "dealer", "vins"),
}


def absorb(
    keys: Keys, record: Record, positions: list[int], answer: Any, *, last_try: bool = True
) -> list[int] | None:
    """Record a 200 answer; return the ranked positions, best first.

    ``None`` (nothing recorded) when a ranked item's ``vin_rank`` cannot be trusted and this is
    not the ``last_try``: the chunk is to be asked again.
    """
    if isinstance(answer, TypedAnswer):
        echoed = record_echo(keys, record, positions, answer)
        if echoed is not None:
            return echoed
        answer = msgspec.to_builtins(answer)  # and read it tolerantly, below
    items = answer.get("ranked_matches") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise TransportError(
            "the response has no ranked_matches list",
            kind="InvalidResponse",
            method="POST",
            url=PATHS[keys.endpoint][0],
        )
    ranks = [item.get("vin_rank") if isinstance(item, dict) else None for item in items]
    refused = refused_ranks(ranks, len(positions))
    if refused:
        record.counters.refused_answers += len(refused)
        if not last_try:
            return None
    ranked, index = match_ranked(keys, record, positions, items, refused)
    for item in answer.get("failed_items") or []:
        p = take(keys, index, item)
        if p is None:
            record.counters.unmatched_answers += 1
            continue
        code = failed_item_code(keys.endpoint, item, none_ranked=not items)
        message = item.get("error_message") if isinstance(item, dict) else None
        if not isinstance(message, str) or not message.strip():
            message = f"{MESSAGES.get(code, 'the API could not rank this pair')} (failed_items)"
        record.fail([p], code, message)
    for p in (p for candidates in index.values() for p in candidates):
        twin = alias(keys, record, p, ranked)
        if twin is None:
            record.fail([p], "ranking_failed", "the API's answer did not mention this pair")
        else:
            record.fail(
                [p],
                "duplicate_conflict",
                f"names the same rooftop as input {row_name(keys.rows[twin])} (as the API "
                "resolved it), which the API ranks once per request; see that row's rank",
                contradiction=False,
            )
    return ranked


@dataclass(kw_only=True)
class ChunkSender:
    """Sends the chunks of a run: its session, keys, record and progress bar."""

    session: Session
    progress: Progress
    pairs: pl.DataFrame
    keys: Keys
    record: Record
    decode: Callable[[bytes], Any]
    # request fragments of groups not sent whole (a group sent whole has its items joined)
    item_json: list[str | None]
    planned: int = 0

    def _body(self, positions: list[int], head: str, items: str | None = None) -> bytes:
        """Encode the request for *positions* (*items*: their JSON fragments joined, if known)."""
        _path, single, many = PATHS[self.keys.endpoint]
        if items is None:
            known = [self.item_json[p] for p in positions]
            fragments = [f for f in known if f is not None]
            if len(fragments) < len(known):  # a group sent whole, sent again without some
                fragments = json_fragments(self.pairs[positions], FIELDS[self.keys.endpoint])
            items = ",".join(fragments)
        return f'{{"{single}":{head},"{many}":[{items}]}}'.encode()

    def _prune(self, positions: list[int], exc: UnprocessableError) -> list[int]:
        """Fail the items a 422 names; return the rest (all of them failed if none named)."""
        detail = f"422: {exc.message}"
        named = refusals_of_422(
            self.keys,
            positions,
            failed_vins=exc.failed_vins,
            missing_dealers=exc.missing_dealers,
            multi_location_sources=exc.multi_location_sources,
        )
        if not named:
            self.record.fail(
                positions,
                "ranking_failed",
                f"the API refused the request without naming the failing items ({detail})",
            )
            return []
        for p, code in named.items():
            self.record.fail([p], code, f"{MESSAGES[code]} ({detail})")
        return [p for p in positions if p not in named]

    def _one_more(self) -> None:
        self.planned += 1
        self.progress.set_total(self.planned)

    async def rank(
        self, positions: list[int], *, head: str, whole_group: str | None = None
    ) -> list[int]:
        """Rank one chunk of the group whose single spec is ``head`` (JSON).

        Returns the ranked positions, best first. ``whole_group``: the chunk is its group's
        only request, whose items are these JSON fragments, joined; its answer may then be
        recorded by :func:`~mm_pipeline._online._match.record_echo`.
        """
        path = PATHS[self.keys.endpoint][0]
        decode: Callable[[bytes], Any] = orjson.loads if whole_group is None else self.decode
        items = whole_group
        asked_again = False
        counters = self.record.counters
        while positions:
            try:
                body, items = self._body(positions, head, items), None
                answer = await self.session.post_json(path, body, decode=decode)
            except UnprocessableError as exc:
                self.progress.update()
                positions = self._prune(positions, exc)
                if positions:
                    counters.resent_after_422 += 1
                    self._one_more()
                continue
            self.progress.update()
            ranked = absorb(self.keys, self.record, positions, answer, last_try=asked_again)
            if ranked is not None:
                return ranked
            asked_again = True
            counters.reasks += 1
            self._one_more()
        return []
