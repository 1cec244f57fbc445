"""Batch jobs: submit (idempotent, adopting earlier jobs), list, status, wait, download.

:class:`BatchClient` (``client.batch``) is the public face; every method opens a session of its
own, and has an ``a``-prefixed async twin. :class:`BatchSession` does the work over an open
:class:`~mm_pipeline._client.Session`, so the batch route shares the session of a ranking call.

Safety rules, because a batch job is expensive and download slots are few:

- **One job per piece of work.** The ``client_reference`` and the ``Idempotency-Key`` are derived
  from the file's SHA-256 (and the caller's reference), once, before any retry. Before
  submitting, the account's jobs are listed (every page) and a PROCESSING or COMPLETED job with
  that reference is adopted instead. A FAILED one is not: the next attempt gets a new key (the
  key counts the failed attempts), so a resubmission is possible and still deterministic.
- **409 active_job_exists is never retried blindly**: if the active job carries our reference it
  is adopted; otherwise the other job is waited for (with backoff, up to a deadline), then a clear
  error names it.
- **Downloads are verified and cached.** The body is streamed to disk while hashing and compared
  with ``X-File-Checksum``; a mismatch, a cut-off body or one outlasting its deadline is retried
  while slots remain (with a warning that a slot was spent). A verified file is kept under the
  cache directory keyed by job id, so a rerun spends no slot; without a slot and without a cached
  copy the error names the job.
- **Storage before spending, one download per job.** The cache proves it can hold the file before
  a slot is spent, and a per-job file lock lets one process of many sharing the cache download
  while the others wait for its verified copy (:mod:`mm_pipeline._download_cache`).
"""

from __future__ import annotations

import asyncio
import builtins
import gzip
import hashlib
import os
import shutil
import tempfile
import time
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeVar

import httpx
import polars as pl

from mm_pipeline._batch_io import (
    DEFAULT_MAX_FILE_BYTES,
    check_upload_header,
    sha256_file,
    write_batch_files,
)
from mm_pipeline._download_cache import CacheEntry, Claim, claim, expected_result_bytes
from mm_pipeline._exceptions import (
    BatchError,
    BatchJobFailed,
    BatchTimeoutError,
    ChecksumMismatchError,
    ConflictError,
    DownloadError,
    InvalidInputError,
    PermissionDeniedError,
    TransportError,
)
from mm_pipeline._frames import ROW
from mm_pipeline._normalize import Prepared, prepare
from mm_pipeline._progress import progress_bar
from mm_pipeline._redact import get_logger, redact, scrub
from mm_pipeline._sync import run_sync

if TYPE_CHECKING:
    from mm_pipeline._client import MarketMatchClient, Session

__all__ = [
    "DEFAULT_ACTIVE_JOB_TIMEOUT",
    "DEFAULT_WAIT_TIMEOUT",
    "JOBS_PATH",
    "BatchClient",
    "BatchDownloadWarning",
    "BatchJob",
    "BatchSession",
    "JobStatusFilter",
    "default_cache_dir",
    "idempotency_key",
    "work_reference",
]

log = get_logger("mm_pipeline.batch")

JOBS_PATH: Final = "/v2/batch/marketmatch/rank/jobs"
DEFAULT_WAIT_TIMEOUT: Final = 6 * 3600.0
"""Seconds :meth:`BatchClient.wait` polls a job before giving up (overall, not per request)."""
DEFAULT_ACTIVE_JOB_TIMEOUT: Final = 3600.0
"""Seconds a submit waits for another client's active job to finish (409 active_job_exists)."""

JobStatusFilter = Literal["all", "active", "completed", "failed"]
_T = TypeVar("_T")
_REFERENCE_MAX: Final = 255
_MAX_PAGES: Final = 10_000
_BLOCK: Final = 1 << 20
_MAX_DOWNLOADS: Final = 3  # published; used when the server sends no X-Remaining-Downloads


class BatchDownloadWarning(UserWarning):
    """A download failed verification or was cut off, and a download slot was spent on it."""


@dataclass(frozen=True, kw_only=True)
class BatchJob:
    """A batch job as the API reports it (tolerant of missing optional and extra fields).

    Parameters
    ----------
    job_id, status
        The job's id and ``PROCESSING``/``COMPLETED``/``FAILED``.
    progress_percent, item_count, successful_count, failed_count
        Progress and counts, when the API sent them.
    client_reference, created_at, completed_at
        As sent.
    download_available, download_count, max_downloads, remaining_downloads
        Download slots (completed jobs).
    error_code, error_message
        Why the job failed (failed jobs).
    adopted
        True when this client found the job (submitted earlier for the same work) instead of
        creating it.
    raw
        The whole decoded JSON object.

    Examples
    --------
    >>> job = BatchJob.from_json({"job_id": "j1", "status": "processing", "new_field": 1})
    >>> job.status, job.is_terminal, job.item_count
    ('PROCESSING', False, None)
    """

    job_id: str
    status: str
    progress_percent: int | None = None
    item_count: int | None = None
    successful_count: int | None = None
    failed_count: int | None = None
    client_reference: str | None = None
    created_at: str | None = None
    completed_at: str | None = None
    download_available: bool | None = None
    download_count: int | None = None
    max_downloads: int | None = None
    remaining_downloads: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    adopted: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchJob:
        """Build a job from a status object (unknown fields stay in ``raw``).

        Server text is scrubbed of the API key here, where it enters: an error message that
        echoes the key must not reach exceptions, ``failed`` frames or logs.
        """
        data = scrub(dict(data))
        job_id = data.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise BatchError(f"the API returned a job without a job_id: {sorted(data)}")

        def num(name: str) -> int | None:
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return int(value)

        def text(name: str) -> str | None:
            value = data.get(name)
            return value if isinstance(value, str) else None

        available = data.get("download_available")
        return cls(
            job_id=job_id,
            status=str(data.get("status") or "").upper(),
            progress_percent=num("progress_percent"),
            item_count=num("item_count"),
            successful_count=num("successful_count"),
            failed_count=num("failed_count"),
            client_reference=text("client_reference"),
            created_at=text("created_at"),
            completed_at=text("completed_at"),
            download_available=available if isinstance(available, bool) else None,
            download_count=num("download_count"),
            max_downloads=num("max_downloads"),
            remaining_downloads=num("remaining_downloads"),
            error_code=text("error_code"),
            error_message=text("error_message"),
            raw=dict(data),
        )

    @property
    def is_terminal(self) -> bool:
        """True once the job is COMPLETED or FAILED (it never changes again)."""
        return self.status in ("COMPLETED", "FAILED")

    def raise_for_failure(self) -> BatchJob:
        """Return the job, or raise :class:`BatchJobFailed` if it ended FAILED."""
        if self.status == "FAILED":
            code = self.error_code or "batch_job_failed"
            raise BatchJobFailed(
                f"batch job {self.job_id} FAILED: {code}: {self.error_message or 'no message'}",
                job_id=self.job_id,
                error_code=code,
                error_message=self.error_message,
            )
        return self


def work_reference(file_sha256: str, client_reference: str | None = None) -> str:
    """Derive the ``client_reference`` of a piece of work from its file's content.

    Parameters
    ----------
    file_sha256
        Hex SHA-256 of the upload file.
    client_reference
        The caller's own reference, kept as a prefix (shortened to fit 255 characters).

    Examples
    --------
    >>> work_reference("ab" * 32)
    'mm-abababababababababababababababab'
    >>> work_reference("ab" * 32, "nightly-2026-11-28")
    'nightly-2026-11-28:mm-abababababababababababababababab'
    """
    suffix = f"mm-{file_sha256[:32]}"
    if not client_reference:
        return suffix
    room = _REFERENCE_MAX - len(suffix) - 1
    return f"{client_reference[:room]}:{suffix}"


def idempotency_key(reference: str, attempt: int = 0) -> str:
    """Derive the ``Idempotency-Key`` of a submission: the reference and the attempt number.

    ``attempt`` is the number of earlier jobs for the same work that ended FAILED, so a retried
    or rerun submit repeats the key, while a resubmission after a failure gets a new one.

    Examples
    --------
    >>> idempotency_key("mm-abc") == idempotency_key("mm-abc")
    True
    >>> idempotency_key("mm-abc", 1) != idempotency_key("mm-abc", 0)
    True
    """
    return "mm-" + hashlib.sha256(f"{reference}\n{attempt}".encode()).hexdigest()


def default_cache_dir() -> Path:
    """Where verified result files are kept by default.

    ``$MM_PIPELINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/mm_pipeline/batch``, else
    ``~/.cache/mm_pipeline/batch``.
    """
    explicit = os.environ.get("MM_PIPELINE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mm_pipeline" / "batch"


def _header_int(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _expected_checksum(headers: httpx.Headers) -> str | None:
    header = headers.get("x-file-checksum")
    if not header:
        return None
    value = str(header).strip().lower()
    for prefix in ("sha256=", "sha256:", "sha-256="):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    return value


class _JobProgress:
    """A progress bar over a job's ``progress_percent`` (shown per :func:`progress_bar`)."""

    def __init__(self, enabled: bool | None, job_id: str) -> None:
        self._bar = progress_bar(enabled, total=100, desc=f"batch job {job_id[:8]}", unit="%")

    def update(self, job: BatchJob) -> None:
        percent = 100 if job.status == "COMPLETED" else (job.progress_percent or 0)
        self._bar.update_to(max(0, min(100, percent)))
        if job.item_count is not None:
            self._bar.set_postfix(f"{job.item_count:,} rows, {job.status.lower()}")

    def close(self) -> None:
        self._bar.close()


def _time_left(first: tuple[float, int], now: tuple[float, int]) -> float | None:
    """Estimate a job's remaining seconds from two ``(time, percent)`` polls (None: unknown).

    >>> _time_left((10.0, 0), (13.0, 60)), _time_left((10.0, 0), (13.0, 0))
    (2.0, None)
    """
    (start, done_then), (at, done) = first, now
    if not done_then < done < 100:
        return None
    return (at - start) * (100 - done) / (done - done_then)


@dataclass(kw_only=True)
class BatchSession:
    """Batch operations over an open session (used by :class:`BatchClient` and the route).

    Parameters
    ----------
    session
        An open :class:`~mm_pipeline._client.Session`.
    cache_dir
        Where verified result files are kept (default :func:`default_cache_dir`).
    poll_interval, max_poll_interval
        The first and the largest pause between status polls, in seconds (the pause grows by
        half each time).
    active_job_timeout
        How long a submit waits for another client's active job before giving up.
    """

    session: Session
    cache_dir: Path | None = None
    poll_interval: float = 1.0
    max_poll_interval: float = 20.0
    active_job_timeout: float = DEFAULT_ACTIVE_JOB_TIMEOUT
    #: Download requests sent (each spends a slot) and results served from the cache.
    downloads: int = field(default=0, init=False)
    cache_hits: int = field(default=0, init=False)

    # -- read ---------------------------------------------------------------------------------

    async def status(self, job_id: str) -> BatchJob:
        """Return the job's current status."""
        response = await self.session.request("GET", f"{JOBS_PATH}/{job_id}")
        return BatchJob.from_json(_json_object(response))

    async def iter_jobs(
        self, *, status: JobStatusFilter = "all", rows: int = 100
    ) -> AsyncIterator[BatchJob]:
        """Yield the account's jobs page by page, following ``next_cursor`` to the end."""
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            params: dict[str, str | int] = {"status": status, "rows": rows}
            if cursor is not None:
                params["cursor"] = cursor
            page = _json_object(await self.session.request("GET", JOBS_PATH, params=params))
            for item in page.get("jobs") or []:
                if isinstance(item, Mapping):
                    yield BatchJob.from_json(item)
            following = page.get("next_cursor")
            if not isinstance(following, str) or not following or following in seen:
                return
            seen.add(following)
            cursor = following
        raise BatchError(f"listing jobs did not end after {_MAX_PAGES} pages")

    async def list(self, *, status: JobStatusFilter = "all", rows: int = 100) -> list[BatchJob]:
        """Return every job of the account with that status (all pages)."""
        return [job async for job in self.iter_jobs(status=status, rows=rows)]

    # -- submit -------------------------------------------------------------------------------

    async def submit(
        self,
        path: Path,
        *,
        sha256: str | None = None,
        client_reference: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        idempotency_key: str | None = None,
        adopt: bool = True,
    ) -> BatchJob:
        """Submit a ``.csv.gz`` file, or adopt the job already running or done for it.

        See :meth:`BatchClient.submit`.
        """
        _check_gzip(path)
        await asyncio.to_thread(check_upload_header, path)  # columns, before any upload
        digest = sha256 if sha256 else await asyncio.to_thread(sha256_file, path)
        reference = work_reference(digest, client_reference)
        failed_attempts = 0
        if adopt:
            ours = [j for j in await self.list() if j.client_reference == reference]
            found = _adoptable(ours)
            if found is not None:
                log.info("adopting batch job %s (%s) for this work", found.job_id, found.status)
                return replace(found, adopted=True)
            failed_attempts = sum(1 for j in ours if j.status == "FAILED")
        key = idempotency_key or _idempotency_key(reference, failed_attempts)
        deadline = time.monotonic() + self.active_job_timeout
        pause = self.poll_interval
        while True:
            try:
                return await self._post(path, reference, key, webhook_url, webhook_secret)
            except ConflictError as exc:
                if exc.error_code != "active_job_exists":
                    raise
            # Never re-POST blindly: adopt the active job if it is ours, else wait until no
            # job is active (polling the list with backoff), then submit again.
            while True:
                active = await self.list(status="active")
                mine = [j for j in active if j.client_reference == reference]
                if mine:
                    log.info("adopting active batch job %s for this work", mine[0].job_id)
                    return replace(mine[0], adopted=True)
                left = deadline - time.monotonic()
                if left <= 0:
                    others = ", ".join(j.job_id for j in active) or "unknown"
                    raise BatchError(
                        f"another batch job ({others}) is active on this account and did not "
                        f"finish within {self.active_job_timeout:g} s; one job may run at a "
                        "time, so submit again once it has finished"
                    )
                if active:
                    log.info(
                        "another batch job (%s) is active; waiting before submitting",
                        ", ".join(j.job_id for j in active),
                    )
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 1.5, self.max_poll_interval)
                if not active:
                    break

    async def _post(
        self,
        path: Path,
        reference: str,
        key: str,
        webhook_url: str | None,
        webhook_secret: str | None,
    ) -> BatchJob:
        data = {"client_reference": reference}
        if webhook_url is not None:
            data["webhook_url"] = webhook_url
        if webhook_secret is not None:
            data["webhook_secret"] = webhook_secret
        with path.open("rb") as handle:
            response = await self.session.request(
                "POST",
                JOBS_PATH,
                files={"file": (path.name, handle, "application/gzip")},
                data=data,
                headers={"Idempotency-Key": key},
                transfer_bytes=os.fstat(handle.fileno()).st_size,
            )
        job = BatchJob.from_json(_json_object(response))
        log.info("submitted batch job %s (reference %s)", job.job_id, reference)
        return job

    # -- wait ---------------------------------------------------------------------------------

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
        progress: bool | None = None,
    ) -> BatchJob:
        """Poll until the job is terminal, with backoff, under one overall deadline.

        The pause grows from ``poll_interval`` to ``max_poll_interval``; it is cut short when
        the job's ``progress_percent`` says it will end sooner (at the rate seen since the
        first poll), but no shorter than ``poll_interval / 5``, a floor that doubles with
        every such early poll. So a short job is not waited on long after it ended, and a job
        stuck at 99% is not polled in a tight loop.

        Returns the COMPLETED job; raises :class:`BatchJobFailed` for a FAILED one and
        :class:`BatchTimeoutError` when ``timeout`` seconds pass first: the deadline bounds the
        whole wait, a status request that is slow to answer (or retried) included.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        timer = asyncio.timeout_at(deadline)
        pause = self.poll_interval
        floor = self.poll_interval / 5
        first: tuple[float, int] | None = None
        job: BatchJob | None = None
        bar = _JobProgress(progress, job_id)
        try:
            async with timer:  # bounds the whole wait, a slow status call included
                while True:
                    job = await self.status(job_id)
                    bar.update(job)
                    if job.is_terminal:
                        return job.raise_for_failure()
                    now = loop.time()
                    left = deadline - now
                    if left <= 0:
                        raise _wait_timeout(job_id, job, timeout)
                    seen = (now, job.progress_percent or 0)
                    first = first or seen
                    sleep = min(pause, left)
                    eta = _time_left(first, seen)
                    if eta is not None and eta < sleep:
                        sleep = max(eta, min(floor, sleep))
                        floor *= 2
                    await asyncio.sleep(sleep)
                    pause = min(pause * 1.5, self.max_poll_interval)
        except TimeoutError:
            if not timer.expired():
                raise
            raise _wait_timeout(job_id, job, timeout) from None
        finally:
            bar.close()

    # -- download -----------------------------------------------------------------------------

    def _entry(self, job_id: str) -> CacheEntry:
        return CacheEntry(self.cache_dir or default_cache_dir(), job_id)

    def cached_path(self, job_id: str) -> Path:
        """Where the verified result of ``job_id`` is (or will be) cached."""
        return self._entry(job_id).path

    def cached(self, job_id: str) -> Path | None:
        """Return the cached verified result of ``job_id``, if present and intact."""
        return self._entry(job_id).verified()

    async def download(
        self, job_id: str, dest: Path | None = None, *, item_count: int | None = None
    ) -> Path:
        """Return a verified copy of the job's result file (cached: a rerun spends no slot).

        ``item_count`` (the job's, when known) sizes the free-space check made before any slot
        is spent. See :meth:`BatchClient.download`.
        """
        entry = self._entry(job_id)
        path = await asyncio.to_thread(entry.verified)
        if path is None:
            path = await self._fetch(entry, expected_result_bytes(item_count))
        else:
            self._hit(job_id)
        if dest is None:
            return path
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / path.name
        if dest.resolve() != path.resolve():
            dest.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copyfile, path, dest)
        return dest

    def _hit(self, job_id: str) -> None:
        self.cache_hits += 1
        log.info("using the cached result of batch job %s (no download slot spent)", job_id)

    async def _fetch(self, entry: CacheEntry, expected_bytes: int) -> Path:
        """Download into the cache under the job's lock (see :mod:`mm_pipeline._download_cache`)."""
        job_id = entry.job_id
        async with claim(entry, expected_bytes=expected_bytes) as owned:
            if owned.ready is not None:  # another process downloaded it while we waited
                self._hit(job_id)
                return owned.ready
            attempt = 0
            while True:
                attempt += 1
                try:
                    got = await self._fetch_once(job_id, owned)
                except PermissionDeniedError as exc:
                    if exc.error_code == "download_limit_exceeded":
                        raise DownloadError(
                            f"batch job {job_id}: every download slot has been used and there "
                            f"is no verified copy in the cache ({entry.folder}); the result "
                            "cannot be downloaded again",
                            job_id=job_id,
                        ) from None
                    raise
                if got.problem is None:
                    path = await asyncio.to_thread(owned.commit, got.actual)
                    log.info("downloaded and verified the result of batch job %s", job_id)
                    return path
                left = "unknown" if got.remaining is None else str(got.remaining)
                message = (
                    f"download {attempt} of batch job {job_id} failed verification "
                    f"({got.problem}); a download slot was spent; slots left: {left}"
                )
                if got.remaining == 0 or (got.remaining is None and attempt >= _MAX_DOWNLOADS):
                    message += "; no slot remains to retry"
                    if got.expected is not None and got.actual and got.actual != got.expected:
                        raise ChecksumMismatchError(
                            message, job_id=job_id, expected=got.expected, actual=got.actual
                        )
                    raise DownloadError(message, job_id=job_id)
                warnings.warn(message + "; retrying", BatchDownloadWarning, stacklevel=2)
                log.warning("%s; retrying", message)

    async def _fetch_once(self, job_id: str, owned: Claim) -> _Attempt:
        """Stream one download into the claim's ``.part`` file while hashing, and judge it.

        A body cut off or outlasting its deadline is an unusable attempt (its slot is spent);
        a storage failure raises :class:`CacheStorageError` at once.
        """
        digest = hashlib.sha256()
        size = 0
        remaining: int | None = None
        expected: str | None = None
        length: int | None = None
        granted = False
        self.downloads += 1
        try:
            async with self.session.stream("POST", f"{JOBS_PATH}/{job_id}/download") as response:
                granted = True
                headers = response.headers
                remaining = _header_int(headers, "x-remaining-downloads")
                expected = _expected_checksum(headers)
                # Content-Length counts encoded bytes; the checksum is over the decoded file.
                length = (
                    None
                    if "content-encoding" in headers
                    else _header_int(headers, "content-length")
                )
                with owned.open() as out:  # truncated: an earlier attempt's bytes are gone
                    if length is not None:
                        owned.check_space(length, spent=True)
                    async for block in response.aiter_bytes(_BLOCK):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
        except (httpx.TransportError, TransportError) as exc:
            if not granted:
                raise
            kind = getattr(exc, "kind", type(exc).__name__)
            cut = f"the body was cut off after {size} bytes ({kind})"
            return _Attempt(cut, remaining, expected, "")
        actual = digest.hexdigest()
        if length is not None and size != length:
            return _Attempt(f"got {size} of {length} bytes", remaining, expected, actual)
        if expected is None:
            problem = await asyncio.to_thread(_gzip_problem, owned.part)
            if problem is None:
                log.warning("batch job %s: no X-File-Checksum header; gzip check passed", job_id)
            return _Attempt(problem, remaining, expected, actual)
        if actual != expected:
            mismatch = f"checksum {actual[:12]}… does not match {expected[:12]}…"
            return _Attempt(mismatch, remaining, expected, actual)
        return _Attempt(None, remaining, expected, actual)


def _wait_timeout(job_id: str, job: BatchJob | None, timeout: float) -> BatchTimeoutError:
    state = (
        "did not answer a status request in time"
        if job is None
        else f"is still {job.status} ({job.progress_percent or 0}% done)"
    )
    return BatchTimeoutError(
        f"batch job {job_id} {state} after {timeout:g} s; it keeps running on the server: "
        "wait again or rerun later to adopt it",
        job_id=job_id,
        timeout=timeout,
    )


class _Attempt(NamedTuple):
    """The outcome of one download: why it is unusable (None: verified), and its facts."""

    problem: str | None
    remaining: int | None
    expected: str | None
    actual: str


def _gzip_problem(path: Path) -> str | None:
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(_BLOCK):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"the file is not a complete gzip stream ({type(exc).__name__})"
    return None


def _check_gzip(path: Path) -> None:
    with Path(path).open("rb") as handle:
        magic = handle.read(2)
    if magic != b"\x1f\x8b":
        raise InvalidInputError(
            f"{Path(path).name} is not gzip-compressed: the batch API accepts .csv.gz files only"
        )


def _submittable(prepared: Prepared) -> pl.DataFrame:
    """Return the pairs to submit; refuse a frame with none, or with pairs lacking a zip."""
    pairs = prepared.pairs
    if pairs.is_empty():
        raise InvalidInputError("nothing to submit: the frame has no rows")
    no_zip = pairs.filter(pl.col("zip").is_null()).get_column(ROW)
    if no_zip.len():
        shown = ", ".join(str(row) for row in no_zip.head(10).to_list())
        more = f" and {no_zip.len() - 10:,} more" if no_zip.len() > 10 else ""
        raise InvalidInputError(
            f"the batch API needs a zip for every pair; rows without one: {shown}{more} "
            "(rank such pairs with mm.rank_dealers(), which sends them online)"
        )
    return pairs


_idempotency_key = idempotency_key  # submit() has a parameter of that name


def _adoptable(jobs: builtins.list[BatchJob]) -> BatchJob | None:
    """Prefer a COMPLETED job (newest first as listed), else a PROCESSING one."""
    for wanted in ("COMPLETED", "PROCESSING"):
        for job in jobs:
            if job.status == wanted:
                return job
    return None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise BatchError(
            f"the API answered {response.request.method} {redact(str(response.request.url))} "
            f"with a body that is not a JSON object (HTTP {response.status_code})"
        )
    return data


class BatchClient:
    """Batch jobs of one account: submit, status, list, wait, download (``client.batch``).

    Every method opens its own connection pool; each has an async twin prefixed with ``a``.

    Parameters
    ----------
    client
        The :class:`~mm_pipeline.MarketMatchClient` (key, base URL, retries).
    cache_dir
        Where verified result files are kept (default :func:`default_cache_dir`).
    poll_interval, max_poll_interval
        First and largest pause between status polls (seconds).
    active_job_timeout
        How long a submit waits for another client's active job (409) before giving up.

    Examples
    --------
    >>> import mm_pipeline as mm
    >>> jobs = mm.MarketMatchClient(api_key="mc_test_doc", base_url="http://127.0.0.1:9").batch
    >>> type(jobs).__name__
    'BatchClient'
    """

    def __init__(
        self,
        client: MarketMatchClient,
        *,
        cache_dir: Path | str | None = None,
        poll_interval: float = 1.0,
        max_poll_interval: float = 20.0,
        active_job_timeout: float = DEFAULT_ACTIVE_JOB_TIMEOUT,
    ) -> None:
        if poll_interval <= 0 or max_poll_interval < poll_interval:
            raise ValueError("need 0 < poll_interval <= max_poll_interval")
        self._client = client
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.active_job_timeout = active_job_timeout

    def __repr__(self) -> str:
        return f"BatchClient(base_url={self._client.base_url!r})"

    def configure(self, **changes: Any) -> BatchClient:
        """Return a copy with other options (``cache_dir``, ``poll_interval``, ...)."""
        options: dict[str, Any] = {
            "cache_dir": self.cache_dir,
            "poll_interval": self.poll_interval,
            "max_poll_interval": self.max_poll_interval,
            "active_job_timeout": self.active_job_timeout,
        }
        unknown = set(changes) - set(options)
        if unknown:
            raise TypeError(f"unknown BatchClient option(s): {', '.join(sorted(unknown))}")
        return BatchClient(self._client, **{**options, **changes})

    async def _run(self, work: Callable[[BatchSession], Awaitable[_T]]) -> _T:
        async with self._client.session() as session:
            return await work(
                BatchSession(
                    session=session,
                    cache_dir=self.cache_dir,
                    poll_interval=self.poll_interval,
                    max_poll_interval=self.max_poll_interval,
                    active_job_timeout=self.active_job_timeout,
                )
            )

    # -- async --------------------------------------------------------------------------------

    async def asubmit(
        self,
        path_or_frame: Path | str | pl.DataFrame | pl.LazyFrame,
        *,
        client_reference: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchJob:
        """Async :meth:`submit`."""
        if isinstance(path_or_frame, pl.DataFrame | pl.LazyFrame):
            # The same normalisation and validation as rank_dealers (InvalidInputError names
            # the bad rows); exact duplicate rows are sent once.
            pairs = _submittable(prepare(path_or_frame, endpoint="dealers", on_invalid="raise"))
            with tempfile.TemporaryDirectory(prefix="mm-batch-") as tmp:
                files = await asyncio.to_thread(write_batch_files, pairs, Path(tmp), stem="upload")
                if len(files) > 1:
                    raise ValueError(
                        f"the frame needs {len(files)} files under the "
                        f"{DEFAULT_MAX_FILE_BYTES // 2**20} MB cap; rank it with "
                        "mm.rank_dealers(..., mode='batch'), which splits the work into jobs"
                    )
                return await self._submit(
                    files[0].path,
                    sha256=files[0].sha256,
                    client_reference=client_reference,
                    webhook_url=webhook_url,
                    webhook_secret=webhook_secret,
                    key=idempotency_key,
                )
        if not isinstance(path_or_frame, str | os.PathLike):
            raise TypeError(
                "submit takes the path of a .csv.gz file or a polars DataFrame/LazyFrame, got "
                f"{type(path_or_frame)!r}"
            )
        return await self._submit(
            Path(path_or_frame),
            sha256=None,
            client_reference=client_reference,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            key=idempotency_key,
        )

    async def _submit(
        self,
        path: Path,
        *,
        sha256: str | None,
        client_reference: str | None,
        webhook_url: str | None,
        webhook_secret: str | None,
        key: str | None,
    ) -> BatchJob:
        return await self._run(
            lambda s: s.submit(
                path,
                sha256=sha256,
                client_reference=client_reference,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                idempotency_key=key,
            )
        )

    async def astatus(self, job_id: str) -> BatchJob:
        """Async :meth:`status`."""
        return await self._run(lambda s: s.status(job_id))

    async def alist(
        self, *, status: JobStatusFilter = "all", rows: int = 100
    ) -> builtins.list[BatchJob]:
        """Async :meth:`list`."""
        return await self._run(lambda s: s.list(status=status, rows=rows))

    async def await_(
        self,
        job_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
        progress: bool | None = None,
    ) -> BatchJob:
        """Async :meth:`wait` (named ``await_`` because ``await`` is a keyword)."""
        return await self._run(lambda s: s.wait(job_id, timeout=timeout, progress=progress))

    async def adownload(self, job_id: str, dest: Path | str | None = None) -> Path:
        """Async :meth:`download`."""
        target = Path(dest) if dest is not None else None
        return await self._run(lambda s: s.download(job_id, target))

    # -- sync ---------------------------------------------------------------------------------

    def submit(
        self,
        path_or_frame: Path | str | pl.DataFrame | pl.LazyFrame,
        *,
        client_reference: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchJob:
        """Submit a ``.csv.gz`` file or a frame, or adopt the job already running for it.

        The reference and the ``Idempotency-Key`` are derived from the file's content (and
        ``client_reference``); a PROCESSING or COMPLETED job of this account with that reference
        is adopted (``job.adopted`` is true) instead of submitting again.

        Parameters
        ----------
        path_or_frame
            A gzip CSV file with ``vin,price,miles,source,zip``, or a polars DataFrame or
            LazyFrame with those columns (validated like ``rank_dealers`` input, then written
            to a temporary file).
        client_reference
            Your own tracking reference; the job's reference is ``"<yours>:mm-<content hash>"``.
        webhook_url, webhook_secret
            Where to notify when the job ends, and the secret that signs the notification
            (verify it with :func:`mm_pipeline.webhooks.verify`).
        idempotency_key
            Override the derived key (not needed normally).

        Returns
        -------
        BatchJob
            The new or adopted job.

        Raises
        ------
        InvalidInputError
            Before any request: a file that is not gzip, or a frame with invalid rows, no
            rows, or rows without a ``zip`` (each named).
        BatchError
            When another client's job stays active past the deadline.
        APIError
            For refused submissions (400 invalid file, 413 too large, ...).
        """
        return run_sync(
            lambda: self.asubmit(
                path_or_frame,
                client_reference=client_reference,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                idempotency_key=idempotency_key,
            )
        )

    def status(self, job_id: str) -> BatchJob:
        """Return the job's current status (:class:`NotFoundError` if not this account's)."""
        return run_sync(lambda: self.astatus(job_id))

    def list(self, *, status: JobStatusFilter = "all", rows: int = 100) -> builtins.list[BatchJob]:
        """Return the account's jobs, newest first, following every ``next_cursor``.

        Parameters
        ----------
        status
            ``"all"``, ``"active"``, ``"completed"`` or ``"failed"``.
        rows
            Page size (1 to 100); every page is fetched either way.
        """
        return run_sync(lambda: self.alist(status=status, rows=rows))

    def wait(
        self, job_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT, progress: bool | None = None
    ) -> BatchJob:
        """Poll until the job ends (backoff from ``poll_interval`` to ``max_poll_interval``).

        Parameters
        ----------
        job_id
            The job.
        timeout
            Overall deadline in seconds: it bounds the whole wait, status requests and their
            retries included.
        progress
            Show a progress bar (``None``: only in terminals and notebooks).

        Returns
        -------
        BatchJob
            The COMPLETED job.

        Raises
        ------
        BatchJobFailed
            The job ended FAILED (``error_code``/``error_message`` from the job).
        BatchTimeoutError
            The deadline passed first (the job keeps running on the server).
        """
        return run_sync(lambda: self.await_(job_id, timeout=timeout, progress=progress))

    def download(self, job_id: str, dest: Path | str | None = None) -> Path:
        """Download the job's result file, verified against ``X-File-Checksum``.

        A verified file is cached by job id, so asking again spends no download slot. A
        mismatched or cut-off download is retried while slots remain (with a
        :class:`BatchDownloadWarning` saying a slot was spent).

        Parameters
        ----------
        job_id
            A COMPLETED job.
        dest
            A file path or a directory to copy the result to; ``None`` returns the cached file.

        Returns
        -------
        pathlib.Path
            The verified file.

        Before asking the server, the cache folder must prove it can hold the file: it is created,
        a ``.part`` file of this process is created in it, and its free space is checked. Other
        processes sharing the cache wait for a download in progress (a per-job file lock) and
        then read its verified copy.

        Raises
        ------
        CacheStorageError
            The cache folder cannot be written or is full: raised before any slot is spent (or,
            when the disk fills during the download, after that one slot). Rerun with a usable
            ``cache_dir``.
        DownloadError
            No slot left and no cached copy, or every remaining slot failed verification
            (:class:`ChecksumMismatchError` for a checksum mismatch).
        """
        return run_sync(lambda: self.adownload(job_id, dest))
