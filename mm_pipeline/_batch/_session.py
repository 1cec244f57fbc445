"""Batch operations over an open session: list, submit (idempotent, adopting), wait, download.

:class:`BatchSession` does the work over an open :class:`~mm_pipeline._session.Session`, so the
batch route shares the session of a ranking call; :class:`~mm_pipeline.BatchClient`
(``client.batch``, in ``_client.py``) opens a session per call around it. The job model and the
derived references are in ``_job.py``; downloads (verified, cached, counted) in ``_download.py``
over the result cache of ``_cache.py``.

Safety rules, because a batch job is expensive and download slots are few:

- **One job per piece of work.** The ``client_reference`` and the ``Idempotency-Key`` are derived
  from the file's SHA-256 (and the caller's reference), once, before any retry. Before
  submitting, the account's jobs are listed (every page) and a PROCESSING or COMPLETED job with
  that reference is adopted instead. A FAILED one is not: the next attempt gets a new key (the
  key counts the failed attempts), so a resubmission is possible and still deterministic.
- **409 active_job_exists is never retried blindly**: if the active job carries our reference it
  is adopted; otherwise the other job is waited for (with backoff, up to a deadline), then a clear
  error names it.
- **Downloads are verified and cached**, a slot spent only when storage is proved
  (:mod:`mm_pipeline._batch._download`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from mm_pipeline._batch._download import ResultDownloads
from mm_pipeline._batch._files import check_upload_header, sha256_file
from mm_pipeline._batch._job import (
    JOBS_PATH,
    BatchJob,
    JobStatusFilter,
    adoptable,
    idempotency_key,
    work_reference,
)
from mm_pipeline._exceptions import BatchError, BatchTimeoutError, ConflictError, InvalidInputError
from mm_pipeline._progress import progress_bar
from mm_pipeline._redact import get_logger, redact

if TYPE_CHECKING:
    from mm_pipeline._session import Session

__all__ = ["DEFAULT_ACTIVE_JOB_TIMEOUT", "DEFAULT_WAIT_TIMEOUT", "BatchSession"]

log = get_logger("mm_pipeline.batch")

DEFAULT_WAIT_TIMEOUT: Final = 6 * 3600.0
"""Seconds :meth:`BatchClient.wait` polls a job before giving up (overall, not per request)."""
DEFAULT_ACTIVE_JOB_TIMEOUT: Final = 3600.0
"""Seconds a submit waits for another client's active job to finish (409 active_job_exists)."""

_MAX_PAGES: Final = 10_000


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
        An open :class:`~mm_pipeline._session.Session`.
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
    _results: ResultDownloads = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Set up downloads through the result cache of ``cache_dir``."""
        self._results = ResultDownloads(session=self.session, cache_dir=self.cache_dir)

    @property
    def downloads(self) -> int:
        """Download requests sent (each spends a slot)."""
        return self._results.requests

    @property
    def cache_hits(self) -> int:
        """Results served from the cache (no slot spent)."""
        return self._results.cache_hits

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
            found = adoptable(ours)
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

    async def download(
        self, job_id: str, dest: Path | None = None, *, item_count: int | None = None
    ) -> Path:
        """Return a verified copy of the job's result file (:meth:`ResultDownloads.download`)."""
        return await self._results.download(job_id, dest, item_count=item_count)


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


def _check_gzip(path: Path) -> None:
    with Path(path).open("rb") as handle:
        magic = handle.read(2)
    if magic != b"\x1f\x8b":
        raise InvalidInputError(
            f"{Path(path).name} is not gzip-compressed: the batch API accepts .csv.gz files only"
        )


_idempotency_key = idempotency_key  # submit() has a parameter of that name


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
