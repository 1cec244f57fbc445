"""Rank a frame of pairs through batch jobs: write, split, submit, wait, download, map back.

The work is written as gzip CSV files under the size cap (split by VIN), and each file runs as
one job, one after another (an account has one active job at a time). Because files are
written deterministically, a rerun of the same work derives the same references and adopts
the jobs of the earlier run, and the verified result files come from the cache.

Every input pair is accounted for: a pair is ranked when its result row has a rank and scores,
failed with the result's error code otherwise, ``missing_from_result`` when the result file
has no row for it, and (with ``on_job_failed="fail"``) failed with the job's error code when
its job FAILED. A pair that gives an ``mc_location_id`` (the file carries only source and zip)
is ranked only when the result's rooftop id confirms it (see :func:`_confirm_locations`). Batch
ranks order the dealers of each VIN across all its rows, so they are exact.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import polars as pl

from mm_pipeline._batch._files import DEFAULT_MAX_FILE_BYTES, BatchFile, write_batch_files
from mm_pipeline._batch._job import BatchJob
from mm_pipeline._batch._plan import BATCH_THRESHOLD_REQUESTS, MAX_POLL_INTERVAL, POLL_INTERVAL
from mm_pipeline._batch._results import RESULT_SCHEMA, error_code_text, read_result_file
from mm_pipeline._batch._session import (
    DEFAULT_ACTIVE_JOB_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    BatchSession,
)
from mm_pipeline._exceptions import BatchJobFailed
from mm_pipeline._frames import FAILED_SCHEMA, PAIR_COLUMNS, RANKED_SCHEMA, ROW
from mm_pipeline._redact import get_logger
from mm_pipeline._rows import row_name_expr

if TYPE_CHECKING:
    from mm_pipeline._session import Session

__all__ = [
    "BATCH_THRESHOLD_REQUESTS",
    "DEFAULT_POLL_TIMEOUT",
    "BatchCounts",
    "BatchOptions",
    "BatchOutcome",
    "rank_pairs_batch",
]

log = get_logger("mm_pipeline.batch")

DEFAULT_POLL_TIMEOUT: Final = DEFAULT_WAIT_TIMEOUT
"""Seconds to wait for each batch job to finish (6 hours)."""

_KEY: Final = ("vin", "price", "miles", "source", "zip")
_MISSING: Final = "missing_from_result"


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """How to run the batch route.

    Parameters
    ----------
    client_reference
        The caller's reference, kept as a prefix of each job's derived reference.
    webhook_url, webhook_secret
        Passed to every submitted job.
    poll_timeout
        Seconds to wait for each job (overall, separate from request retries).
    cache_dir
        Where verified result files are kept (default: the user cache directory).
    max_file_bytes
        The upload cap; larger work is split by VIN into several jobs.
    on_job_failed
        ``"raise"``: a FAILED job raises :class:`~mm_pipeline.BatchJobFailed`; ``"fail"``: its
        pairs go to ``failed`` with the job's error code.
    poll_interval, max_poll_interval
        The first and the largest pause between status polls (seconds).
    active_job_timeout
        How long to wait for another client's active job before giving up.
    """

    client_reference: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    poll_timeout: float = DEFAULT_POLL_TIMEOUT
    cache_dir: Path | None = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    on_job_failed: Literal["raise", "fail"] = "raise"
    poll_interval: float = POLL_INTERVAL
    max_poll_interval: float = MAX_POLL_INTERVAL
    active_job_timeout: float = DEFAULT_ACTIVE_JOB_TIMEOUT


@dataclass(kw_only=True)
class BatchCounts:
    """What one run of the batch route did (filled as it runs; logged, and read by tests).

    ``RankStats.conflicts`` takes ``duplicate_vin_dealer_rows``; the other figures describe the
    jobs, which ``RankStats.batch_job_ids`` names.
    """

    #: Pairs written to batch files, and their distinct VINs.
    rows_sent: int = 0
    unique_vins: int = 0
    #: Rows sharing a VIN and dealer with another at a different price or mileage.
    duplicate_vin_dealer_rows: int = 0
    #: Files written, jobs used (of them adopted from an earlier run, and FAILED).
    files: int = 0
    jobs: int = 0
    jobs_adopted: int = 0
    jobs_failed: int = 0
    #: Download requests sent (each spends a slot) and results served from the cache.
    downloads: int = 0
    cache_hits: int = 0
    #: Result rows: pairs with none, rows for no pair, and repeated rows.
    missing_from_result: int = 0
    unexpected_result_rows: int = 0
    duplicate_result_rows: int = 0
    #: Pairs whose ``mc_location_id`` the result contradicts, or does not confirm.
    location_mismatches: int = 0
    locations_unconfirmed: int = 0


@dataclass(frozen=True, kw_only=True)
class BatchOutcome:
    """What the batch route returns.

    ``ranked`` follows ``RANKED_SCHEMA`` and ``failed`` ``FAILED_SCHEMA``; both also carry any
    extra column of the input pairs (such as ``_row``). ``counts`` says what happened.
    """

    ranked: pl.DataFrame
    failed: pl.DataFrame
    job_ids: tuple[str, ...]
    counts: BatchCounts = field(default_factory=BatchCounts)


def batch_session(session: Session, options: BatchOptions) -> BatchSession:
    """Return the batch API operations over ``session``, as ``options`` configure them."""
    return BatchSession(
        session=session,
        cache_dir=options.cache_dir,
        poll_interval=options.poll_interval,
        max_poll_interval=options.max_poll_interval,
        active_job_timeout=options.active_job_timeout,
    )


@dataclass(frozen=True, kw_only=True)
class JobRun:
    """One batch file run as a job: its verified result file, or why the job FAILED."""

    batch_file: BatchFile
    job: BatchJob
    result: Path | None = None
    error: BatchJobFailed | None = None


async def run_jobs(
    files: list[BatchFile],
    *,
    ops: BatchSession,
    options: BatchOptions,
    progress: bool | None,
    counts: BatchCounts,
) -> AsyncIterator[JobRun]:
    """Submit (or adopt), wait for and download each file's job, one after another.

    A FAILED job raises :class:`BatchJobFailed` with ``on_job_failed="raise"``; with
    ``"fail"`` it is yielded with its error. Counts ``jobs_adopted`` and ``jobs_failed``.
    """
    for number, batch_file in enumerate(files, start=1):
        job = await ops.submit(
            batch_file.path,
            sha256=batch_file.sha256,
            client_reference=options.client_reference,
            webhook_url=options.webhook_url,
            webhook_secret=options.webhook_secret,
        )
        counts.jobs_adopted += int(job.adopted)
        log.info(
            "batch file %d/%d (%d rows) -> job %s", number, len(files), batch_file.rows, job.job_id
        )
        try:
            done = await ops.wait(job.job_id, timeout=options.poll_timeout, progress=progress)
        except BatchJobFailed as exc:
            if options.on_job_failed == "raise":
                raise
            counts.jobs_failed += 1
            yield JobRun(batch_file=batch_file, job=job, error=exc)
            continue
        path = await ops.download(job.job_id, item_count=done.item_count)
        yield JobRun(batch_file=batch_file, job=job, result=path)


async def rank_pairs_batch(
    pairs: pl.DataFrame,
    *,
    session: Session,
    options: BatchOptions,
    progress: bool | None,
) -> BatchOutcome:
    """Rank normalised, valid, distinct pairs (each with a ``zip``) through batch jobs.

    Parameters
    ----------
    pairs
        The six pair columns (plus any extra columns, carried through); ``zip`` is required.
    session
        An open session.
    options
        See :class:`BatchOptions`.
    progress
        Show a progress bar per job (``None``: only in terminals and notebooks).

    Returns
    -------
    BatchOutcome
        Every pair in exactly one of ``ranked``/``failed``; the job ids in order.

    Raises
    ------
    BatchJobFailed
        A job FAILED and ``on_job_failed="raise"``.
    BatchError
        A job could not be run to a verified result (timeout, no download slot, ...).
    ValueError
        A pair without ``zip`` (it cannot go through batch), or one VIN's rows exceed the cap.
    """
    no_zip = pairs.filter(pl.col("zip").is_null()).height
    if no_zip:
        raise ValueError(
            f"{no_zip} pairs have no zip; the batch API needs source and zip for every pair "
            "(rank pairs identified by mc_location_id alone online)"
        )
    ops = batch_session(session, options)
    pairs, conflicts = _split_conflicts(pairs)
    counts = BatchCounts(
        rows_sent=pairs.height,
        unique_vins=pairs.get_column("vin").n_unique(),
        duplicate_vin_dealer_rows=conflicts.height,
    )
    job_ids: list[str] = []
    results: list[pl.DataFrame] = []
    job_failures: list[pl.DataFrame] = []
    with tempfile.TemporaryDirectory(prefix="mm-batch-") as tmp:
        files = await asyncio.to_thread(
            write_batch_files, pairs, Path(tmp), max_file_bytes=options.max_file_bytes
        )
        counts.files = len(files)
        async for run in run_jobs(
            files, ops=ops, options=options, progress=progress, counts=counts
        ):
            job_ids.append(run.job.job_id)
            if run.error is not None:
                job_failures.append(_job_failed(pairs, run.batch_file, run.job, run.error))
                continue
            assert run.result is not None  # noqa: S101 - a job either failed or has a result
            result = await asyncio.to_thread(read_result_file, run.result)
            results.append(result.with_columns(pl.lit(run.job.job_id).alias("_job")))
    counts.jobs = len(job_ids)
    counts.downloads = ops.downloads
    counts.cache_hits = ops.cache_hits
    ranked, failed = _map_back(pairs, job_ids, results, job_failures, counts)
    if conflicts.height:
        failed = pl.concat([failed, conflicts.select(failed.columns)])
    return BatchOutcome(ranked=ranked, failed=failed, job_ids=tuple(job_ids), counts=counts)


def _split_conflicts(pairs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first pair of each (vin, source, zip); fail the others as duplicate_conflict.

    The batch API ranks a VIN once per dealer: a later row for the same VIN and dealer (at
    another price or mileage) would get the first row's values, which are not its own.
    """
    dealer = ["vin", "source", "zip"]
    order = pl.col(ROW) if ROW in pairs.columns else pl.int_range(pl.len())
    marked = pairs.with_columns(
        _order=order,
        _repeat=pl.int_range(pl.len()).over(dealer) > 0,
    ).with_columns(_first=pl.col("_order").first().over(dealer))
    conflicts = _as_failed(
        marked.filter("_repeat"),
        extra=_extra_columns(pairs),
        code=pl.lit("duplicate_conflict"),
        message=pl.format(
            "{}: same vin and dealer as {} with a different price/miles; the batch API "
            "ranks a VIN once per dealer, so only {} was sent",
            row_name_expr("_order"),
            row_name_expr("_first"),
            row_name_expr("_first"),
        ),
    )
    return marked.filter(~pl.col("_repeat")).drop("_order", "_repeat", "_first"), conflicts


def _job_failed(
    pairs: pl.DataFrame, batch_file: BatchFile, job: BatchJob, exc: BatchJobFailed
) -> pl.DataFrame:
    chosen = (
        pairs if batch_file.vins is None else pairs.filter(pl.col("vin").is_in(batch_file.vins))
    )
    code = error_code_text(exc.error_code, default="batch_job_failed")
    message = f"batch job {job.job_id} FAILED: {exc.error_code}: {exc.error_message or ''}"
    return _as_failed(
        chosen,
        code=pl.lit(code),
        message=pl.lit(message.rstrip(": ")),
        extra=_extra_columns(pairs),
    )


def _extra_columns(pairs: pl.DataFrame) -> list[str]:
    """Input columns beyond the pair columns (such as ``_row``), carried to the outputs."""
    return [c for c in pairs.columns if c not in FAILED_SCHEMA]


def _as_failed(
    frame: pl.DataFrame, *, code: pl.Expr, message: pl.Expr, extra: list[str]
) -> pl.DataFrame:
    return frame.select(
        *PAIR_COLUMNS,
        pl.lit(None, pl.Float64).alias("vin_score"),
        pl.lit(None, pl.Float64).alias("dealer_ymm_score"),
        pl.lit(None, pl.UInt32).alias("vin_rank"),
        code.cast(pl.String).alias("error_code"),
        message.cast(pl.String).alias("error_message"),
        *extra,
    )


def _one_row_per_key(result: pl.DataFrame, counts: BatchCounts) -> pl.DataFrame:
    """Keep one result row per key, a ranked one where the file repeats a key.

    Result files rarely repeat a key or fail a row, so the copies that sorting and
    de-duplicating make are only paid when they do.
    """
    if result.get_column("error_code").null_count() < result.height:  # some rows failed
        result = result.sort(pl.col("error_code").is_not_null(), maintain_order=True)
    repeated = result.select(pl.struct(_KEY).is_duplicated().any()).item()
    unique = (
        result.unique(subset=list(_KEY), keep="first", maintain_order=True) if repeated else result
    )
    counts.duplicate_result_rows = result.height - unique.height
    return unique


def _confirm_locations(
    matched: pl.DataFrame, *, extra: list[str], counts: BatchCounts
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Take ranked rows out whose given ``mc_location_id`` the result does not confirm.

    The batch file names a dealer by (source, zip) only, so the server ranks the rooftop at
    that ZIP whatever id the row gives. A result naming another rooftop means the given id is
    not that dealer's: failed as ``dealer_not_found``, as the online API answers. A result
    without a rooftop id (a server that leaves the column out) cannot confirm it: failed as
    ``location_unconfirmed`` rather than shown beside scores that may be another rooftop's.
    Returns the rows kept and the failed rows (``None`` when there are none, the usual case).
    """
    given = pl.col("mc_location_id")
    answered = pl.col("_result_location")
    checked = given.is_not_null() & pl.col("error_code").is_null() & pl.col("_job").is_not_null()
    wrong = checked & answered.is_not_null() & (given != answered)
    unknown = checked & answered.is_null()
    flags = matched.select(wrong.alias("wrong"), unknown.alias("unknown"))
    counts.location_mismatches = int(flags.get_column("wrong").sum())
    counts.locations_unconfirmed = int(flags.get_column("unknown").sum())
    if not counts.location_mismatches + counts.locations_unconfirmed:
        return matched, None
    taken = flags.get_column("wrong") | flags.get_column("unknown")
    failed = _as_failed(
        matched.filter(taken),
        extra=extra,
        code=pl.when(wrong)
        .then(pl.lit("dealer_not_found"))
        .otherwise(pl.lit("location_unconfirmed")),
        message=pl.when(wrong)
        .then(
            pl.format(
                "batch job {}: mc_location_id {} is not the {} rooftop at zip {} (that is {}); "
                "the batch file names dealers by source and zip",
                "_job",
                given,
                "source",
                "zip",
                answered,
            )
        )
        .otherwise(
            pl.format(
                "batch job {}: the result names no rooftop id, so mc_location_id {} could not "
                "be confirmed; rank this pair with mode='online'",
                "_job",
                given,
            )
        ),
    )
    return matched.filter(~taken), failed


def _map_back(
    pairs: pl.DataFrame,
    job_ids: list[str],
    results: list[pl.DataFrame],
    job_failures: list[pl.DataFrame],
    counts: BatchCounts,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Join result rows to input pairs on (vin, price, miles, source, zip)."""
    extra = _extra_columns(pairs)
    failed_jobs = pl.concat(job_failures) if job_failures else None
    todo = pairs
    if failed_jobs is not None:
        todo = pairs.join(
            failed_jobs.select(*PAIR_COLUMNS), on=list(PAIR_COLUMNS), how="anti", nulls_equal=True
        )
    unique = _one_row_per_key(
        pl.concat(results)
        if results
        else pl.DataFrame(schema={**RESULT_SCHEMA, "_job": pl.String}),
        counts,
    )
    expected = (
        unique.lazy().join(todo.lazy().select(_KEY), on=list(_KEY), how="semi").select(pl.len())
    )
    counts.unexpected_result_rows = unique.height - expected.collect().item()
    matched = todo.join(
        unique.rename({"mc_location_id": "_result_location"}),
        on=list(_KEY),
        how="left",
        maintain_order="left",
    )
    del unique  # the join holds what is needed: the result is not kept twice
    missing = pl.col("_job").is_null()
    counts.missing_from_result = matched.filter(missing).height
    matched, unconfirmed = _confirm_locations(matched, extra=extra, counts=counts)
    is_ranked = ~missing & pl.col("error_code").is_null()
    ranked = (
        matched.filter(is_ranked)
        .select(
            *_KEY,
            pl.coalesce("mc_location_id", "_result_location").alias("mc_location_id"),
            "vin_score",
            "dealer_ymm_score",
            "vin_rank",
            pl.lit(True).alias("rank_exact"),
            *extra,
        )
        .cast(RANKED_SCHEMA)
        .sort("vin", "vin_rank", maintain_order=True)
    )
    unranked = matched.filter(~is_ranked)
    failed_parts = [
        _as_failed(
            unranked,
            extra=extra,
            code=pl.when(missing).then(pl.lit(_MISSING)).otherwise(pl.col("error_code")),
            message=pl.when(missing)
            .then(
                pl.lit(f"the result of batch job(s) {', '.join(job_ids)} has no row for this pair")
            )
            .otherwise(pl.format("batch job {}: {}", "_job", "error_message")),
        )
    ]
    if unconfirmed is not None:
        failed_parts.append(unconfirmed)
    if failed_jobs is not None:
        failed_parts.append(failed_jobs)
    failed = pl.concat(failed_parts).cast(FAILED_SCHEMA)
    return ranked, failed
