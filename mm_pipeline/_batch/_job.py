"""A batch job as the API reports it, and the references and keys that make submits idempotent.

One piece of work gets one job: its ``client_reference`` is derived from the upload file's
SHA-256 (:func:`work_reference`) and its ``Idempotency-Key`` from that reference and the number
of earlier jobs for it that FAILED (:func:`idempotency_key`), so a retried or rerun submit
repeats the key and a resubmission after a failure does not. :func:`adoptable` picks the job to
adopt among those carrying the reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from mm_pipeline._exceptions import BatchError, BatchJobFailed
from mm_pipeline._redact import scrub

__all__ = [
    "JOBS_PATH",
    "BatchJob",
    "JobStatusFilter",
    "adoptable",
    "idempotency_key",
    "work_reference",
]

JOBS_PATH: Final = "/v2/batch/marketmatch/rank/jobs"
"""The batch jobs endpoint (list, submit; ``/<job_id>`` status, ``/<job_id>/download``)."""
JobStatusFilter = Literal["all", "active", "completed", "failed"]
_REFERENCE_MAX: Final = 255


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


def adoptable(jobs: Sequence[BatchJob]) -> BatchJob | None:
    """Prefer a COMPLETED job (newest first as listed), else a PROCESSING one."""
    for wanted in ("COMPLETED", "PROCESSING"):
        for job in jobs:
            if job.status == wanted:
                return job
    return None
