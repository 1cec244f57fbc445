"""Answers to positions: which input pair each answered item stands for, and its record.

Functions over the run's match keys (:class:`Keys`, read-only) and its :class:`Record`:

- :func:`index_of` / :func:`take`: the tolerant matcher. ``/dealers/rank`` items match by
  ``source`` plus ``zip`` / ``mc_location_id`` where both sides have them, ``/vins/rank``
  items by ``vin`` plus ``price`` / ``miles`` where both sides have them; extra fields are
  ignored, a missing side matches, text is compared trimmed and case-folded.
- :func:`record_echo`: the hot path for groups sent whole, C-level passes over a typed answer
  that echoes its chunk exactly; any other answer is left to :func:`match_ranked`, which gives
  the same result for these.
- :func:`match_ranked`: the per-item loop (fast dict pop while items come back as sent, the
  tolerant matcher after), which records scores and refuses items without scores or with an
  untrustworthy ``vin_rank``.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from mm_pipeline._answers import TypedAnswer
from mm_pipeline._frames import DEALER_FIELDS, ROW, VIN_FIELDS
from mm_pipeline._online._record import Record
from mm_pipeline._plan import Endpoint

__all__ = ["FIELDS", "Keys", "alias", "index_of", "match_ranked", "record_echo", "take", "text"]

FIELDS: dict[Endpoint, tuple[str, str, str]] = {"dealers": DEALER_FIELDS, "vins": VIN_FIELDS}
#: Readers of a typed answer's items: (key, second, third) per endpoint, scores, rank.
_READ = {
    endpoint: tuple(operator.attrgetter(name) for name in fields)
    for endpoint, fields in FIELDS.items()
}
_VIN_SCORE = operator.attrgetter("vin_score")
_DEALER_SCORE = operator.attrgetter("dealer_ymm_score")
_RANK = operator.attrgetter("vin_rank")
_ZIP = operator.attrgetter("zip")
_MC_LOCATION_ID = operator.attrgetter("mc_location_id")


@dataclass(frozen=True, kw_only=True)
class Keys:
    """Match keys per position (dealers: source, zip, mc_location_id; vins: vin, price, miles)."""

    endpoint: Endpoint
    key: list[Any]
    second: list[Any]
    third: list[Any]
    unkeyed: tuple[bool, bool, bool]  # the key column is null throughout (nothing to match)
    rows: pl.Series  # input row numbers, for messages

    @classmethod
    def of(cls, pairs: pl.DataFrame, endpoint: Endpoint) -> Keys:
        """Keys of ``pairs`` (the six pair columns; ``_row`` if present) for ``endpoint``."""
        fields = FIELDS[endpoint]
        key, second, third = (pairs.get_column(name).to_list() for name in fields)
        unkeyed = [pairs.get_column(name).null_count() == pairs.height for name in fields]
        rows = pairs.get_column(ROW) if ROW in pairs.columns else pl.Series(ROW, [], pl.Int64)
        return cls(
            endpoint=endpoint,
            key=key,
            second=second,
            third=third,
            unkeyed=(unkeyed[0], unkeyed[1], unkeyed[2]),
            rows=rows,
        )


def text(value: Any) -> str | None:
    """Answered text, trimmed (None when blank or missing)."""
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


def index_of(keys: Keys, positions: list[int]) -> dict[Any, list[int]]:
    """Map match keys to the chunk's positions (several when a key repeats)."""
    index: dict[Any, list[int]] = {}
    for p in positions:
        index.setdefault(keys.key[p], []).append(p)
    return index


def take(keys: Keys, index: dict[Any, list[int]], item: Any) -> int | None:
    """Pop the first request position an answered item (dict) can stand for, tolerantly."""
    if not isinstance(item, dict):
        return None
    if keys.endpoint == "dealers":
        key = text(item.get("source"))
        key = key.lower() if key else key
        second, third = text(item.get("zip")), text(item.get("mc_location_id"))
    else:
        key = text(item.get("vin"))
        key = key.upper() if key else key
        second, third = item.get("price"), item.get("miles")
    candidates = index.get(key)
    if not candidates:
        return None
    for i, p in enumerate(candidates):
        if _same(keys.second[p], second) and _same(keys.third[p], third):
            del candidates[i]
            return p
    return None


def alias(keys: Keys, record: Record, p: int, ranked: list[int]) -> int | None:
    """Find a ranked position naming the rooftop ``p`` names, however differently."""
    if keys.endpoint != "dealers":
        return None
    for q in ranked:
        if (
            keys.key[q] == keys.key[p]
            and _same(keys.second[p], record.answered_zip[q])
            and _same(keys.third[p], record.answered_mc[q])
        ):
            return q
    return None


def record_echo(
    keys: Keys, record: Record, positions: list[int], answer: TypedAnswer
) -> list[int] | None:
    """Record a typed answer that echoes its chunk exactly; ``None`` for any other answer.

    The hot path of the library, for groups that fit one request (the positions are answered
    nowhere else): C-level passes over the items instead of a Python loop per pair. It takes
    the answers the API gives almost always -- every sent item ranked once and echoed as sent
    (match keys unique in the chunk, or with the ZIP / price where a key repeats), scores
    present, ``vin_rank`` exactly 1..n in order, no ``failed_items`` -- and leaves any other
    answer, untouched, to the tolerant path.
    """
    items: list[Any] = answer.ranked_matches
    if answer.failed_items or len(items) != len(positions):
        return None
    key, second, third = _READ[keys.endpoint]
    given: list[Any] = list(map(keys.key.__getitem__, positions))
    answered: Iterator[Any] = map(key, items)
    by_key = dict(zip(given, positions, strict=True))
    if len(by_key) != len(positions):  # a key repeats (one source, several rooftops)
        seconds_given = list(map(keys.second.__getitem__, positions))
        by_key = dict(zip(zip(given, seconds_given, strict=True), positions, strict=True))
        if None in seconds_given or len(by_key) != len(positions):
            return None
        answered = zip(answered, map(second, items), strict=True)
    ranked: list[Any] = list(map(by_key.get, answered))
    if None in ranked or len(set(ranked)) != len(ranked):
        return None
    # Present and typed (the typed decoding saw to it); ranks exactly 1..n in order.
    if list(map(_RANK, items)) != list(range(1, len(items) + 1)):
        return None
    seconds, thirds = list(map(second, items)), list(map(third, items))
    if not (
        (keys.unkeyed[1] or _echoed(list(map(keys.second.__getitem__, ranked)), seconds))
        and (keys.unkeyed[2] or _echoed(list(map(keys.third.__getitem__, ranked)), thirds))
    ):
        return None
    log = record.echo
    log.positions += ranked
    log.vin_score += map(_VIN_SCORE, items)
    log.dealer_score += map(_DEALER_SCORE, items)
    dealers = keys.endpoint == "dealers"
    if log.keep_zip:
        log.answered_zip += seconds if dealers else map(_ZIP, items)
    if log.keep_mc:
        log.answered_mc += thirds if dealers else map(_MC_LOCATION_ID, items)
    return ranked


def match_ranked(  # noqa: PLR0912, PLR0915 (the per-pair hot loop is kept in one frame)
    keys: Keys,
    record: Record,
    positions: list[int],
    items: list[Any],
    refused: set[int] | frozenset[int] = frozenset(),
) -> tuple[list[int], dict[Any, list[int]]]:
    """Match ``ranked_matches`` to positions and record their scores.

    An item whose key is unique in the chunk and echoed as sent is matched with one dict pop
    and two comparisons; a key that repeats in the chunk (several rooftops of one source) goes
    to the tolerant :func:`take`, and so does everything after an item that is not echoed as
    sent. Items at the indices ``refused`` (an untrustworthy ``vin_rank``) and items without
    scores go to ``failed`` as ``ranking_failed``. Returns the ranked positions best first
    (by ``vin_rank``; the answer's order for ties), and the index of the positions not matched.
    """
    key, second, third = keys.key, keys.second, keys.third
    vin_score, dealer_score = record.vin_score, record.dealer_score
    zip_given, mc_given = record.zip_given, record.mc_given
    answered_zip, answered_mc = record.answered_zip, record.answered_mc
    k1, k2, k3 = FIELDS[keys.endpoint]
    by_key = dict(zip([key[p] for p in positions], positions, strict=True))
    index: dict[Any, list[int]] = {}
    if len(by_key) != len(positions):  # repeated keys are matched tolerantly
        index = {k: ps for k, ps in index_of(keys, positions).items() if len(ps) > 1}
        by_key = {k: p for k, p in by_key.items() if k not in index}
    fast: dict[Any, int] | None = by_key
    ranked: list[int] = []
    ranks: list[float] = []
    for number, item in enumerate(items):
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
        if p is None and (p := take(keys, index, item)) is None:
            record.counters.unmatched_answers += 1
            continue
        if refused and number in refused:
            record.fail(
                [p],
                "ranking_failed",
                f"the API gave this pair no valid rank (vin_rank={item.get('vin_rank')!r:.40})",
            )
            continue
        vs, ds = item.get("vin_score"), item.get("dealer_ymm_score")
        if vs.__class__ is not float or ds.__class__ is not float:
            vs, ds = _score(vs), _score(ds)
            if vs is None or ds is None:
                record.fail([p], "ranking_failed", "the API ranked this pair without scores")
                continue
        if vin_score[p] is None:
            vin_score[p], dealer_score[p] = vs, ds
            # Kept as answered (strings are cleaned vectorised when the frames are built).
            if zip_given[p] is None:
                value = item.get("zip")
                answered_zip[p] = value if value.__class__ is str else text(value)
            if mc_given[p] is None:
                value = item.get("mc_location_id")
                answered_mc[p] = value if value.__class__ is str else text(value)
        elif vin_score[p] != vs or dealer_score[p] != ds:
            record.counters.consistency_violations += 1
        ranks.append(item["vin_rank"])
        ranked.append(p)
    if any(a > b for a, b in itertools.pairwise(ranks)):
        # The API sorts by vin_rank; trust the rank and keep the answer's order for ties.
        order = sorted(range(len(ranked)), key=ranks.__getitem__)
        ranked = [ranked[i] for i in order]
    if fast is not None:
        _merge(fast, index)
    return ranked, index
