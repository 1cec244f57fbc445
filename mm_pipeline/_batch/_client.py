"""The public face of the batch API: :class:`BatchClient` (``client.batch``).

Each operation is written once, as a coroutine method that opens a session of its own and runs
one :class:`~mm_pipeline._batch._session.BatchSession` operation in it; the blocking twin is
generated from it by :func:`_blocking` (same parameters, same docstring, run through
:func:`~mm_pipeline._sync.run_sync`, which also works inside a running loop such as Jupyter's).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import os
import tempfile
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import polars as pl

from mm_pipeline._batch._files import DEFAULT_MAX_FILE_BYTES, write_batch_files
from mm_pipeline._batch._job import BatchJob, JobStatusFilter
from mm_pipeline._batch._session import (
    DEFAULT_ACTIVE_JOB_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    BatchSession,
)
from mm_pipeline._exceptions import InvalidInputError
from mm_pipeline._frames import ROW
from mm_pipeline._normalize import Prepared, prepare
from mm_pipeline._sync import run_sync

if TYPE_CHECKING:
    from mm_pipeline._session import SessionSource

__all__ = ["BatchClient"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")


def _blocking(
    method: Callable[Concatenate[BatchClient, _P], Coroutine[Any, Any, _R]], name: str
) -> Callable[Concatenate[BatchClient, _P], _R]:
    """Make the blocking twin ``name`` of an async ``BatchClient`` method (its doc included).

    The async method's docstring documents both; its first line is kept for the twin.
    """

    @functools.wraps(method)
    def blocking(self: BatchClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return run_sync(lambda: method(self, *args, **kwargs))

    blocking.__name__ = name
    blocking.__qualname__ = f"BatchClient.{name}"
    return blocking


class BatchClient:
    """Batch jobs of one account: submit, status, list, wait, download (``client.batch``).

    Every method opens its own connection pool. Each is written once, async (``asubmit``,
    ``astatus``, ``alist``, ``await_job``, ``adownload``); its blocking twin (``submit``,
    ``status``, ``list``, ``wait``, ``download``) is made from it by :func:`_blocking`.

    Parameters
    ----------
    client
        The :class:`~mm_pipeline.MarketMatchClient` (key, base URL, retries).
    cache_dir
        Where verified result files are kept (default ``~/.cache/mm_pipeline/batch``, see
        ``$MM_PIPELINE_CACHE_DIR``).
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
        client: SessionSource,
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

    # -- written once: async; the blocking twins follow each method ---------------------------

    async def asubmit(
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
        is adopted (``job.adopted`` is true) instead of submitting again. ``asubmit`` is the
        coroutine, ``submit`` its blocking twin.

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
                file = files[0]
                return await self._run(
                    lambda s: s.submit(
                        file.path,
                        sha256=file.sha256,
                        client_reference=client_reference,
                        webhook_url=webhook_url,
                        webhook_secret=webhook_secret,
                        idempotency_key=idempotency_key,
                    )
                )
        if not isinstance(path_or_frame, str | os.PathLike):
            raise TypeError(
                "submit takes the path of a .csv.gz file or a polars DataFrame/LazyFrame, got "
                f"{type(path_or_frame)!r}"
            )
        path = Path(path_or_frame)
        return await self._run(
            lambda s: s.submit(
                path,
                client_reference=client_reference,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                idempotency_key=idempotency_key,
            )
        )

    submit = _blocking(asubmit, "submit")

    async def astatus(self, job_id: str) -> BatchJob:
        """Return the job's current status (:class:`NotFoundError` if not this account's)."""
        return await self._run(lambda s: s.status(job_id))

    status = _blocking(astatus, "status")

    async def alist(
        self, *, status: JobStatusFilter = "all", rows: int = 100
    ) -> builtins.list[BatchJob]:
        """Return the account's jobs, newest first, following every ``next_cursor``.

        Parameters
        ----------
        status
            ``"all"``, ``"active"``, ``"completed"`` or ``"failed"``.
        rows
            Page size (1 to 100); every page is fetched either way.
        """
        return await self._run(lambda s: s.list(status=status, rows=rows))

    list = _blocking(alist, "list")

    async def await_job(
        self,
        job_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
        progress: bool | None = None,
    ) -> BatchJob:
        """Poll until the job ends (backoff from ``poll_interval`` to ``max_poll_interval``).

        ``await_job`` is the coroutine (``await`` is a keyword), ``wait`` its blocking twin.

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
        return await self._run(lambda s: s.wait(job_id, timeout=timeout, progress=progress))

    wait = _blocking(await_job, "wait")

    async def await_(
        self,
        job_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
        progress: bool | None = None,
    ) -> BatchJob:
        """Wait for the job: the deprecated name of :meth:`await_job`, kept for existing callers."""
        warnings.warn(
            "BatchClient.await_ is deprecated; use BatchClient.await_job",
            DeprecationWarning,
            stacklevel=2,
        )
        return await self.await_job(job_id, timeout=timeout, progress=progress)

    async def adownload(self, job_id: str, dest: Path | str | None = None) -> Path:
        """Download the job's result file, verified against ``X-File-Checksum``.

        A verified file is cached by job id, so asking again spends no download slot. A
        mismatched or cut-off download is retried while slots remain (with a
        :class:`BatchDownloadWarning` saying a slot was spent). Before asking the server, the
        cache folder must prove it can hold the file: it is created, a ``.part`` file of this
        process is created in it, and its free space is checked. Other processes sharing the
        cache wait for a download in progress (a per-job file lock) and then read its verified
        copy. ``adownload`` is the coroutine, ``download`` its blocking twin.

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
        target = Path(dest) if dest is not None else None
        return await self._run(lambda s: s.download(job_id, target))

    download = _blocking(adownload, "download")


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
