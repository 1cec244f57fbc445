"""Sandbox restart: the server stops mid-work and comes back on the same port and state dir.

While it is down the client's connections are refused; the client retries (with a real, small
backoff) and carries on once the new server answers. A batch job the first server was
processing is found again by the second -- it completes, or fails and is reported -- and a
fan-out interrupted by the restart finishes with the clean run's frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

import mm_pipeline as mm
from mm_pipeline._session import set_backoff_scale
from mm_pipeline.sandbox import Sandbox, running
from tests.conftest import wait_until
from tests.reliability._proxy import address
from tests.reliability._support import (
    KEY,
    Background,
    ServedRequests,
    account_jobs,
    assert_same_frames,
    placement_pairs,
)

BATCH_PAIRS = placement_pairs(8, 30)
ONLINE_PAIRS = placement_pairs(29, 19)  # 30 vehicles x 20 dealers: ~60 requests with the 422s
Attempts = list[tuple[str, str, str]]


@pytest.fixture(autouse=True)
def short_backoff() -> Iterator[None]:
    """Backoffs a tenth of the defaults: retries spread over seconds, enough to span a restart."""
    with set_backoff_scale(0.1):
        yield


def _sandbox(state_dir: Path, *, port: int = 0, **options: Any) -> AbstractContextManager[Sandbox]:
    return running(
        port=port,
        state_dir=state_dir,
        api_keys=[KEY],
        rate_limit=100_000,
        quota=10**9,
        job_seconds=0.2,
        **options,
    )


def _client(sb: Sandbox) -> mm.MarketMatchClient:
    return mm.MarketMatchClient(KEY, sb.base_url, max_retries=30, timeout=5)


def _refused(attempts: Attempts) -> int:
    """Connection attempts the client saw refused (and retried)."""
    return sum(1 for _method, _path, outcome in attempts if outcome == "ConnectError")


def _stop_under_a_batch_run(
    state: Path, tmp_path: Path, attempts: Attempts
) -> tuple[Background[mm.RankResult], dict[str, Any], int]:
    """Start a batch ranking on a sandbox holding jobs; stop the sandbox once the job exists.

    Returns when the client has had a connection refused: the running call, the job as the
    first sandbox listed it, and the port to start the next sandbox on.
    """
    with _sandbox(state, hold_jobs=True) as first:
        client = _client(first)
        run = Background(
            lambda: mm.rank_dealers(
                BATCH_PAIRS, client=client, mode="batch", cache_dir=tmp_path, progress=False
            )
        )
        (job,) = wait_until(lambda: account_jobs(first), bool)
    wait_until(lambda: _refused(attempts), bool)  # the client noticed the server was gone
    return run, job, address(first.base_url)[1]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, mm.RankResult]:
    """The batch and online work ranked on a sandbox that stays up."""
    with _sandbox(tmp_path_factory.mktemp("state")) as sb:
        client = _client(sb)
        return {
            "batch": mm.rank_dealers(
                BATCH_PAIRS,
                client=client,
                mode="batch",
                cache_dir=tmp_path_factory.mktemp("cache"),
                progress=False,
            ),
            "online": mm.rank_dealers(ONLINE_PAIRS, client=client, mode="online", progress=False),
        }


def test_restart_mid_job_the_waiting_client_gets_the_result(
    clean: dict[str, mm.RankResult], tmp_path: Path, attempts: Attempts, figures: dict[str, Any]
) -> None:
    """A job held by a server that stops is resumed by the next one; the client waits it out."""
    state = tmp_path / "state"
    run, before, port = _stop_under_a_batch_run(state, tmp_path, attempts)
    with _sandbox(state, port=port) as second:
        result = run.result()
        after = account_jobs(second)
    assert [job["job_id"] for job in after] == [before["job_id"]]
    assert after[0]["status"] == "COMPLETED"
    assert result.stats.batch_job_ids == (before["job_id"],)
    assert_same_frames(result, clean["batch"], ignore_job_ids=True)
    figures.setdefault("restart", {})["mid batch job"] = {
        "refused_connections_retried": _refused(attempts),
        "jobs": len(after),
        "rows_lost": 0,
    }


def test_restart_mid_job_a_failure_is_reported_not_lost(tmp_path: Path, attempts: Attempts) -> None:
    """A resumed job that then fails reaches the waiting client as BatchJobFailed, named."""
    state = tmp_path / "state"
    run, before, port = _stop_under_a_batch_run(state, tmp_path, attempts)
    with _sandbox(state, port=port, hold_jobs=True) as second:
        assert second.job(before["job_id"])["status"] == "PROCESSING"
        second.fail_job(before["job_id"], error_message="upstream data missing")
        with pytest.raises(mm.BatchJobFailed) as info:
            run.result()
    assert info.value.job_id == before["job_id"]
    assert "upstream data missing" in str(info.value)


def test_restart_mid_fan_out_the_client_finishes(
    clean: dict[str, mm.RankResult], tmp_path: Path, attempts: Attempts, figures: dict[str, Any]
) -> None:
    """Online ranking interrupted by a restart retries refused connections and completes."""
    state = tmp_path / "state"
    with _sandbox(state, latency_ms=20) as first, ServedRequests.on(first) as served:
        port = address(first.base_url)[1]
        client = mm.MarketMatchClient(KEY, first.base_url, max_retries=30, max_concurrency=2)
        run = Background(
            lambda: mm.rank_dealers(ONLINE_PAIRS, client=client, mode="online", progress=False)
        )
        wait_until(served, lambda n: n >= 10)
    wait_until(lambda: _refused(attempts), bool)  # the client noticed the server was gone
    with _sandbox(state, port=port):
        result = run.result()
    assert_same_frames(result, clean["online"])
    assert result.stats.retries > 0
    figures.setdefault("restart", {})["mid fan-out"] = {
        "refused_connections_retried": _refused(attempts),
        "rows_lost": 0,
    }
