"""Rank pairs bigger than memory through batch jobs: VIN buckets on disk, Parquet out.

The files it works with are :mod:`._parquet`'s; the jobs run as :mod:`._route` runs them.

``rank_dealers(pairs, mode="batch", output=PATH)`` comes here. The input (a frame, or a lazy
frame over files larger than memory) is never collected whole, and neither is the result:

1. **spill** -- one streaming pass writes the input to Parquet in VIN buckets (a hash of the
   trimmed, upper-cased VIN; about :data:`BUCKET_ROWS` rows each), with each row's input
   number. Every row of a VIN lands in one bucket, so do its exact duplicates and its
   conflicting rows, and everything the in-memory route does per VIN can be done per bucket;
2. **prepare** -- each bucket is read (bounded) and prepared as the in-memory route prepares a
   frame (normalised, validated, exact duplicates dropped, ``duplicate_conflict`` rows failed);
   its distinct valid pairs with a ``zip`` are kept in a ``sent`` Parquet file, those without
   one (dealers known by ``mc_location_id`` alone: not in a batch file) in an ``online`` file,
   the rest go to ``failed``;
3. **jobs** -- the batch files stream from the ``sent`` files (:func:`write_batch_files` over a
   lazy frame, split by VIN under the cap) and run one after another; each verified (cached)
   download is parsed straight to Parquet with each row's bucket (:func:`write_result_parquet`),
   each part sorted by bucket in small row groups, so that a bucket reads little but its own;
4. **map back** -- bucket by bucket, the sent pairs meet their result rows (the in-memory
   route's map-back); a bucket's ``online`` pairs are then ranked online with the batch order
   of their vehicles as one pre-ranked chunk (the in-memory route's hand-over, through the
   router's ``complete_online``), and everything is appended to ``ranked.parquet`` and
   ``failed.parquet``.

Passes over the input: one, the spill (plus a row count, read from the footers of a Parquet
scan). Exact duplicates and invalid rows need no second pass: each is found within its bucket.
Memory holds about one bucket (and one batch of rows while streaming), whatever the input's
size. Reruns are resumable as in the in-memory route: the same input gives the same buckets,
hence the same files and references, so a rerun adopts the jobs of a killed run and reuses
their verified downloads from the cache.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import polars as pl

from mm_pipeline._batch._files import BatchFile, write_batch_files
from mm_pipeline._batch._handover import split_preranked
from mm_pipeline._batch._parquet import (
    BUCKET,
    BUCKET_ROWS,
    INPUT_ROW,
    Buckets,
    ParquetAppender,
    bucket_expr,
    parquet_rows,
    spill_by_vin,
    write_result_parquet,
)
from mm_pipeline._batch._route import (
    BatchCounts,
    BatchOptions,
    JobRun,
    _job_failed,
    _map_back,
    _split_conflicts,
    batch_session,
    run_jobs,
)
from mm_pipeline._batch._session import BatchSession
from mm_pipeline._exceptions import InvalidInputError
from mm_pipeline._frames import (
    FAILED_SCHEMA,
    FAILED_WITH_ROW,
    RANKED_SCHEMA,
    RANKED_WITH_ROW,
    ROW,
)
from mm_pipeline._normalize import OnInvalid, prepare
from mm_pipeline._plan import GROUP_KEYS
from mm_pipeline._redact import get_logger
from mm_pipeline._rows import row_name_expr

if TYPE_CHECKING:
    from mm_pipeline._session import Session

__all__ = ["CompleteOnline", "LargeCounts", "LargeOutcome", "prepare_buckets", "rank_to_parquet"]

log = get_logger("mm_pipeline.batch")

_SHOWN: Final = 5
_RESULT_COUNTS: Final = (
    "missing_from_result",
    "unexpected_result_rows",
    "duplicate_result_rows",
    "location_mismatches",
    "locations_unconfirmed",
)

CompleteOnline = Callable[
    [pl.DataFrame, pl.DataFrame], Awaitable[tuple[pl.DataFrame, pl.DataFrame]]
]
"""Rank a bucket's pairs without a zip online, given the pre-ranked (batch) pairs of their
vehicles; return the ranked and the failed pairs, both with ``_row`` (the router's, passed in:
the batch route does not import the online one)."""


@dataclass(kw_only=True)
class LargeCounts:
    """What preparing the buckets counted (the ``RankStats`` input figures)."""

    rows: int = 0
    invalid_rows: int = 0
    duplicates_removed: int = 0
    conflicts: int = 0
    pairs: int = 0
    groups: int = 0
    sent: dict[int, Path] = field(default_factory=dict)
    """The ``sent`` Parquet file of each bucket that has pairs for batch jobs, by bucket."""
    online: dict[int, Path] = field(default_factory=dict)
    """The ``online`` Parquet file of each bucket that has pairs without a zip, by bucket."""
    sent_rows: int = 0
    sent_vins: int = 0
    online_rows: int = 0


def _global_rows(frame: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """Replace the bucket-local ``_row`` (and the row name leading messages) by input numbers.

    Messages name the row as :func:`~mm_pipeline._rows.row_name` does (``row N``, or
    ``line N`` inside ``numbered_as_lines``).
    """
    global_row = rows.gather(frame.get_column(ROW)).alias(ROW)
    if "error_message" not in frame.columns:
        return frame.with_columns(global_row)
    return frame.with_columns(global_row).with_columns(
        pl.format(
            "{}: {}",
            row_name_expr(ROW),
            pl.col("error_message").str.replace(r"^(?:row|line) \d+: ", ""),
        ).alias("error_message"),
    )


def prepare_buckets(
    buckets: Buckets,
    work: Path,
    failed: ParquetAppender,
    *,
    split_conflicts: Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]],
) -> LargeCounts:
    """Prepare each bucket in memory; keep its pairs to send under ``work``, fail the rest.

    Invalid rows are failed (``invalid_input``) whatever ``on_invalid`` says; the caller
    raises afterwards when it must. Pairs without a ``zip`` cannot go in a batch file: they
    are kept in the bucket's ``online`` file.
    """
    counts = LargeCounts(rows=buckets.rows)
    work.mkdir(parents=True, exist_ok=True)
    for index in range(buckets.count):
        frame = pl.read_parquet(buckets.path(index))
        if not frame.height:  # no VIN hashed here
            continue
        rows = frame.get_column(INPUT_ROW)
        prepared = prepare(frame.drop(INPUT_ROW), endpoint="dealers", on_invalid="fail")
        del frame
        counts.invalid_rows += prepared.invalid_rows
        counts.duplicates_removed += prepared.duplicates_removed
        failed.write(_global_rows(prepared.failed, rows))
        pairs = _global_rows(prepared.pairs, rows)
        counts.groups += pairs.select(pl.struct(GROUP_KEYS["dealers"]).n_unique()).item()
        no_zip = pairs.get_column("zip").is_null()
        if no_zip.any():
            online = pairs.filter(no_zip)
            counts.online[index] = work / f"online-{index:05d}.parquet"
            online.write_parquet(counts.online[index], compression="lz4")
            counts.online_rows += online.height
            pairs = pairs.filter(~no_zip)
        pairs, conflicts = split_conflicts(pairs)
        counts.conflicts += conflicts.height
        failed.write(conflicts)
        counts.pairs += prepared.pairs.height
        counts.sent_rows += pairs.height
        counts.sent_vins += pairs.get_column("vin").n_unique()
        if pairs.height:
            counts.sent[index] = work / f"sent-{index:05d}.parquet"
            pairs.write_parquet(counts.sent[index], compression="lz4")
    return counts


@dataclass(frozen=True, kw_only=True)
class LargeOutcome:
    """What :func:`rank_to_parquet` wrote and counted."""

    ranked: Path
    failed: Path
    counts: LargeCounts
    job_ids: tuple[str, ...]
    batch: BatchCounts


async def _run_jobs(
    files: list[BatchFile],
    *,
    ops: BatchSession,
    options: BatchOptions,
    progress: bool | None,
    results: Path,
    buckets: int,
    batch: BatchCounts,
) -> tuple[list[str], list[Path], list[JobRun]]:
    """Run each file as a job; parse each verified result to Parquet, sorted by bucket."""
    job_ids: list[str] = []
    parsed: list[Path] = []
    failures: list[JobRun] = []
    async for run in run_jobs(files, ops=ops, options=options, progress=progress, counts=batch):
        job_ids.append(run.job.job_id)
        if run.result is None:
            failures.append(run)
            continue
        written = await asyncio.to_thread(
            write_result_parquet,
            run.result,
            results,
            stem=f"job-{len(job_ids):04d}",
            extra={"_job": pl.lit(run.job.job_id), BUCKET: bucket_expr(pl.col("vin"), buckets)},
            sort_by=BUCKET,
        )
        parsed += [*written.ranked, *written.failed]
    return job_ids, parsed, failures


@dataclass(frozen=True, kw_only=True)
class _Mapping:
    """What every bucket's map-back reads: the jobs, their parsed results and failures."""

    parsed: list[Path]
    job_ids: list[str]
    failures: list[JobRun]
    batch: BatchCounts


def _map_bucket(
    sent: Path, index: int, jobs: _Mapping
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Map one bucket's pairs to the result rows of its VINs (the in-memory map-back).

    Returns the bucket's sent pairs, and of them the ranked (batch ranks, one order per VIN)
    and the failed.
    """
    pairs = pl.read_parquet(sent)
    answers = (
        [pl.scan_parquet(jobs.parsed).filter(pl.col(BUCKET) == index).drop(BUCKET).collect()]
        if jobs.parsed
        else []
    )
    job_failures = [
        frame
        for f in jobs.failures
        if f.error is not None
        and (frame := _job_failed(pairs, f.batch_file, f.job, f.error)).height
    ]
    bucket = BatchCounts()
    ranked, failed = _map_back(pairs, jobs.job_ids, answers, job_failures, bucket)
    for name in _RESULT_COUNTS:  # the map-back sets these per call: add them up
        setattr(jobs.batch, name, getattr(jobs.batch, name) + getattr(bucket, name))
    return pairs, ranked, failed


async def _finish_bucket(
    index: int,
    *,
    counts: LargeCounts,
    jobs: _Mapping,
    complete_online: CompleteOnline,
    outputs: tuple[ParquetAppender, ParquetAppender],
) -> None:
    """Write one bucket's ranked and failed pairs: its batch ranks, completed online if need be.

    Ranked pairs come vehicle by vehicle (by first input row), each in rank order.
    """
    sent = counts.sent.get(index)
    sent_pairs: pl.DataFrame | None = None
    ranked = pl.DataFrame(schema=RANKED_WITH_ROW)
    failed = pl.DataFrame(schema=FAILED_WITH_ROW)
    if sent is not None:
        sent_pairs, ranked, failed = await asyncio.to_thread(_map_bucket, sent, index, jobs)
    ranked = _per_vehicle(ranked)
    if index in counts.online:
        online_pairs = pl.read_parquet(counts.online[index])
        if sent_pairs is None:
            sent_pairs = online_pairs.clear()
        ranked, preranked = split_preranked(ranked, online_pairs, sent_pairs)
        online_ranked, online_failed = await complete_online(online_pairs, preranked)
        ranked = _in_vehicle_order(
            pl.concat([_typed(frame, RANKED_WITH_ROW) for frame in (ranked, online_ranked)])
        )
        failed = pl.concat([_typed(frame, FAILED_WITH_ROW) for frame in (failed, online_failed)])
    outputs[0].write(ranked)
    outputs[1].write(failed.sort(ROW))


async def rank_to_parquet(
    pairs: pl.DataFrame | pl.LazyFrame,
    *,
    output: Path,
    session: Session,
    options: BatchOptions,
    on_invalid: OnInvalid,
    progress: bool | None,
    complete_online: CompleteOnline,
    bucket_rows: int | None = None,
    rows: int | None = None,
) -> LargeOutcome:
    """Rank ``pairs`` through batch jobs into ``output/ranked.parquet`` and ``failed.parquet``.

    See the module docstring for the passes and what memory holds.

    Raises
    ------
    InvalidInputError
        Invalid rows with ``on_invalid="raise"`` (before any job is submitted).
    BatchJobFailed, BatchError
        As the in-memory batch route.
    RuntimeError
        When the written rows do not account for every distinct input pair (a bug).
    """
    work = output / "_work"
    await asyncio.to_thread(_fresh, output, work)
    ranked_path, failed_path = output / "ranked.parquet", output / "failed.parquet"
    ranked_out = ParquetAppender(ranked_path, RANKED_SCHEMA)
    failed_out = ParquetAppender(failed_path, FAILED_SCHEMA)
    try:
        buckets = await asyncio.to_thread(
            spill_by_vin,
            pairs,
            work / "input",
            bucket_rows=bucket_rows or BUCKET_ROWS,
            rows=rows,
        )
        counts = await asyncio.to_thread(
            prepare_buckets, buckets, work / "sent", failed_out, split_conflicts=_split_conflicts
        )
        shutil.rmtree(buckets.directory, ignore_errors=True)
        if on_invalid == "raise" and counts.invalid_rows:
            failed_out.close()
            _raise_invalid_rows(failed_path, counts)
        batch = BatchCounts(
            rows_sent=counts.sent_rows,
            unique_vins=counts.sent_vins,
            duplicate_vin_dealer_rows=counts.conflicts,
        )
        ops = batch_session(session, options)
        files = (
            await asyncio.to_thread(
                write_batch_files,
                pl.scan_parquet(list(counts.sent.values())),
                work / "upload",
                max_file_bytes=options.max_file_bytes,
            )
            if counts.sent
            else []
        )
        batch.files = len(files)
        job_ids, parsed, failures = await _run_jobs(
            files,
            ops=ops,
            options=options,
            progress=progress,
            results=work / "results",
            buckets=buckets.count,
            batch=batch,
        )
        jobs = _Mapping(parsed=parsed, job_ids=job_ids, failures=failures, batch=batch)
        for index in sorted(counts.sent.keys() | counts.online.keys()):
            await _finish_bucket(
                index,
                counts=counts,
                jobs=jobs,
                complete_online=complete_online,
                outputs=(ranked_out, failed_out),
            )
        batch.jobs = len(job_ids)
        batch.downloads = ops.downloads
        batch.cache_hits = ops.cache_hits
    finally:
        ranked_out.close()
        failed_out.close()
    await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
    await asyncio.to_thread(_check_accounted, ranked_path, failed_path, counts)
    return LargeOutcome(
        ranked=ranked_path, failed=failed_path, counts=counts, job_ids=tuple(job_ids), batch=batch
    )


def _per_vehicle(ranked: pl.DataFrame) -> pl.DataFrame:
    """Renumber batch ranks (one order per VIN) 1..N per vehicle, vehicles by first row.

    As the in-memory route does: a VIN at two prices is two vehicles, each ranked 1..N in
    the VIN's (exact) order.
    """
    keys = list(GROUP_KEYS["dealers"])
    return _in_vehicle_order(
        ranked.with_columns(pl.col("vin_rank").rank("ordinal").over(keys).cast(pl.UInt32))
    )


def _typed(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    return frame.select(schema.names()).cast(schema)


def _in_vehicle_order(ranked: pl.DataFrame) -> pl.DataFrame:
    """Order ranked pairs vehicle by vehicle (by first input row), each in rank order."""
    keys = list(GROUP_KEYS["dealers"])
    return (
        ranked.with_columns(pl.col(ROW).min().over(keys).alias("_group"))
        .sort("_group", "vin_rank")
        .drop("_group")
    )


def _fresh(output: Path, work: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)


def _raise_invalid_rows(failed: Path, counts: LargeCounts) -> None:
    invalid = pl.scan_parquet(failed).filter(pl.col("error_code") == "invalid_input")
    shown = invalid.head(_SHOWN).select("error_message").collect().to_series().to_list()
    more = counts.invalid_rows - len(shown)
    lines = [
        f"{counts.invalid_rows:,} of {counts.rows:,} input rows are invalid (pass "
        "on_invalid='fail' to get them in result.failed with error_code 'invalid_input' and "
        "rank the rest); nothing was submitted:",
        *(f"  {line}" for line in shown),
    ]
    if more:
        lines.append(f"  ... and {more:,} more row{'s' if more > 1 else ''}")
    raise InvalidInputError("\n".join(lines), failure_cases=invalid)


def _check_accounted(ranked: Path, failed: Path, counts: LargeCounts) -> None:
    """Every distinct input pair is in exactly one output file (counted from the footers)."""
    written = parquet_rows(ranked, failed)
    expected = counts.rows - counts.duplicates_removed
    if written != expected:
        raise RuntimeError(
            f"the output holds {written:,} rows but {expected:,} distinct input pairs were "
            f"given ({counts.rows:,} rows, {counts.duplicates_removed:,} exact duplicates); "
            "please report this"
        )
