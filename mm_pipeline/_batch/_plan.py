"""The batch route's cost: jobs, uploads, status polls, downloads and online merge requests.

What :func:`mm_pipeline.plan` shows for the batch route of ``rank_dealers`` and what
``max_requests`` is checked against. Jobs are estimated as the upload writer splits files
(:func:`~mm_pipeline._batch._files.estimated_file_count`); polls follow the batch route's poll
schedule (:data:`POLL_INTERVAL` growing 1.5x to :data:`MAX_POLL_INTERVAL`) over an assumed
processing time per job (:data:`ASSUMED_JOB_SECONDS`: the API publishes no throughput).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl

from mm_pipeline._batch._files import estimated_file_count

__all__ = [
    "ASSUMED_JOB_SECONDS",
    "BATCH_THRESHOLD_REQUESTS",
    "MAX_POLL_INTERVAL",
    "POLL_INTERVAL",
    "BatchPlan",
    "price_batch",
]

BATCH_THRESHOLD_REQUESTS: Final = 2_000
"""``mode="auto"`` ranks through batch jobs when the online plan needs more requests than this."""

#: The batch route's first and largest pause between status polls, in seconds.
POLL_INTERVAL: Final = 1.0
MAX_POLL_INTERVAL: Final = 20.0
#: Processing time assumed per batch job for the poll and time estimates (the API publishes no
#: throughput): ten minutes.
ASSUMED_JOB_SECONDS: Final = 600.0


def _polls_per_job(seconds: float) -> int:
    """Status polls of the batch route's schedule over a job of ``seconds`` (the last included).

    >>> _polls_per_job(0.0), _polls_per_job(600.0)
    (1, 37)
    """
    polls, waited, pause = 1, 0.0, POLL_INTERVAL
    while waited < seconds:
        waited += pause
        polls += 1
        pause = min(pause * 1.5, MAX_POLL_INTERVAL)
    return polls


@dataclass(frozen=True, kw_only=True)
class BatchPlan:
    """What the batch route of ``rank_dealers`` would send (estimates where marked).

    Attributes
    ----------
    pairs
        Pairs with a ``zip``, sent in batch files.
    jobs
        Upload files, one job each (an estimate of the split under the 100 MB cap, from the
        compressed size of a sample of the rows, as the upload writer does).
    polls
        Status polls: the client's schedule (1 s, growing 1.5x to 20 s) over
        ``assumed_job_seconds`` per job -- an estimate; the real count follows the jobs.
    assumed_job_seconds
        Processing time assumed per job (the API publishes no throughput).
    merge_requests_per_round
        Online requests, per round, for the dealers without a zip (merged with the batch
        order where their vehicle has one: ``RankStats.merge_requests``).
    """

    pairs: int
    jobs: int
    polls: int
    assumed_job_seconds: float
    merge_requests_per_round: tuple[int, ...]

    @property
    def files(self) -> int:
        """Upload files (one per job)."""
        return self.jobs

    @property
    def uploads(self) -> int:
        """Upload requests (one per job)."""
        return self.jobs

    @property
    def listings(self) -> int:
        """Job listings before each upload (a rerun adopts the job it already made)."""
        return self.jobs

    @property
    def downloads(self) -> int:
        """Result downloads (one per job; none for a job whose result is in the cache)."""
        return self.jobs

    @property
    def merge_requests(self) -> int:
        """Online merge requests in all rounds."""
        return sum(self.merge_requests_per_round)

    @property
    def requests(self) -> int:
        """Every request of an error-free run, the estimated polls included."""
        return self.listings + self.uploads + self.polls + self.downloads + self.merge_requests

    @property
    def requests_at_least(self) -> int:
        """The requests no run can avoid: every request but polls, and one poll per job."""
        return self.requests - self.polls + self.jobs


def price_batch(pairs: pl.DataFrame, *, merge_requests_per_round: tuple[int, ...]) -> BatchPlan:
    """Price the batch jobs of normalised, valid, distinct pairs that all have a ``zip``.

    ``merge_requests_per_round``: the online requests that go with them
    (:func:`mm_pipeline._plan.merge_rounds`).

    Examples
    --------
    >>> pairs = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000],
    ...                       "source": ["mbofaugusta.com"], "zip": ["30907"]})
    >>> batch = price_batch(pairs, merge_requests_per_round=(2,))
    >>> batch.jobs, batch.polls, batch.requests, batch.requests_at_least
    (1, 37, 42, 6)
    """
    jobs = estimated_file_count(pairs)
    return BatchPlan(
        pairs=pairs.height,
        jobs=jobs,
        polls=jobs * _polls_per_job(ASSUMED_JOB_SECONDS),
        assumed_job_seconds=ASSUMED_JOB_SECONDS,
        merge_requests_per_round=merge_requests_per_round,
    )
