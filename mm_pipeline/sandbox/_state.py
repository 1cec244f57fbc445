"""Everything a running sandbox holds, wired together (no HTTP here)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl

from mm_pipeline.sandbox._accounts import AccountRegistry, parse_key_specs
from mm_pipeline.sandbox._config import SandboxConfig
from mm_pipeline.sandbox._faults import FaultPlan
from mm_pipeline.sandbox._jobs import JobStore
from mm_pipeline.sandbox._market import Market
from mm_pipeline.sandbox._webhooks import WebhookDispatcher

__all__ = ["SandboxState"]


class SandboxState:
    """Accounts, faults, jobs, webhooks and the market of one sandbox.

    Parameters
    ----------
    config
        The sandbox configuration.
    market
        The market model (default: ``Market.default()``, built once per process).
    """

    def __init__(self, config: SandboxConfig, *, market: Market | None = None) -> None:
        self.config = config
        self.market = market if market is not None else Market.default()
        key_accounts = parse_key_specs(config.api_keys, config.no_access_keys)
        self.accounts = AccountRegistry(
            key_accounts, rate_limit=config.rate_limit, quota=config.quota
        )
        self.api_key = next(k for k, a in key_accounts.items() if a.access)
        self.faults = FaultPlan(rate=config.fault_rate, kinds=config.fault_kinds, seed=config.seed)
        self.webhooks = WebhookDispatcher(
            retry_delays=config.webhook_retry_delays,
            timeout=config.webhook_timeout,
            allow_local=config.allow_local_webhooks,
        )
        self._own_root = config.state_dir is None
        self.root = (
            Path(tempfile.mkdtemp(prefix="mm-sandbox-"))
            if config.state_dir is None
            else Path(config.state_dir)
        )
        self.jobs = JobStore(
            self.root,
            rank=self._rank_batch,
            job_seconds=config.job_seconds,
            hold=config.hold_jobs,
            max_csv_bytes=config.max_csv_bytes,
            on_finished=self.webhooks.send,
            workers=config.job_workers,
            bucket_bytes=config.job_bucket_bytes,
        )

    def _rank_batch(self, frame: pl.DataFrame, progress: Callable[[float], None]) -> pl.DataFrame:
        return self.market.rank_batch(frame, progress=progress)

    def start(self) -> None:
        """Load persisted jobs and start the job workers."""
        self.jobs.start()

    def close(self) -> None:
        """Stop workers and webhook deliveries; remove the state directory if it was temporary."""
        self.jobs.close()
        self.webhooks.close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def reset(self) -> None:
        """Back to a fresh sandbox: no jobs, faults, webhooks, spent tokens or quota.

        Job timing (``hold_jobs`` / ``job_seconds``) returns to its configured values.
        """
        self.jobs.reset()
        self.jobs.configure(hold=self.config.hold_jobs, job_seconds=self.config.job_seconds)
        self.webhooks.reset()
        self.faults.reset()
        self.accounts.reset()
