"""Per-position results of an online run, and the result frames built from them once.

Pairs are addressed by their position in the run's frame; everything per pair lives in plain
Python lists indexed by position (scores, answered ids, errors), and the result frames are
built once at the end (:meth:`Record.frames`), so the per-pair overhead is a few list and dict
operations. Answers of groups sent whole are appended to an :class:`EchoLog` instead (the
positions are answered nowhere else) and scattered into the columns at the end.

:meth:`Record.fail` is the one place where a reason -- our words or the server's text -- becomes
a failed pair's ``error_message``; :meth:`Record.frames` scrubs the API key from every code,
message and answered text on its way into the frames.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from mm_pipeline._frames import FAILED_SCHEMA, RANKED_SCHEMA, ROW
from mm_pipeline._redact import redact_series

__all__ = ["Counters", "EchoLog", "OnlineOutcome", "Record"]


@dataclass(kw_only=True)
class Counters:
    """What an online run counted (see :class:`~mm_pipeline.RankStats` for the meanings)."""

    rerank_rounds: int = 0
    rerank_requests: int = 0
    merge_requests: int = 0
    consistency_violations: int = 0
    lost_candidates: int = 0
    resent_after_422: int = 0
    refused_answers: int = 0
    reasks: int = 0
    unmatched_answers: int = 0
    groups_done: int = 0
    pairs_done: int = 0

    def add(self, other: Counters) -> None:
        """Add ``other``'s counts to these (runs over several parts, such as VIN buckets)."""
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)

    def stats(self) -> dict[str, int]:
        """Return the counts :class:`~mm_pipeline.RankStats` reports (progress ones left out).

        Examples
        --------
        >>> Counters(merge_requests=2, groups_done=5).stats()["merge_requests"]
        2
        """
        progress = {"groups_done", "pairs_done"}
        return {name: value for name, value in vars(self).items() if name not in progress}


@dataclass(kw_only=True)
class OnlineOutcome:
    """Ranked and failed pairs of an online run (both with ``_row``), and its counters."""

    ranked: pl.DataFrame
    failed: pl.DataFrame
    counters: Counters = field(default_factory=Counters)


@dataclass
class EchoLog:
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
class Record:
    """Results per pair position, shared by every request of a run."""

    zip_given: list[str | None]
    mc_given: list[str | None]
    vin_score: list[float | None]
    dealer_score: list[float | None]
    answered_zip: list[str | None]
    answered_mc: list[str | None]
    error_code: list[str | None]
    error_message: list[str | None]
    echo: EchoLog
    counters: Counters = field(default_factory=Counters)

    @classmethod
    def empty(cls, pairs: pl.DataFrame) -> Record:
        """Start the record of ``pairs`` (the six pair columns): nothing answered yet."""
        n = pairs.height
        none: list[Any] = [None] * n
        return cls(
            zip_given=pairs.get_column("zip").to_list(),
            mc_given=pairs.get_column("mc_location_id").to_list(),
            vin_score=none.copy(),
            dealer_score=none.copy(),
            answered_zip=none.copy(),
            answered_mc=none.copy(),
            error_code=none.copy(),
            error_message=none.copy(),
            echo=EchoLog(
                keep_zip=pairs.get_column("zip").has_nulls(),
                keep_mc=pairs.get_column("mc_location_id").has_nulls(),
            ),
        )

    def fail(
        self, positions: list[int], code: str, message: str, *, contradiction: bool = True
    ) -> None:
        """Send ``positions`` to ``failed`` (the first reason a pair gets is kept).

        A pair ranked in an earlier round that fails now is a contradiction of the API's
        (counted unless ``contradiction`` is false: a whole group failing is not one).
        """
        for p in positions:
            if self.error_code[p] is None:
                self.error_code[p] = code
                self.error_message[p] = message
            if self.vin_score[p] is not None:
                self.counters.consistency_violations += int(contradiction)
                self.vin_score[p] = self.dealer_score[p] = None

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

    def frames(
        self, pairs: pl.DataFrame, rankings: list[tuple[list[int], int]]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Build the result frames: per-position lists become columns, gathered in polars.

        ``rankings``: per group, its positions best first and how many leading ranks are exact.
        """
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
        log = self.echo
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
            pl.col("zip").fill_null(_cleaned(at(self.answered_zip, pl.String(), log.answered_zip))),
            pl.col("mc_location_id").fill_null(
                _cleaned(at(self.answered_mc, pl.String(), log.answered_mc))
            ),
            vin_score=at(self.vin_score, pl.Float64(), log.vin_score),
            dealer_ymm_score=at(self.dealer_score, pl.Float64(), log.dealer_score),
            vin_rank=ranks.get_column("vin_rank"),
            rank_exact=ranks.select(pl.col("vin_rank") <= pl.col("exact")).to_series(),
        )
        codes = pl.Series(self.error_code, dtype=pl.String)
        failed_at = codes.is_not_null().arg_true()
        failed = pairs.select(*FAILED_SCHEMA.names()[:6], ROW)[failed_at].with_columns(
            vin_score=pl.lit(None, pl.Float64),
            dealer_ymm_score=pl.lit(None, pl.Float64),
            vin_rank=pl.lit(None, pl.UInt32),
            # Codes and messages may be the server's (failed_items): scrubbed of the API key.
            error_code=redact_series(codes.gather(failed_at), replacement="redacted"),
            error_message=redact_series(at(self.error_message, pl.String(), [], rows=failed_at)),
        )
        return (
            ranked.select(*RANKED_SCHEMA.names(), ROW),
            failed.select(*FAILED_SCHEMA.names(), ROW),
        )


def _cleaned(values: pl.Series) -> pl.Series:
    """Answered strings trimmed, blank as null, without the API key (server text)."""
    return redact_series(values.str.strip_chars().replace("", None))
