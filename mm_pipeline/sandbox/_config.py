"""The sandbox's configuration: one frozen object shared by ``running()`` and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from mm_pipeline.sandbox._faults import DEFAULT_RANDOM_KINDS, FaultKind, parse_fault_kind

__all__ = ["MB", "SandboxConfig", "SandboxOptions"]

MB = 1024 * 1024
"""Bytes in the "MB" of ``max_file_mb`` / ``max_csv_mb``."""


@dataclass(frozen=True, kw_only=True)
class SandboxConfig:
    """How a sandbox behaves. Every option is also a ``mm-pipeline sandbox serve`` flag.

    Parameters
    ----------
    api_keys
        Accepted keys: ``"KEY"`` (its own account) or ``"KEY=ACCOUNT"`` (keys sharing an account).
        Empty: the demo key ``mc_test_sandbox_demo`` is accepted.
    no_access_keys
        Keys that authenticate but have no MarketMatch access (403).
    rate_limit
        Requests per second per account (token bucket holding ``rate_limit`` tokens).
    quota
        Calls per calendar month (UTC) per account.
    latency_ms
        Added to every API response (``asyncio.sleep``, not blocking).
    fault_rate, fault_kinds, slow_ms, seed
        Fraction of API requests answered with a random fault of ``fault_kinds`` (seeded by
        ``seed``); a ``slow`` fault delays the response by ``slow_ms``.
    max_file_mb, max_csv_mb
        Cap on a batch upload (413 beyond it) and on its decompressed size (the job fails
        beyond it; default ``20 * max_file_mb``). 1 MB = 1,048,576 bytes.
    state_dir
        Where jobs, uploads and results persist across restarts; None: a temporary directory
        removed when the sandbox stops.
    allow_local_webhooks
        Accept webhook URLs on loopback/private/link-local/reserved addresses, and ``http://``
        on loopback (local testing only).
    job_seconds, hold_jobs
        Minimum processing time of a batch job; with ``hold_jobs`` a job stays PROCESSING until
        completed or failed through the control API.
    enable_control
        Serve the ``/_sandbox/*`` control API (always on in ``running()``).
    webhook_retry_delays, webhook_timeout
        Seconds before each webhook retry, and per attempt.
    job_workers
        Batch jobs processed at the same time.
    job_bucket_mb
        Most CSV text a batch job ranks at once: a larger upload is ranked in VIN buckets
        spilled to Parquet, so a job's memory stays bounded whatever the file's size.
    """

    api_keys: Sequence[str] = field(default=(), repr=False)
    no_access_keys: Sequence[str] = field(default=(), repr=False)
    rate_limit: float = 20.0
    quota: int = 1_000_000
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: Sequence[FaultKind] = DEFAULT_RANDOM_KINDS
    slow_ms: float = 3000.0
    seed: int = 0
    max_file_mb: float = 100.0
    max_csv_mb: float | None = None
    state_dir: Path | str | None = None
    allow_local_webhooks: bool = False
    job_seconds: float = 2.0
    hold_jobs: bool = False
    enable_control: bool = False
    webhook_retry_delays: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0)
    webhook_timeout: float = 10.0
    job_workers: int = 2
    job_bucket_mb: float = 64.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "api_keys", tuple(self.api_keys))
        set_(self, "no_access_keys", tuple(self.no_access_keys))
        set_(self, "fault_kinds", tuple(parse_fault_kind(k) for k in self.fault_kinds))
        set_(self, "webhook_retry_delays", tuple(float(d) for d in self.webhook_retry_delays))
        if self.state_dir is not None:
            set_(self, "state_dir", Path(self.state_dir))
        for name in ("latency_ms", "slow_ms", "job_seconds", "webhook_timeout"):
            if getattr(self, name) < 0:
                msg = f"{name} must not be negative"
                raise ValueError(msg)
        if (
            self.max_file_mb <= 0
            or (self.max_csv_mb is not None and self.max_csv_mb <= 0)
            or self.job_bucket_mb <= 0
        ):
            msg = "max_file_mb, max_csv_mb and job_bucket_mb must be positive"
            raise ValueError(msg)
        if self.job_workers < 1:
            msg = "job_workers must be at least 1"
            raise ValueError(msg)

    @property
    def max_file_bytes(self) -> int:
        """The upload cap in bytes."""
        return int(self.max_file_mb * MB)

    @property
    def max_csv_bytes(self) -> int:
        """The decompressed-size cap in bytes."""
        mb = self.max_csv_mb if self.max_csv_mb is not None else 20 * self.max_file_mb
        return int(mb * MB)

    @property
    def job_bucket_bytes(self) -> int:
        """CSV bytes a batch job ranks at once."""
        return max(1, int(self.job_bucket_mb * MB))


class SandboxOptions(TypedDict, total=False):
    """Keyword options of ``running()``: the fields of :class:`SandboxConfig`."""

    api_keys: Sequence[str]
    no_access_keys: Sequence[str]
    rate_limit: float
    quota: int
    latency_ms: float
    fault_rate: float
    fault_kinds: Sequence[FaultKind]
    slow_ms: float
    seed: int
    max_file_mb: float
    max_csv_mb: float | None
    state_dir: Path | str | None
    allow_local_webhooks: bool
    job_seconds: float
    hold_jobs: bool
    enable_control: bool
    webhook_retry_delays: Sequence[float]
    webhook_timeout: float
    job_workers: int
    job_bucket_mb: float
