"""Crash and rerun: the client process SIGKILLed at each risky moment, then run again.

The client is a real process (``_crash_client.py``: one ``rank_dealers`` call, as a nightly job
makes it). Each crash point is made observable on the sandbox's side -- the requests it has
served, the jobs it holds, or an answer held half-way by a stalling proxy -- and the process is
killed once the test sees it (no sleeps). The rerun must return the complete result a clean run
returns, with exactly one batch job for the work and no download slot spent on a file the
client already had.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline import _options
from mm_pipeline.sandbox import Sandbox, running
from tests.conftest import wait_until
from tests.reliability._crash_client import CLIENT_REFERENCE, capped_batch_options
from tests.reliability._proxy import DOWNLOAD, SUBMIT, StallingProxy, address
from tests.reliability._support import (
    KEY,
    ServedRequests,
    account_jobs,
    assert_same_frames,
    placement_pairs,
)

Mode = Literal["online", "batch"]
REPO = Path(__file__).resolve().parents[2]
ONLINE_PAIRS = placement_pairs(59, 29)  # 60 vehicles x 30 dealers: ~120 requests with the 422s
BATCH_PAIRS = placement_pairs(40, 60)  # a result file of ~2,500 rows (~60 KB gzipped)


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[Sandbox]:
    """A sandbox that answers after 20 ms, so that a fan-out takes long enough to interrupt."""
    with running(
        api_keys=[KEY], rate_limit=100_000, quota=10**9, job_seconds=0.2, latency_ms=20
    ) as sb:
        yield sb


@pytest.fixture(scope="module")
def clean(
    module_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, mm.RankResult]:
    """The online and batch work ranked once without interruption."""
    module_sandbox.reset()
    client = mm.MarketMatchClient(KEY, module_sandbox.base_url)
    return {
        "online": mm.rank_dealers(ONLINE_PAIRS, client=client, mode="online", progress=False),
        "batch": mm.rank_dealers(
            BATCH_PAIRS,
            client=client,
            mode="batch",
            client_reference=CLIENT_REFERENCE,
            cache_dir=tmp_path_factory.mktemp("clean-cache"),
            progress=False,
        ),
    }


@pytest.fixture
def sb(module_sandbox: Sandbox, clean: dict[str, mm.RankResult]) -> Sandbox:
    """The module's sandbox, reset (after the clean runs were made)."""
    module_sandbox.reset()
    return module_sandbox


def _start(
    base_url: str,
    pairs: pl.DataFrame,
    tmp_path: Path,
    mode: Mode | Literal["large"],
    concurrency: int = 8,
) -> subprocess.Popen[bytes]:
    """Start the client process on ``pairs``, caching under ``tmp_path / "cache"``."""
    parquet = tmp_path / "pairs.parquet"
    pairs.write_parquet(parquet)
    command = [
        sys.executable,
        "-m",
        "tests.reliability._crash_client",
        base_url,
        str(parquet),
        str(tmp_path / "cache"),
        mode,
        str(concurrency),
    ]
    env = {**os.environ, "MARKETCHECK_API_KEY": KEY}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _kill_when(
    process: subprocess.Popen[bytes], moment: Callable[[], bool], *, timeout: float = 60
) -> None:
    """SIGKILL ``process`` as soon as ``moment()`` is true; fail if it ended before that."""
    try:
        reached = wait_until(lambda: moment() or process.poll() is not None, bool, timeout=timeout)
        assert reached
        assert process.poll() is None, "the client ended before the crash point"
    finally:
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, stderr.decode(errors="replace")[-2000:]


def _rerun(sb: Sandbox, pairs: pl.DataFrame, tmp_path: Path, mode: Mode) -> mm.RankResult:
    """Run the same work again, in this process, as the next scheduled run would."""
    return mm.rank_dealers(
        pairs,
        client=mm.MarketMatchClient(KEY, sb.base_url),
        mode=mode,
        client_reference=CLIENT_REFERENCE,
        cache_dir=tmp_path / "cache",
        progress=False,
    )


def _record(figures: dict[str, Any], point: str, **facts: Any) -> None:
    figures.setdefault("crash_points", {})[point] = facts


def _check_batch_rerun(
    sb: Sandbox, rerun: mm.RankResult, clean: mm.RankResult, *, downloads: int
) -> dict[str, Any]:
    """The rerun is complete and equals the clean run; the account holds exactly one job."""
    assert_same_frames(rerun, clean, ignore_job_ids=True)
    assert rerun.ranked.height + rerun.failed.height == BATCH_PAIRS.height
    (job,) = account_jobs(sb)
    assert rerun.stats.batch_job_ids == (job["job_id"],)
    assert (job["status"], job["download_count"]) == ("COMPLETED", downloads)
    return job


def test_killed_mid_fan_out(
    sb: Sandbox, clean: dict[str, mm.RankResult], tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Killed after 20 of ~120 online requests: the rerun returns the clean run's frames."""
    planned = clean["online"].stats.requests
    with ServedRequests.on(sb) as served:
        process = _start(sb.base_url, ONLINE_PAIRS, tmp_path, "online", concurrency=2)
        _kill_when(process, lambda: served() >= 20)
        seen = served()
    assert 20 <= seen < planned  # it really was mid-way
    rerun = _rerun(sb, ONLINE_PAIRS, tmp_path, "online")
    assert_same_frames(rerun, clean["online"])
    assert account_jobs(sb) == []
    _record(figures, "mid fan-out", requests_before_kill=seen, planned=planned, rows_lost=0)


def test_killed_when_the_submit_answer_was_lost(
    sb: Sandbox, clean: dict[str, mm.RankResult], tmp_path: Path, figures: dict[str, Any]
) -> None:
    """The server accepted the job but the client died before hearing so: the rerun adopts it."""
    with StallingProxy(address(sb.base_url)) as proxy:
        proxy.stall(SUBMIT)
        process = _start(proxy.base_url, BATCH_PAIRS, tmp_path, "batch")
        _kill_when(process, proxy.stalled.is_set)
    (created,) = account_jobs(sb)  # the job exists, its id never reached the client
    rerun = _rerun(sb, BATCH_PAIRS, tmp_path, "batch")
    job = _check_batch_rerun(sb, rerun, clean["batch"], downloads=1)
    assert job["job_id"] == created["job_id"]
    _record(figures, "submit answered, answer lost", jobs=1, download_slots_spent=1)


def test_killed_just_after_submit(
    sb: Sandbox, clean: dict[str, mm.RankResult], tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Killed as soon as its job is listed: the rerun adopts that job instead of submitting."""
    sb.hold_jobs()
    process = _start(sb.base_url, BATCH_PAIRS, tmp_path, "batch")
    _kill_when(process, lambda: bool(account_jobs(sb)))
    (created,) = account_jobs(sb)
    sb.hold_jobs(False)
    rerun = _rerun(sb, BATCH_PAIRS, tmp_path, "batch")
    job = _check_batch_rerun(sb, rerun, clean["batch"], downloads=1)
    assert job["job_id"] == created["job_id"]
    _record(figures, "just after submit", jobs=1, download_slots_spent=1)


def test_killed_mid_poll(
    sb: Sandbox, clean: dict[str, mm.RankResult], tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Killed while polling a job still processing: the rerun adopts it and waits it out."""
    sb.hold_jobs()
    with ServedRequests.on(sb) as served:
        process = _start(sb.base_url, BATCH_PAIRS, tmp_path, "batch")
        # list + submit, then at least two status polls of the (held) job
        _kill_when(process, lambda: served() >= 4)
    (created,) = account_jobs(sb)
    assert created["status"] == "PROCESSING"
    sb.hold_jobs(False)
    rerun = _rerun(sb, BATCH_PAIRS, tmp_path, "batch")
    job = _check_batch_rerun(sb, rerun, clean["batch"], downloads=1)
    assert job["job_id"] == created["job_id"]
    _record(figures, "mid poll", jobs=1, download_slots_spent=1)


def test_killed_mid_download(
    sb: Sandbox, clean: dict[str, mm.RankResult], tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Killed part-way through the result file: one more slot for the rerun, none after."""
    with StallingProxy(address(sb.base_url)) as proxy:
        proxy.stall(DOWNLOAD, body_bytes=4096)
        process = _start(proxy.base_url, BATCH_PAIRS, tmp_path, "batch")
        _kill_when(process, proxy.stalled.is_set)
    (granted,) = account_jobs(sb)
    assert granted["download_count"] == 1  # spent on the transfer the kill cut off
    assert len(list((tmp_path / "cache").glob("*.part"))) == 1  # it was writing the file
    assert list((tmp_path / "cache").glob("*.csv.gz")) == []  # nothing unverified was kept
    rerun = _rerun(sb, BATCH_PAIRS, tmp_path, "batch")
    _check_batch_rerun(sb, rerun, clean["batch"], downloads=2)
    again = _rerun(sb, BATCH_PAIRS, tmp_path, "batch")  # the verified file is cached now
    _check_batch_rerun(sb, again, clean["batch"], downloads=2)
    assert list((tmp_path / "cache").glob("*.part")) == []  # the rerun removed the stale part
    _record(figures, "mid download", jobs=1, download_slots_spent=2, cut_off_transfers=1)


def _jobs_listed(sb: Sandbox, count: int) -> list[dict[str, Any]]:
    """Wait until the account lists ``count`` jobs; return them, newest first."""
    return wait_until(lambda: account_jobs(sb), lambda jobs: len(jobs) == count)


def test_killed_after_the_second_of_three_jobs(
    sb: Sandbox,
    clean: dict[str, mm.RankResult],
    tmp_path: Path,
    figures: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """output= over a scan, three jobs, killed once the third is submitted: the rerun adopts
    all three, reuses the two verified downloads and equals the in-memory run.
    """
    sb.hold_jobs()
    process = _start(sb.base_url, BATCH_PAIRS, tmp_path, "large")
    for count in (1, 2):  # release the first two jobs one by one
        sb.complete_job(_jobs_listed(sb, count)[0]["job_id"])
    _kill_when(process, lambda: len(account_jobs(sb)) == 3)
    slots = sorted(job.get("download_count", 0) for job in account_jobs(sb))
    assert slots == [0, 1, 1]  # the first two were downloaded, once; the third is held
    sb.hold_jobs(False)
    monkeypatch.setattr(_options, "batch_options", capped_batch_options)
    rerun = mm.rank_dealers(
        pl.scan_parquet(tmp_path / "pairs.parquet"),
        client=mm.MarketMatchClient(KEY, sb.base_url),
        mode="batch",
        client_reference=CLIENT_REFERENCE,
        cache_dir=tmp_path / "cache",
        progress=False,
        output=tmp_path / "output",
    )
    jobs = account_jobs(sb)
    assert len(jobs) == 3  # no job submitted twice
    assert all(job["download_count"] == 1 for job in jobs)  # two from the cache, one new
    assert rerun.stats.batch_job_ids == tuple(job["job_id"] for job in reversed(jobs))
    expected = clean["batch"]
    key = ["vin", "price", "miles", "source", "zip"]
    assert rerun.ranked.collect().sort(key).equals(expected.ranked.sort(key))
    assert (
        rerun.failed.collect()
        .drop("error_message")
        .sort(key)
        .equals(expected.failed.drop("error_message").sort(key))
    )
    _record(figures, "after 2 of 3 jobs (output=)", jobs=3, download_slots_spent=3)
