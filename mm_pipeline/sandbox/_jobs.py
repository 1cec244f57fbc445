"""Batch jobs: the store, the state machine, background processing and persistence (no HTTP).

A job is ``PROCESSING`` from submission until it ends ``COMPLETED`` or ``FAILED``; a terminal job
never changes again (except its download count). Processing runs on a small thread pool:

1. *queued*: no ``item_count`` yet, ``progress_percent`` 0;
2. *running*: the upload is decompressed to disk (capped, so a gzip bomb fails cleanly), its
   header read and its rows counted (streaming), its ``item_count`` published, its columns
   checked, then ranked in bounded memory by :func:`._buckets.rank_csv_file` (whole when
   small, else in VIN buckets spilled to Parquet);
3. *finishing*: the job completes once ranking is done **and** ``job_seconds`` have passed since it
   started (so progress is observable), or, with ``hold`` set, only when released by
   :meth:`JobStore.complete` (tests drive transitions by hand). :meth:`JobStore.fail` fails it
   at any time.

``progress_percent`` is ``min(ranking progress, elapsed / job_seconds)`` (at most 99 until the job
completes). Every job lives in ``ROOT/jobs/<id>.json``, its upload in ``ROOT/uploads`` and its
result in ``ROOT/results``; a store opened on the same root finds them again, and jobs that were
still processing start over.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import polars as pl

from mm_pipeline.sandbox._buckets import (
    DEFAULT_BUCKET_BYTES,
    ERROR_COLUMN,
    CsvReadError,
    RankedFile,
    rank_csv_file,
)
from mm_pipeline.sandbox._memory import peak_rss_bytes, reset_peak, rss_bytes

__all__ = [
    "CURSOR_PATTERN",
    "ERROR_COLUMN",
    "MAX_DOWNLOADS",
    "REQUIRED_COLUMNS",
    "BatchError",
    "Download",
    "JobStore",
    "RankBatch",
    "WebhookRequest",
]

log = logging.getLogger("mm_pipeline.sandbox")

MAX_DOWNLOADS = 3
REQUIRED_COLUMNS = ("vin", "price", "miles", "source", "zip")
_PAGE_DEFAULT = 20
_PAGE_MAX = 100
_STATUS_FILTERS = {
    "all": None,
    "active": "PROCESSING",
    "completed": "COMPLETED",
    "failed": "FAILED",
}
_PROCESSING_FAILED = "Job processing failed unexpectedly. Please resubmit."
_CHUNK = 1 << 20
# polars' read_csv decompresses data starting with these (gzip, zlib, zstd) in memory, uncapped:
# an upload compressed twice would be a gzip bomb that slips past _gunzip_capped.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"(\xb5/\xfd", b"x\x01", b"x^", b"x\x9c", b"x\xda")

Status = Literal["PROCESSING", "COMPLETED", "FAILED"]
RankBatch = Callable[[pl.DataFrame, Callable[[float], None]], pl.DataFrame]
"""``rank(frame, progress) -> result frame``; *progress* takes the fraction done (0..1)."""


class BatchError(Exception):
    """A refused batch operation, with its published ``error_code``."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class _JobFailedError(Exception):
    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class _CancelledError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Download:
    """A granted download: the result file and the counters after this download."""

    path: Path
    size: int
    checksum: str
    download_count: int
    remaining_downloads: int


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A webhook the store asks to deliver when a job ends."""

    url: str
    secret: str | None
    event: str
    payload: dict[str, Any]


@dataclass
class _Job:
    job_id: str
    account: str
    seq: int
    created_at: str
    status: Status = "PROCESSING"
    client_reference: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    idempotency_key: str | None = None
    item_count: int | None = None
    successful_count: int | None = None
    failed_count: int | None = None
    finished_at: str | None = None
    final_progress: int = 0
    download_count: int = 0
    checksum: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    stats: dict[str, int | None] = field(default_factory=dict)
    """How the job ran (control API only): buckets, resident memory at start and peak."""
    # runtime only (not persisted)
    work: float = field(default=0.0, repr=False)
    started: float | None = field(default=None, repr=False)
    released: bool = field(default=False, repr=False)
    cancelled: bool = field(default=False, repr=False)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in _RUNTIME_FIELDS}


_RUNTIME_FIELDS = frozenset({"work", "started", "released", "cancelled"})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class JobStore:
    """Batch jobs of every account, processed in the background and kept under *root*.

    Parameters
    ----------
    root
        Directory for job records, uploads and results (created if missing).
    rank
        The ranking function (``Market.rank_batch``), run on a worker thread.
    job_seconds
        Minimum processing time of a job, so that progress can be observed.
    hold
        Keep every job in PROCESSING until :meth:`complete` or :meth:`fail` (manual transitions).
    max_csv_bytes
        Cap on the decompressed size of an upload; a larger one fails with ``file_too_large``.
    on_finished
        Called (on the worker thread) with the webhook to send when a job with a
        ``webhook_url`` ends.
    workers
        Jobs processed at the same time (one active job per account anyway).
    bucket_bytes
        Most CSV bytes ranked at once; a larger upload is ranked in VIN buckets.
    """

    def __init__(
        self,
        root: Path,
        *,
        rank: RankBatch,
        job_seconds: float = 0.0,
        hold: bool = False,
        max_csv_bytes: int = 2_000_000_000,
        on_finished: Callable[[WebhookRequest], None] | None = None,
        workers: int = 2,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    ) -> None:
        self._root = Path(root)
        self._rank = rank
        self.job_seconds = job_seconds
        self.hold = hold
        self._max_csv_bytes = max_csv_bytes
        self._on_finished = on_finished
        self._workers = workers
        self._bucket_bytes = bucket_bytes
        self._cond = threading.Condition(threading.RLock())
        self._jobs: dict[str, _Job] = {}
        self._seq = 0
        self._stopping = False
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Create the directories, load persisted jobs and resume the unfinished ones."""
        for sub in ("jobs", "uploads", "results", "tmp"):
            (self._root / sub).mkdir(parents=True, exist_ok=True)
        resume: list[_Job] = []
        with self._cond:
            self._stopping = False
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="mm-sandbox-job")
            for path in sorted((self._root / "jobs").glob("*.json")):
                try:
                    job = _Job(**orjson.loads(path.read_bytes()))
                except (orjson.JSONDecodeError, TypeError, OSError) as exc:
                    log.warning("skipping unreadable job record %s: %s", path.name, exc)
                    continue
                self._jobs[job.job_id] = job
                self._seq = max(self._seq, job.seq)
                if job.status == "PROCESSING":
                    resume.append(job)
            for job in sorted(resume, key=lambda j: j.seq):
                self._executor.submit(self._process, job)

    def close(self) -> None:
        """Stop the workers (unfinished jobs stay PROCESSING on disk and resume on restart)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def reset(self) -> None:
        """Forget every job and its files (workers are stopped and restarted)."""
        self.close()
        with self._cond:
            self._jobs.clear()
            self._seq = 0
            for sub in ("jobs", "uploads", "results", "tmp"):
                shutil.rmtree(self._root / sub, ignore_errors=True)
        self.start()

    def configure(self, *, hold: bool | None = None, job_seconds: float | None = None) -> None:
        """Change the timing of running and future jobs."""
        with self._cond:
            if hold is not None:
                self.hold = hold
            if job_seconds is not None:
                self.job_seconds = job_seconds
            self._cond.notify_all()

    # -- submit ------------------------------------------------------------------------------

    def upload_path(self) -> Path:
        """Return a fresh temporary path for an incoming upload (inside the store)."""
        return self._root / "tmp" / f"upload-{uuid.uuid4().hex}.csv.gz"

    def submit(
        self,
        account: str,
        upload: Path,
        *,
        client_reference: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Create a job from the *upload* file (moved into the store).

        Returns the response body and whether a job was created (False: an idempotent replay,
        *upload* is deleted). Raises :class:`BatchError` ``active_job_exists``.
        """
        with self._cond:
            if idempotency_key is not None:
                existing = self._by_idempotency(account, idempotency_key)
                if existing is not None:
                    upload.unlink(missing_ok=True)
                    return self._view(existing), False
            for other in self._jobs.values():
                if other.account == account and other.status == "PROCESSING":
                    upload.unlink(missing_ok=True)
                    msg = f"An active ranking job already exists for this account: {other.job_id}"
                    raise BatchError("active_job_exists", msg)
            self._seq += 1
            job = _Job(
                job_id=str(uuid.uuid4()),
                account=account,
                seq=self._seq,
                created_at=_now_iso(),
                client_reference=client_reference,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                idempotency_key=idempotency_key,
            )
            os.replace(upload, self._upload(job))
            self._jobs[job.job_id] = job
            self._persist(job)
            if self._executor is not None:
                self._executor.submit(self._process, job)
            body: dict[str, Any] = {"job_id": job.job_id, "status": job.status}
            if client_reference is not None:
                body["client_reference"] = client_reference
            body["created_at"] = job.created_at
            return body, True

    # -- read --------------------------------------------------------------------------------

    def status(self, account: str, job_id: str) -> dict[str, Any]:
        """Return the published status object of *account*'s job (``job_not_found`` otherwise)."""
        with self._cond:
            return self._view(self._owned(account, job_id))

    def inspect(self, job_id: str) -> dict[str, Any]:
        """Return the status object of any account's job, with its ``sandbox_stats`` (control API).

        ``sandbox_stats``: ``buckets`` (1: ranked whole), ``rss_start_bytes`` and
        ``peak_rss_bytes`` (the process's resident memory when the job started and its peak
        while it ran; ``None`` off Linux), once the job has been ranked.
        """
        with self._cond:
            job = self._any(job_id)
            return {**self._view(job), "sandbox_stats": dict(job.stats)}

    def list(
        self, account: str, *, status: str | None, rows: str | None, cursor: str | None
    ) -> dict[str, Any]:
        """Return one page of *account*'s jobs, newest first (raw query values are validated)."""
        if status is None:
            status = "all"
        if status not in _STATUS_FILTERS:
            msg = (
                f"Invalid status filter {status!r}; expected one of: all, active, completed, failed"
            )
            raise BatchError("invalid_parameter", msg)
        page = _parse_rows(rows)
        after = _decode_cursor(cursor) if cursor is not None else None
        wanted = _STATUS_FILTERS[status]
        with self._cond:
            matching = sorted(
                (
                    j
                    for j in self._jobs.values()
                    if j.account == account and (wanted is None or j.status == wanted)
                ),
                key=lambda j: j.seq,
                reverse=True,
            )
            remaining = [j for j in matching if after is None or j.seq < after]
            chosen = remaining[:page]
            body: dict[str, Any] = {
                "jobs": [self._view(j) for j in chosen],
                "total": len(matching),
            }
            if len(remaining) > page:
                body["next_cursor"] = _encode_cursor(chosen[-1].seq)
            body["rows"] = page
            return body

    def download(self, account: str, job_id: str) -> Download:
        """Spend one download slot of *account*'s completed job and return its result file."""
        with self._cond:
            job = self._owned(account, job_id)
            if job.status == "FAILED":
                msg = f"Job {job_id} failed ({job.error_code}); it has no results to download"
                raise BatchError("job_not_completed", msg)
            if job.status != "COMPLETED":
                msg = f"Job {job_id} has not finished processing yet"
                raise BatchError("job_not_completed", msg)
            if job.download_count >= MAX_DOWNLOADS:
                msg = f"All {MAX_DOWNLOADS} download slots of job {job_id} have been consumed"
                raise BatchError("download_limit_exceeded", msg)
            path = self._result(job)
            size = path.stat().st_size
            job.download_count += 1
            self._persist(job)
            return Download(
                path=path,
                size=size,
                checksum=job.checksum or "",
                download_count=job.download_count,
                remaining_downloads=MAX_DOWNLOADS - job.download_count,
            )

    # -- manual transitions (control API) ----------------------------------------------------

    def complete(self, job_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Release a job from its wait (hold or ``job_seconds``) and wait until it ends.

        A job whose file cannot be ranked still ends FAILED, with its real error.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            job = self._any(job_id)
            job.released = True
            self._cond.notify_all()
            while job.status == "PROCESSING" and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._view(job)

    def fail(
        self,
        job_id: str,
        *,
        error_code: str = "processing_failed",
        error_message: str = _PROCESSING_FAILED,
    ) -> dict[str, Any]:
        """Fail a processing job now (its worker's result is discarded)."""
        with self._cond:
            job = self._any(job_id)
            if job.status != "PROCESSING":
                msg = f"Job {job_id} is already {job.status}; a finished job never changes state"
                raise BatchError("job_not_active", msg)
            job.cancelled = True
            self._finish_failed(job, error_code, error_message)
            view = self._view(job)
        self._notify(job)
        return view

    # -- worker ------------------------------------------------------------------------------

    def _process(self, job: _Job) -> None:
        with self._cond:
            if job.status != "PROCESSING" or job.cancelled or self._stopping:
                return
            job.started = time.monotonic()
            job.work = 0.0
        tmp = self._root / "tmp" / f"result-{job.job_id}.csv.gz"
        csv_path = self._root / "tmp" / f"input-{job.job_id}.csv"
        failure: _JobFailedError | None = None
        ranked = RankedFile(successful_count=0, failed_count=0, buckets=0)
        checksum = ""
        start_rss = rss_bytes() if reset_peak() else None
        try:
            columns = self._load(job, csv_path)
            ranked = self._rank_to_file(job, csv_path, columns, tmp)
            checksum = _sha256(tmp)
        except _CancelledError:
            tmp.unlink(missing_ok=True)
            return
        except _JobFailedError as exc:
            failure = exc
        except Exception:
            log.exception("batch job %s failed", job.job_id)
            failure = _JobFailedError("processing_failed", _PROCESSING_FAILED)
        finally:
            csv_path.unlink(missing_ok=True)
        with self._cond:
            job.stats = {
                "buckets": ranked.buckets,
                "rss_start_bytes": start_rss,
                "peak_rss_bytes": peak_rss_bytes() if start_rss is not None else None,
            }
            if not self._wait_release(job):
                tmp.unlink(missing_ok=True)
                return
            if failure is not None:
                tmp.unlink(missing_ok=True)
                self._finish_failed(job, failure.error_code, failure.message)
            else:
                os.replace(tmp, self._result(job))
                job.status = "COMPLETED"
                job.successful_count = ranked.successful_count
                job.failed_count = ranked.failed_count
                job.checksum = checksum
                job.finished_at = _now_iso()
                job.final_progress = 100
                self._persist(job)
                self._cond.notify_all()
        self._notify(job)

    def _load(self, job: _Job, csv_path: Path) -> tuple[str, ...]:
        """Decompress the upload to *csv_path*, count its rows (streaming), check its columns."""
        _gunzip_capped(self._upload(job), csv_path, self._max_csv_bytes)
        self._check_cancelled(job)
        with csv_path.open("rb") as head:
            if head.read(4).startswith(_COMPRESSED_MAGIC):
                msg = "The file is compressed twice; upload a CSV compressed once with gzip"
                raise _JobFailedError("invalid_file_format", msg)
        try:
            scan = pl.scan_csv(csv_path, infer_schema=False)
            columns = tuple(scan.collect_schema().names())
            rows = scan.select(pl.len()).collect(engine="streaming").item()
        except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
            raise _JobFailedError("invalid_file_format", _invalid_csv(exc)) from exc
        with self._cond:
            job.item_count = rows
            self._persist(job)
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            msg = f"The file is missing required columns: {', '.join(missing)}"
            raise _JobFailedError("invalid_columns", msg)
        return columns

    def _rank_to_file(
        self, job: _Job, csv_path: Path, columns: tuple[str, ...], tmp: Path
    ) -> RankedFile:
        def progress(fraction: float) -> None:
            self._check_cancelled(job)
            job.work = min(1.0, max(job.work, fraction))

        try:
            ranked = rank_csv_file(
                csv_path,
                tmp,
                rank=self._rank,
                progress=progress,
                columns=columns,
                bucket_bytes=self._bucket_bytes,
            )
        except CsvReadError as exc:
            raise _JobFailedError("invalid_file_format", _invalid_csv(exc)) from exc
        self._check_cancelled(job)
        job.work = 1.0
        return ranked

    def _check_cancelled(self, job: _Job) -> None:
        if job.cancelled or self._stopping:
            raise _CancelledError

    def _wait_release(self, job: _Job) -> bool:
        """Wait (holding the condition) until *job* may finish; False when it must not."""
        while True:
            if self._stopping or job.cancelled or job.status != "PROCESSING":
                return False
            if job.released:
                return True
            if self.hold:
                self._cond.wait()
                continue
            left = (job.started or 0.0) + self.job_seconds - time.monotonic()
            if left <= 0:
                return True
            self._cond.wait(left)

    def _finish_failed(self, job: _Job, error_code: str, message: str) -> None:
        job.final_progress = self._progress(job)
        job.status = "FAILED"
        job.error_code = error_code
        job.error_message = message
        job.finished_at = _now_iso()
        self._persist(job)
        self._cond.notify_all()

    def _notify(self, job: _Job) -> None:
        if self._on_finished is None or not job.webhook_url:
            return
        if job.status == "COMPLETED":
            event = "job.completed"
            payload: dict[str, Any] = {
                "event": event,
                "job_id": job.job_id,
                "status": job.status,
                "item_count": job.item_count,
                "successful_count": job.successful_count,
                "failed_count": job.failed_count,
                "completed_at": job.finished_at,
            }
        else:
            event = "job.failed"
            payload = {
                "event": event,
                "job_id": job.job_id,
                "status": job.status,
                "error_code": job.error_code,
                "error_message": job.error_message,
                "completed_at": job.finished_at,
            }
        self._on_finished(WebhookRequest(job.webhook_url, job.webhook_secret, event, payload))

    # -- helpers -----------------------------------------------------------------------------

    def _progress(self, job: _Job) -> int:
        if job.status != "PROCESSING":
            return job.final_progress
        if job.item_count is None or job.started is None:
            return 0
        if self.hold or self.job_seconds <= 0:
            timed = 1.0
        else:
            timed = (time.monotonic() - job.started) / self.job_seconds
        return min(99, int(100 * max(0.0, min(job.work, timed))))

    def _view(self, job: _Job) -> dict[str, Any]:
        body: dict[str, Any] = {
            "job_id": job.job_id,
            "status": job.status,
            "progress_percent": self._progress(job),
        }
        if job.item_count is not None:
            body["item_count"] = job.item_count
        if job.status == "COMPLETED":
            body["successful_count"] = job.successful_count
            body["failed_count"] = job.failed_count
        if job.client_reference is not None:
            body["client_reference"] = job.client_reference
        body["created_at"] = job.created_at
        if job.status == "COMPLETED":
            remaining = MAX_DOWNLOADS - job.download_count
            body["completed_at"] = job.finished_at
            body["download_available"] = remaining > 0
            body["download_count"] = job.download_count
            body["max_downloads"] = MAX_DOWNLOADS
            body["remaining_downloads"] = remaining
        elif job.status == "FAILED":
            body["error_code"] = job.error_code
            body["error_message"] = job.error_message
        return body

    def _by_idempotency(self, account: str, key: str) -> _Job | None:
        for job in self._jobs.values():
            if job.account == account and job.idempotency_key == key:
                return job
        return None

    def _any(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise BatchError("job_not_found", f"Job {job_id} not found")
        return job

    def _owned(self, account: str, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None or job.account != account:
            msg = f"Job {job_id} does not exist or does not belong to your account"
            raise BatchError("job_not_found", msg)
        return job

    def _upload(self, job: _Job) -> Path:
        return self._root / "uploads" / f"{job.job_id}.csv.gz"

    def _result(self, job: _Job) -> Path:
        return self._root / "results" / f"{job.job_id}.csv.gz"

    def _persist(self, job: _Job) -> None:
        path = self._root / "jobs" / f"{job.job_id}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(orjson.dumps(job.record()))
        os.replace(tmp, path)


def _invalid_csv(exc: Exception) -> str:
    cause = exc.__cause__ if isinstance(exc, CsvReadError) and exc.__cause__ else exc
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"The file is not a valid CSV: {first_line}"[:500]


def _parse_rows(rows: str | None) -> int:
    if rows is None:
        return _PAGE_DEFAULT
    try:
        page = int(rows)
    except ValueError:
        page = 0
    if not 1 <= page <= _PAGE_MAX or not rows.strip().isdigit():
        msg = f"Invalid rows {rows!r}; expected an integer from 1 to {_PAGE_MAX}"
        raise BatchError("invalid_parameter", msg)
    return page


CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"
"""What :func:`_encode_cursor` writes (unpadded base64url); the OpenAPI document's pattern."""
_CURSOR = re.compile(CURSOR_PATTERN)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": seq})).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    """Return the sequence number a cursor points after (``invalid_parameter`` if malformed).

    A cursor is unpadded base64url (as the OpenAPI document's pattern says): other characters
    are refused, not skipped, and so is an empty cursor.
    """
    if not cursor:
        raise BatchError(
            "invalid_parameter", "Malformed cursor: empty (omit it for the first page)"
        )
    if not _CURSOR.fullmatch(cursor):
        raise BatchError("invalid_parameter", "Malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = orjson.loads(raw)["after"]
    except (binascii.Error, ValueError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise BatchError("invalid_parameter", "Malformed cursor") from exc
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise BatchError("invalid_parameter", "Malformed cursor")
    return after


def _gunzip_capped(source: Path, target: Path, cap: int) -> None:
    """Decompress *source* into *target*, failing once more than *cap* bytes come out."""
    written = 0
    try:
        with gzip.open(source, "rb") as src, target.open("wb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > cap:
                    msg = f"The decompressed file exceeds the {cap // 1_000_000} MB limit"
                    raise _JobFailedError("file_too_large", msg)
                dst.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        msg = f"The file is not a valid gzip-compressed CSV: {exc}"
        raise _JobFailedError("invalid_file_format", msg) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
