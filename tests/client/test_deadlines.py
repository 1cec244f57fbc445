"""Whole-request deadlines: a server that trickles its answer cannot hold a call open.

The server (``trickle_server``) sends its headers at once and then one byte every 0.4 s, so a
per-operation ``timeout`` longer than 0.4 s never fires. Each test asserts the error and that
the client abandoned the request (the server saw it close the connection), not elapsed time;
the ``timeout`` marks only keep a regression from hanging the suite.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._client import DEFAULT_DEADLINE_FACTOR, set_backoff_scale
from tests.conftest import TrickleServer, make_vins, wait_until

KEY = "mc_test_trickle_key"


def _client(server: TrickleServer, **options: float) -> mm.MarketMatchClient:
    # timeout=0.5 outlasts the 0.4 s pace: only the whole-request deadline (4 x 0.5 s) can end it
    return mm.MarketMatchClient(KEY, server.base_url, timeout=0.5, **options)  # type: ignore[arg-type]


def _all_abandoned(server: TrickleServer) -> list[str]:
    """Wait until the server saw the client give up every request it received; return them."""
    wait_until(lambda: (len(server.abandoned), len(server.requests)), lambda n: n[0] == n[1] > 0)
    return server.requests


def test_deadline_defaults_to_four_timeouts() -> None:
    """Without ``deadline``, an attempt may take 4 x ``timeout`` (120 s with the default 30 s)."""
    assert mm.MarketMatchClient(KEY).deadline == 4 * 30.0
    assert mm.MarketMatchClient(KEY, timeout=2).deadline == DEFAULT_DEADLINE_FACTOR * 2
    assert mm.MarketMatchClient(KEY, timeout=2, deadline=5).deadline == 5.0
    with pytest.raises(mm.ConfigurationError, match="deadline must be > 0"):
        mm.MarketMatchClient(KEY, deadline=0)


@pytest.mark.timeout(60)
def test_a_trickling_ranking_answer_ends_at_the_deadline(trickle_server: TrickleServer) -> None:
    """Each attempt is abandoned at its deadline and retried; then DeadlineExceededError."""
    pairs = pl.DataFrame(
        {"vin": make_vins(1), "price": [20_000], "miles": [30_000], "source": ["a.com"]}
    ).with_columns(zip=pl.lit("10001"))
    client = _client(trickle_server, max_retries=1)
    with set_backoff_scale(0.0), pytest.raises(mm.DeadlineExceededError) as caught:
        mm.rank_dealers(pairs, client=client, mode="online", progress=False)
    assert isinstance(caught.value, mm.TransportError)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.kind == "DeadlineExceeded"
    assert "deadline" in str(caught.value)
    assert KEY not in str(caught.value)
    requests = _all_abandoned(trickle_server)
    assert len(requests) == 2  # the first attempt and its one retry
    assert all(line.startswith("POST /v2/marketmatch/") for line in requests)


@pytest.mark.timeout(60)
def test_poll_timeout_bounds_a_slow_status_call(trickle_server: TrickleServer) -> None:
    """``wait(timeout=...)`` ends on time even while a status request is still being answered."""
    jobs = _client(trickle_server, deadline=30.0).batch
    with pytest.raises(mm.BatchTimeoutError) as caught:
        jobs.wait("job-in-flight", timeout=1.0, progress=False)
    assert caught.value.job_id == "job-in-flight"
    assert "did not answer a status request in time" in str(caught.value)
    (request,) = _all_abandoned(trickle_server)
    assert request.startswith("GET /v2/batch/marketmatch/rank/jobs/job-in-flight?")


@pytest.mark.timeout(60)
def test_a_trickling_download_body_ends_at_its_deadline(
    trickle_server: TrickleServer, tmp_path: Path
) -> None:
    """A download body slower than the minimum rate is cut off: its slot is reported spent."""
    trickle_server.headers = {"X-Remaining-Downloads": "0", "X-File-Checksum": "ab" * 32}
    jobs = _client(trickle_server).batch.configure(cache_dir=tmp_path / "cache")
    with pytest.raises(mm.DownloadError) as caught:
        jobs.download("job-done")
    message = str(caught.value)
    assert "cut off" in message
    assert "DeadlineExceeded" in message
    assert "no slot remains" in message
    (request,) = _all_abandoned(trickle_server)
    assert request.startswith("POST /v2/batch/marketmatch/rank/jobs/job-done/download?")
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / "job-done.csv.gz.lock"]
