"""Chaos: the same work ranked under 20% and 50% injected faults equals a clean run.

Each faulty run has its own sandbox whose seeded fault plan answers that share of API requests
with one of every fault kind the sandbox has -- 429 with and without ``Retry-After``, 500, 502,
503, dropped connections, and responses slower than the client's timeout -- and the client
retries (zero backoff; ``Retry-After`` is still honoured by the rate limiter). Online ranking
(both endpoints) and batch ranking must come back with frames identical to a clean run's, the
retries counted in ``stats``; faults that outlast the retry budget end in a clear error. Two
faults the sandbox cannot produce -- a submit whose answer is lost, a download body that stops
half-way -- come from a stalling proxy between client and sandbox.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox, running
from tests.conftest import csv_gz, wait_until
from tests.reliability._proxy import DOWNLOAD, SUBMIT, StallingProxy, address
from tests.reliability._support import (
    ALL_FAULT_KINDS,
    JOBS,
    KEY,
    ServedRequests,
    account_jobs,
    assert_same_frames,
    placement_pairs,
)

pytestmark = pytest.mark.usefixtures("fast_backoff")

CLIENT_TIMEOUT = 0.3
"""Seconds; a ``slow`` fault (1 s) outlasts it."""
SLOW_MS = 1000.0
RATES = (0.2, 0.5)
SANDBOX: dict[str, Any] = {
    "api_keys": [KEY],
    "rate_limit": 100_000,
    "quota": 10**9,
    "job_seconds": 0.2,
}
DEALERS_PAIRS = placement_pairs(4, 59)  # 5 vehicles x 60 dealers: 3 chunks each, re-ranked
VINS_PAIRS = placement_pairs(23, 3)  # 4 dealers x 24 vehicles: 3 chunks each, re-ranked
BATCH_PAIRS = placement_pairs(8, 30)
GROUPS_PAIRS = placement_pairs(19, 9)  # 21 vehicles x 10 dealers: two requests per vehicle
DEALERS_OPTIONS: dict[str, Any] = {"mode": "online", "chunk_size": 20, "progress": False}
VINS_OPTIONS: dict[str, Any] = {"chunk_size": 8, "progress": False}
TRANSPORT_FAILURES = {"RemoteProtocolError", "ReadError", "ConnectError", "WriteError"}
TIMEOUTS = {"ReadTimeout", "WriteTimeout", "ConnectTimeout", "PoolTimeout"}


def _client(sb: Sandbox, **options: Any) -> mm.MarketMatchClient:
    settings: dict[str, Any] = {"timeout": CLIENT_TIMEOUT, "max_retries": 30, **options}
    return mm.MarketMatchClient(KEY, sb.base_url, **settings)


def _faulty(rate: float, seed: int = 7) -> AbstractContextManager[Sandbox]:
    return running(
        **SANDBOX, fault_rate=rate, fault_kinds=ALL_FAULT_KINDS, slow_ms=SLOW_MS, seed=seed
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, mm.RankResult]]:
    """The three workloads ranked once against a sandbox without faults."""
    cache = tmp_path_factory.mktemp("clean-cache")
    with running(**SANDBOX) as sb:
        client = _client(sb, timeout=30)  # the reference run: no timeout on a busy machine
        yield {
            "dealers": mm.rank_dealers(DEALERS_PAIRS, client=client, **DEALERS_OPTIONS),
            "vins": mm.rank_vins(VINS_PAIRS, client=client, **VINS_OPTIONS),
            "groups": mm.rank_dealers(GROUPS_PAIRS, client=client, mode="online", progress=False),
            "batch": mm.rank_dealers(
                BATCH_PAIRS, client=client, mode="batch", cache_dir=cache, progress=False
            ),
        }


def _outcomes(attempts: list[tuple[str, str, str]]) -> Counter[str]:
    """Count attempt outcomes by kind: statuses as they are, transport failures grouped."""
    kinds: Counter[str] = Counter()
    for _method, _path, outcome in attempts:
        if outcome in TRANSPORT_FAILURES:
            kinds["dropped"] += 1
        elif outcome in TIMEOUTS:
            kinds["timeout"] += 1
        else:
            kinds[outcome] += 1
    return kinds


def _faults(seen: Counter[str]) -> dict[str, int]:
    """The outcomes that were faults: all but successes and the API's 422 refusals."""
    return {k: v for k, v in sorted(seen.items()) if not k.startswith("2") and k != "422"}


def _record(figures: dict[str, Any], name: str, result: mm.RankResult, seen: Counter[str]) -> None:
    faults = _faults(seen)
    figures.setdefault("chaos", {})[name] = {
        "requests": result.stats.requests,
        "retries": result.stats.retries,
        "rate_limited": result.stats.rate_limited,
        "faults_survived": sum(faults.values()),
        "faults_by_kind": faults,
        "pairs": result.stats.rows,
        "ranked": result.ranked.height,
        "failed": result.failed.height,
    }


def _check_online_run(
    faulty: mm.RankResult, clean: mm.RankResult, seen: Counter[str], rate: float
) -> None:
    assert_same_frames(faulty, clean)
    assert clean.failed.height > 0  # the work has refused pairs, pruned after 422s
    assert clean.stats.retries == 0
    # Every attempt beyond the clean run's requests is a counted retry, and each answered a fault.
    assert faulty.stats.retries > 0
    assert faulty.stats.requests - faulty.stats.retries == clean.stats.requests
    assert faulty.stats.rate_limited == seen["429"]
    assert sum(_faults(seen).values()) == faulty.stats.retries
    if rate >= 0.5:  # enough draws that every kind shows up
        assert {"429", "500", "502", "503", "dropped", "timeout"} <= set(seen)


@pytest.mark.parametrize("rate", RATES)
def test_online_dealers_under_faults_equal_a_clean_run(
    rate: float,
    clean: dict[str, mm.RankResult],
    attempts: list[tuple[str, str, str]],
    figures: dict[str, Any],
) -> None:
    """rank_dealers online under faults returns the clean run's frames; stats count retries."""
    with _faulty(rate) as sb:
        result = mm.rank_dealers(DEALERS_PAIRS, client=_client(sb), **DEALERS_OPTIONS)
    seen = _outcomes(attempts)
    _check_online_run(result, clean["dealers"], seen, rate)
    assert clean["dealers"].stats.rerank_requests > 0  # the exact re-ranking rounds ran too
    _record(figures, f"online_dealers_{rate:.0%}", result, seen)


@pytest.mark.parametrize("rate", RATES)
def test_online_vins_under_faults_equal_a_clean_run(
    rate: float,
    clean: dict[str, mm.RankResult],
    attempts: list[tuple[str, str, str]],
    figures: dict[str, Any],
) -> None:
    """rank_vins under faults returns the clean run's frames; stats count retries."""
    with _faulty(rate) as sb:
        result = mm.rank_vins(VINS_PAIRS, client=_client(sb), **VINS_OPTIONS)
    seen = _outcomes(attempts)
    _check_online_run(result, clean["vins"], seen, rate)
    _record(figures, f"online_vins_{rate:.0%}", result, seen)


@pytest.mark.parametrize("rate", RATES)
def test_batch_under_faults_equals_a_clean_run(
    rate: float,
    clean: dict[str, mm.RankResult],
    attempts: list[tuple[str, str, str]],
    figures: dict[str, Any],
    tmp_path: Path,
) -> None:
    """mode="batch" under faults: the clean run's frames, one job, its result downloaded."""
    with _faulty(rate) as sb:
        result = mm.rank_dealers(
            BATCH_PAIRS, client=_client(sb), mode="batch", cache_dir=tmp_path, progress=False
        )
        jobs = account_jobs(sb)
    assert_same_frames(result, clean["batch"], ignore_job_ids=True)
    assert clean["batch"].failed.height > 0
    assert result.stats.retries > 0
    assert [job["job_id"] for job in jobs] == list(result.stats.batch_job_ids)
    assert jobs[0]["status"] == "COMPLETED"
    # A slot is spent when the server grants a download: each one this client received, plus
    # any granted after the client gave up waiting (a 'slow' fault outlasting its timeout).
    downloads = Counter(
        "got" if outcome == "200" else "timed out" if outcome in TIMEOUTS else "refused"
        for _method, path, outcome in attempts
        if path.endswith("/download")
    )
    assert 1 <= jobs[0]["download_count"] <= downloads["got"] + downloads["timed out"]
    seen = _outcomes(attempts)
    assert sum(_faults(seen).values()) == result.stats.retries
    _record(figures, f"batch_{rate:.0%}", result, seen)
    figures["chaos"][f"batch_{rate:.0%}"]["download_slots_spent"] = jobs[0]["download_count"]


# -- faults beyond the retry budget -------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["dealers", "vins"])
def test_faults_beyond_the_budget_raise_not_a_partial_result(endpoint: str) -> None:
    """Every request failing past its retries raises the last error, noting nothing was returned."""
    with running(**SANDBOX, fault_rate=1.0, fault_kinds=["503"]) as sb:
        client = _client(sb, max_retries=2, timeout=30)

        def rank() -> mm.RankResult:
            if endpoint == "dealers":
                return mm.rank_dealers(DEALERS_PAIRS, client=client, **DEALERS_OPTIONS)
            return mm.rank_vins(VINS_PAIRS, client=client, **VINS_OPTIONS)

        with pytest.raises(mm.ServerError) as info:
            rank()
    assert info.value.status == 503
    note = "\n".join(info.value.__notes__)
    assert "no partial result is returned" in note
    assert "were not completed" in note


def test_some_groups_beyond_the_budget_raise_or_are_accounted_for(
    clean: dict[str, mm.RankResult],
) -> None:
    """With too few retries, a run raises; asked to, it fails those groups and ranks the rest."""
    with _faulty(0.5, seed=1) as sb:
        with pytest.raises(mm.MarketMatchError) as info:
            mm.rank_dealers(
                GROUPS_PAIRS, client=_client(sb, max_retries=1), mode="online", progress=False
            )
        assert "no partial result is returned" in "\n".join(info.value.__notes__)
        partial = mm.rank_dealers(
            GROUPS_PAIRS,
            client=_client(sb, max_retries=1),
            mode="online",
            on_request_failed="fail",
            progress=False,
        )
    gave_up = partial.failed.filter(pl.col("error_code") == "ranking_failed")
    assert gave_up.height > 0
    assert gave_up["error_message"].str.contains("failed after retries").all()
    # Every pair is accounted for; the groups that were ranked are ranked exactly as clean.
    assert partial.ranked.height + partial.failed.height == GROUPS_PAIRS.height
    vehicle = ["vin", "price", "miles"]
    done = partial.ranked.select(vehicle).unique()
    assert done.height > 0
    assert gave_up.select(vehicle).unique().join(done, on=vehicle).is_empty()
    expected = clean["groups"].ranked.join(done, on=vehicle, maintain_order="left")
    assert_frame_equal(partial.ranked, expected)


def test_batch_faults_beyond_the_budget_raise_and_a_rerun_adopts_the_job(
    clean: dict[str, mm.RankResult], tmp_path: Path
) -> None:
    """Polls failing past their retries raise; the job is not lost: the next run adopts it."""
    with running(**SANDBOX) as sb:
        sb.hold_jobs()
        sb.inject("503", count=3, path_prefix=f"{JOBS}/")  # the first status poll, 3 times
        with pytest.raises(mm.ServerError):
            mm.rank_dealers(
                BATCH_PAIRS,
                client=_client(sb, max_retries=2, timeout=30),
                mode="batch",
                cache_dir=tmp_path,
                progress=False,
            )
        (job,) = account_jobs(sb)
        assert job["status"] == "PROCESSING"
        sb.hold_jobs(False)
        rerun = mm.rank_dealers(
            BATCH_PAIRS,
            client=_client(sb, timeout=30),
            mode="batch",
            cache_dir=tmp_path,
            progress=False,
        )
        assert [j["job_id"] for j in account_jobs(sb)] == [job["job_id"]]
    assert rerun.stats.batch_job_ids == (job["job_id"],)
    assert_same_frames(rerun, clean["batch"], ignore_job_ids=True)


# -- the sandbox side of a timeout ---------------------------------------------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("path", ["/v2/marketmatch/dealers/rank", JOBS])
def test_a_client_that_gave_up_leaves_no_server_error(path: str) -> None:
    """A request abandoned during a slow fault ends quietly: no traceback in the server log."""
    errors = _Errors()
    server_log = logging.getLogger("uvicorn.error")
    with running(**SANDBOX, slow_ms=400) as sb, ServedRequests.on(sb) as served:
        server_log.addHandler(errors)  # after the start: uvicorn's logging config resets handlers
        try:
            sb.inject("slow", path_prefix=path)
            body = (
                {"files": {"file": ("pairs.csv.gz", csv_gz([]))}}
                if path == JOBS
                else {"content": b"{}"}
            )
            timeout = httpx.Timeout(5, read=0.1)  # gives up waiting for the answer only
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(sb.url(path), params={"api_key": KEY}, timeout=timeout, **body)
            # The slow request is served (its quota spent) once the delay is over.
            wait_until(served, lambda n: n >= 1, timeout=10)
            assert served() == 1  # one more round trip through the server's event loop
        finally:
            server_log.removeHandler(errors)
    assert errors.messages == []


# -- answers lost on the way (a stalling link, which the sandbox cannot produce) ----------------

PROXY_TIMEOUT = 1.0
"""Seconds the client waits for an answer the proxy holds back."""


def test_a_lost_submit_answer_is_replayed_not_duplicated(
    clean: dict[str, mm.RankResult], tmp_path: Path
) -> None:
    """The submit's answer never arrives: the retry (same Idempotency-Key) gets the same job."""
    with running(**SANDBOX) as sb, StallingProxy(address(sb.base_url)) as proxy:
        proxy.stall(SUBMIT)
        client = mm.MarketMatchClient(KEY, proxy.base_url, timeout=PROXY_TIMEOUT)
        result = mm.rank_dealers(
            BATCH_PAIRS, client=client, mode="batch", cache_dir=tmp_path, progress=False
        )
        assert proxy.stalled.is_set()
        (job,) = account_jobs(sb)
    assert result.stats.batch_job_ids == (job["job_id"],)
    assert result.stats.retries >= 1
    assert job["download_count"] == 1
    assert_same_frames(result, clean["batch"], ignore_job_ids=True)


def test_a_download_cut_off_mid_body_is_fetched_again(
    clean: dict[str, mm.RankResult], tmp_path: Path
) -> None:
    """A result body that stops half-way is not trusted: one more slot, a verified file."""
    with running(**SANDBOX) as sb, StallingProxy(address(sb.base_url)) as proxy:
        proxy.stall(DOWNLOAD, body_bytes=1024)
        client = mm.MarketMatchClient(KEY, proxy.base_url, timeout=PROXY_TIMEOUT)
        with pytest.warns(
            mm.BatchDownloadWarning, match="a download slot was spent; slots left: 2"
        ):
            result = mm.rank_dealers(
                BATCH_PAIRS, client=client, mode="batch", cache_dir=tmp_path, progress=False
            )
        assert proxy.stalled.is_set()
        (job,) = account_jobs(sb)
    assert job["download_count"] == 2
    assert_same_frames(result, clean["batch"], ignore_job_ids=True)
