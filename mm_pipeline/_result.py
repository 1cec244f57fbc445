"""What a ranking call returns: :class:`RankResult` (frames + :class:`RankStats`)."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Generic

import polars as pl
from typing_extensions import TypeVar

__all__ = ["RankResult", "RankStats", "summary_html"]

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame, default=pl.DataFrame)
"""``RankResult``'s frames: in memory, or (with ``output=``) lazy scans of Parquet files."""


@dataclass(frozen=True, kw_only=True)
class RankStats:
    """Counters of one ranking call.

    Attributes
    ----------
    endpoint
        ``"dealers"`` or ``"vins"``.
    mode
        ``"online"``, ``"batch"``, or ``"online+batch"`` when both routes were used.
    rows, invalid_rows, duplicates_removed, conflicts
        Input rows; rows that failed validation; exact duplicate pairs sent once; rows that
        conflict with another for the same VIN and dealer (``duplicate_conflict``).
    pairs, groups
        Distinct valid pairs sent, and the rankings (groups) they form.
    ranked, failed
        Rows of ``RankResult.ranked`` and ``RankResult.failed``.
    requests, retries, rate_limited
        HTTP attempts (retries included), retried attempts, and 429 answers.
    cached_answers
        Ranking requests answered from the answer cache (``cache_dir``): none of them sent.
    rerank_rounds, rerank_requests
        Re-ranking rounds of the deepest group (0 when every group fitted one request) and the
        requests they took in total.
    merge_requests
        Online requests that merged a vehicle's dealers without a ``zip`` into its batch
        ranking (batch route; about one per such vehicle).
    resent_after_422
        Chunks sent again after a 422 named some of their items.
    consistency_violations
        Contradictions seen in the API's answers (a pair scored differently in two requests,
        a chunk's relative order not holding in a later round, a ranked pair failing later).
    lost_candidates
        Re-ranking candidates that a later request failed (the API contradicting an earlier
        answer); each made the answers it came from give their next item as a candidate, so
        the exact ranks stay exact (at the cost of an extra request now and then).
    refused_answers, reasks
        Ranked answer items whose ``vin_rank`` could not be trusted (missing, not a positive
        integer within the request, or shared with another item), and the chunks asked again
        because of them (once each; items refused again go to ``failed``, ``ranking_failed``).
    unmatched_answers
        Answer items that matched no pair of their request (ignored).
    chunk_size, exact_top_k
        The sizes used.
    elapsed
        Seconds for the whole call.
    batch_job_ids
        Batch jobs used (``mode`` includes ``"batch"``).
    """

    endpoint: str
    mode: str
    rows: int = 0
    invalid_rows: int = 0
    duplicates_removed: int = 0
    conflicts: int = 0
    pairs: int = 0
    groups: int = 0
    ranked: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    cached_answers: int = 0
    rerank_rounds: int = 0
    rerank_requests: int = 0
    merge_requests: int = 0
    resent_after_422: int = 0
    consistency_violations: int = 0
    lost_candidates: int = 0
    refused_answers: int = 0
    reasks: int = 0
    unmatched_answers: int = 0
    chunk_size: int = 0
    exact_top_k: int = 0
    elapsed: float = 0.0
    batch_job_ids: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        """Return the counters as a plain dict (e.g. for Dagster metadata or logging)."""
        return asdict(self)


def summary_html(title: str, lines: list[tuple[str, str]], preview: pl.DataFrame, what: str) -> str:
    """Render a result's summary lines as an HTML table, with the first 5 rows of *preview*."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
        f"<td style='text-align:left'>{html.escape(text)}</td></tr>"
        for name, text in lines
    )
    return (
        f"<div><strong>{html.escape(title)}</strong><table>{rows}</table>"
        f"<details><summary>{what} (first 5 rows)</summary>{preview.head(5)._repr_html_()}"
        "</details></div>"
    )


def _failure_summary(failed: pl.DataFrame | pl.LazyFrame) -> str:
    counts = (
        failed.lazy()
        .group_by("error_code")
        .len()
        .sort(["len", "error_code"], descending=[True, False])
        .collect()
    )
    if counts.is_empty():
        return "none"
    return ", ".join(f"{code} {count:,}" for code, count in counts.iter_rows())


@dataclass(frozen=True, kw_only=True)
class RankResult(Generic[FrameT]):
    """The outcome of a ranking call.

    Every distinct valid input pair is in exactly one of ``ranked`` and ``failed``; with
    ``on_invalid="fail"`` so is every invalid input row.

    With ``rank_dealers(..., output=PATH)`` the frames are LazyFrames scanning
    ``PATH/ranked.parquet`` and ``PATH/failed.parquet`` (``output`` says where; the repr says
    so): ranked within each VIN bucket as above, buckets one after another.

    Attributes
    ----------
    ranked
        Ranked pairs, schema :class:`mm_pipeline.schemas.RankedMatch`, sorted by group (in
        order of first appearance in the input), then ``vin_rank``.
    failed
        Pairs not ranked, schema :class:`mm_pipeline.schemas.FailedMatch`, in input order.
    stats
        :class:`RankStats`.
    output
        The directory the frames scan (``None``: they are in memory).
    """

    ranked: FrameT
    failed: FrameT
    stats: RankStats
    output: Path | None = None

    def _lines(self) -> list[tuple[str, str]]:
        s = self.stats
        exact = self.ranked.lazy().select(pl.col("rank_exact").sum()).collect().item()
        lines = [
            ("ranked", f"{s.ranked:,} pairs in {s.groups:,} groups ({exact:,} ranks exact)"),
            ("failed", f"{s.failed:,} pairs ({_failure_summary(self.failed)})"),
            (
                "input",
                f"{s.rows:,} rows: {s.invalid_rows:,} invalid, {s.duplicates_removed:,} "
                f"duplicates removed, {s.conflicts:,} conflicts",
            ),
            (
                "requests",
                f"{s.requests:,} ({s.retries:,} retries, {s.rate_limited:,} rate-limited, "
                f"{s.resent_after_422:,} re-sent after 422"
                + (f", {s.cached_answers:,} answers from the cache" if s.cached_answers else "")
                + f"); re-ranking: {s.rerank_rounds} "
                f"round(s), {s.rerank_requests:,} requests"
                + (f"; batch merge: {s.merge_requests:,} requests" if s.merge_requests else ""),
            ),
            (
                "checks",
                f"{s.consistency_violations:,} consistency violations, "
                f"{s.unmatched_answers:,} unmatched answers"
                + (
                    f", {s.refused_answers:,} ranks refused ({s.reasks:,} chunks re-asked)"
                    if s.refused_answers
                    else ""
                )
                + (f", {s.lost_candidates:,} candidates lost" if s.lost_candidates else ""),
            ),
            ("elapsed", f"{s.elapsed:.2f} s"),
        ]
        if self.output is not None:
            lines.append(
                ("output", f"ranked/failed are LazyFrames scanning Parquet under {self.output}")
            )
        return lines

    def __repr__(self) -> str:
        s = self.stats
        head = (
            f"RankResult(endpoint={s.endpoint!r}, mode={s.mode!r}, chunk_size={s.chunk_size}, "
            f"exact_top_k={s.exact_top_k})"
        )
        if s.batch_job_ids:
            head += f" jobs={list(s.batch_job_ids)}"
        return "\n".join([head, *(f"  {name + ':':<9} {text}" for name, text in self._lines())])

    def _repr_html_(self) -> str:
        s = self.stats
        title = f"RankResult · {s.endpoint} · {s.mode}"
        return summary_html(title, self._lines(), self.ranked.lazy().head(5).collect(), "ranked")
