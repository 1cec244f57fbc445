"""Result downloads: verified, cached, one per job, a slot spent only when storage is proved.

Rules, because download slots are few (three per job):

- **Verified.** The body is streamed to disk while hashing and compared with ``X-File-Checksum``
  (without one, the file must be a complete gzip stream); a mismatch, a cut-off body or one
  outlasting its deadline is retried while slots remain, with a :class:`BatchDownloadWarning`
  saying a slot was spent. Without a slot and without a cached copy the error names the job.
- **Cached.** A verified file is kept under the cache directory keyed by job id, so a rerun
  spends no slot.
- **Storage before spending, one download per job.** The cache proves it can hold the file before
  a slot is spent, and a per-job file lock lets one process of many sharing the cache download
  while the others wait for its verified copy (:mod:`mm_pipeline._batch._cache`).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import shutil
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

import httpx

from mm_pipeline._batch._cache import (
    CacheEntry,
    Claim,
    claim,
    default_cache_dir,
    expected_result_bytes,
)
from mm_pipeline._batch._job import JOBS_PATH
from mm_pipeline._exceptions import (
    ChecksumMismatchError,
    DownloadError,
    PermissionDeniedError,
    TransportError,
)
from mm_pipeline._redact import get_logger

if TYPE_CHECKING:
    from mm_pipeline._session import Session

__all__ = ["BatchDownloadWarning", "ResultDownloads"]

log = get_logger("mm_pipeline.batch")

_BLOCK: Final = 1 << 20
_MAX_DOWNLOADS: Final = 3  # published; used when the server sends no X-Remaining-Downloads


class BatchDownloadWarning(UserWarning):
    """A download failed verification or was cut off, and a download slot was spent on it."""


@dataclass(kw_only=True)
class ResultDownloads:
    """Verified, cached downloads of batch result files over an open session, counted.

    Files are kept under ``cache_dir`` (default :func:`default_cache_dir`).
    """

    session: Session
    cache_dir: Path | None = None
    #: Download requests sent (each spends a slot) and results served from the cache.
    requests: int = field(default=0, init=False)
    cache_hits: int = field(default=0, init=False)

    def _entry(self, job_id: str) -> CacheEntry:
        return CacheEntry(self.cache_dir or default_cache_dir(), job_id)

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
        """Download into the cache under the job's lock (see :mod:`mm_pipeline._batch._cache`)."""
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
        self.requests += 1
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


class _Attempt(NamedTuple):
    """The outcome of one download: why it is unusable (None: verified), and its facts."""

    problem: str | None
    remaining: int | None
    expected: str | None
    actual: str


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


def _gzip_problem(path: Path) -> str | None:
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(_BLOCK):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"the file is not a complete gzip stream ({type(exc).__name__})"
    return None
