"""The cache of verified batch result files: safe to share between processes, checked before use.

One folder holds, for a job whose file name is ``<job>.csv.gz``:

- ``<job>.csv.gz`` and ``<job>.csv.gz.sha256``: the verified result and its checksum (the file
  appears atomically, after its checksum);
- ``<job>.csv.gz.lock``: the job's lock (:mod:`filelock`), held by the one process downloading
  the job, so that others wait and then read its verified copy instead of spending a slot;
- ``<job>.csv.gz.<pid>.<random>.part``: a download in flight, owned by process ``<pid>``.

Rules, because a download spends one of a job's three slots:

- **Storage before spending.** :func:`claim` creates the folder and the process's own ``.part``
  file (exclusively) before it takes the job's lock, then checks the free space against the
  expected size; only then may the caller ask the server for the file. Any storage failure is
  one :class:`~mm_pipeline._exceptions.CacheStorageError` naming the folder and the cause.
- **One download per job.** A verified copy is read without the lock; otherwise the lock is taken
  (waiting while another process downloads) and the cache looked at again before downloading.
- **Nobody removes another's file.** A process removes only its own ``.part``; parts left by
  processes that no longer run are removed by the holder of the job's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final

import filelock

from mm_pipeline._batch_io import sha256_file
from mm_pipeline._exceptions import CacheStorageError
from mm_pipeline._redact import get_logger

__all__ = [
    "MIN_FREE_BYTES",
    "MIN_RESULT_BYTES_PER_ROW",
    "CacheEntry",
    "Claim",
    "claim",
    "expected_result_bytes",
]

log = get_logger("mm_pipeline.batch")

MIN_FREE_BYTES: Final = 1 << 20
"""Free bytes the cache folder must have, beyond the expected file, before a download is asked."""
MIN_RESULT_BYTES_PER_ROW: Final = 8
"""A lower bound of a result file's gzipped bytes per row (measured: 20 to 30)."""
_LOCK_POLL: Final = (0.05, 0.5)  # first and largest pause between tries of a held lock


def expected_result_bytes(item_count: int | None) -> int:
    """Return the least size a job's result file can have, from its ``item_count`` (0: unknown).

    >>> expected_result_bytes(1_000), expected_result_bytes(None)
    (8000, 0)
    """
    return max(0, item_count or 0) * MIN_RESULT_BYTES_PER_ROW


def _safe_name(job_id: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", job_id):
        return job_id
    return "job-" + hashlib.sha256(job_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheEntry:
    """Where one job's verified result lives in a cache folder.

    Examples
    --------
    >>> entry = CacheEntry(Path("/cache"), "770a9622")
    >>> entry.path.name, entry.lock_path.name
    ('770a9622.csv.gz', '770a9622.csv.gz.lock')
    """

    folder: Path
    job_id: str

    @property
    def path(self) -> Path:
        """The verified result file."""
        return self.folder / f"{_safe_name(self.job_id)}.csv.gz"

    @property
    def checksum_path(self) -> Path:
        """The result's SHA-256, written before the result appears."""
        return self.path.with_name(self.path.name + ".sha256")

    @property
    def lock_path(self) -> Path:
        """The job's lock file."""
        return self.path.with_name(self.path.name + ".lock")

    def verified(self) -> Path | None:
        """Return the cached result if it is present and matches its checksum (no lock needed)."""
        path, sidecar = self.path, self.checksum_path
        try:
            if not path.is_file() or not sidecar.is_file():
                return None
            intact = sha256_file(path) == sidecar.read_text().strip()
        except OSError:  # removed meanwhile, or unreadable: not a usable copy
            return None
        if not intact:
            log.warning("cached result of batch job %s is corrupt; ignoring it", self.job_id)
            return None
        return path

    def stale_parts(self) -> Iterator[Path]:
        """Yield the ``.part`` files of this job left by processes that no longer run."""
        prefix = self.path.name + "."
        for part in self.folder.glob(f"{self.path.name}.*.part"):
            owner = part.name[len(prefix) :].split(".", 1)[0]
            if not (owner.isdigit() and _running(int(owner))):
                yield part


def _running(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: never presume it dead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


class Claim:
    """The right to download one job into the cache: a writable ``.part`` file and the job's lock.

    Obtained from :func:`claim`. ``ready`` is set when another process had already cached a
    verified copy by the time the lock was taken (then nothing is to be downloaded).
    """

    def __init__(self, entry: CacheEntry, part: Path) -> None:
        self.entry = entry
        self.part = part
        self.ready: Path | None = None

    def storage_error(self, exc: OSError, doing: str, *, spent: bool) -> CacheStorageError:
        """Describe a storage failure as one :class:`CacheStorageError` naming the folder."""
        return _storage_error(self.entry, exc, doing, spent=spent)

    def check_space(self, needed: int, *, spent: bool) -> None:
        """Raise :class:`CacheStorageError` if the folder has fewer than ``needed`` free bytes."""
        folder = self.entry.folder
        try:
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            raise self.storage_error(exc, "checking its free space", spent=spent) from None
        if free < needed:
            short = OSError(errno.ENOSPC, f"{free:,} bytes free, {needed:,} needed")
            raise self.storage_error(short, "checking its free space", spent=spent)

    def open(self) -> PartFile:
        """Open the ``.part`` file for a download (truncated); write errors are storage errors."""
        try:
            handle = open(self.part, "wb")  # noqa: SIM115 (a PartFile closes it)
        except OSError as exc:
            raise self.storage_error(exc, "opening its .part file", spent=True) from None
        return PartFile(self, handle)

    def commit(self, checksum: str) -> Path:
        """Record the verified ``.part`` as the job's cached result and return its path."""
        entry = self.entry
        scratch = self.part.with_suffix(".sha256")
        try:
            scratch.write_text(checksum + "\n")
            os.replace(scratch, entry.checksum_path)
            os.replace(self.part, entry.path)
        except OSError as exc:
            scratch.unlink(missing_ok=True)
            raise self.storage_error(exc, "saving the verified file", spent=True) from None
        return entry.path


class PartFile:
    """A claim's open ``.part`` file; every ``OSError`` while writing is a storage error."""

    def __init__(self, owner: Claim, handle: IO[bytes]) -> None:
        self._owner = owner
        self._handle = handle

    def __enter__(self) -> PartFile:
        return self

    def write(self, block: bytes) -> None:
        """Append ``block``."""
        try:
            self._handle.write(block)
        except OSError as exc:
            raise self._owner.storage_error(exc, "writing the result", spent=True) from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._handle.close()  # flushes: a full disk may only show here
        except OSError as error:
            if exc is None:
                raise self._owner.storage_error(error, "writing the result", spent=True) from None


def _storage_error(
    entry: CacheEntry, exc: OSError, doing: str, *, spent: bool
) -> CacheStorageError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno is not None:
        reason = f"{errno.errorcode.get(exc.errno, exc.errno)}: {reason}"
    spending = (
        "one download slot was spent on it"
        if spent
        else "no download slot was spent; the result is still on the server"
    )
    return CacheStorageError(
        f"batch job {entry.job_id}: the cache folder {entry.folder} cannot hold the result "
        f"({doing}: {reason}); {spending}. Point cache_dir (MM_PIPELINE_CACHE_DIR, --cache-dir) "
        "at a writable folder with free space and run again: the job is adopted and finished",
        job_id=entry.job_id,
        folder=str(entry.folder),
        reason=reason,
    )


@contextlib.asynccontextmanager
async def claim(entry: CacheEntry, *, expected_bytes: int = 0) -> AsyncIterator[Claim]:
    """Prove the cache can take the job's result, then hold the job's lock until exit.

    In order: create the folder; create this process's own ``.part`` file (exclusively); take
    the job's lock, waiting while another process holds it; look for a verified copy again (set
    as ``ready``: nothing to download); remove parts of processes that no longer run; check
    that ``expected_bytes`` plus :data:`MIN_FREE_BYTES` are free. On exit the ``.part`` file is
    removed (if not committed) and the lock released.

    Raises
    ------
    CacheStorageError
        The folder cannot be created or written, or has too little free space (no slot spent).
    """
    folder = entry.folder
    part = entry.path.with_name(f"{entry.path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(part.touch, exist_ok=False)
    except OSError as exc:
        raise _storage_error(entry, exc, "creating its .part file", spent=False) from None
    owner = Claim(entry, part)
    try:
        lock = await _acquire(entry)
        try:
            owner.ready = await asyncio.to_thread(entry.verified)
            if owner.ready is None:
                for stale in entry.stale_parts():
                    log.info("removing %s, left by a download that no longer runs", stale.name)
                    stale.unlink(missing_ok=True)
                owner.check_space(expected_bytes + MIN_FREE_BYTES, spent=False)
            yield owner
        finally:
            lock.release()
    finally:
        part.unlink(missing_ok=True)


async def _acquire(entry: CacheEntry) -> filelock.BaseFileLock:
    """Take the job's lock, waiting (without blocking the loop) while another process has it."""
    lock = filelock.FileLock(entry.lock_path, thread_local=False)
    pause, longest = _LOCK_POLL
    told = False
    while True:
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            if not told:
                log.info(
                    "batch job %s: another download of its result is in progress; waiting for "
                    "it to finish (%s)",
                    entry.job_id,
                    entry.lock_path,
                )
                told = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)
            continue
        except OSError as exc:
            raise _storage_error(entry, exc, "locking the job", spent=False) from None
        return lock
