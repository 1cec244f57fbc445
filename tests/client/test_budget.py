"""max_requests: refused before sending when the plan needs more, stopped when a run gets there.

Requests are counted by the sandbox (the account's spent quota), not only by the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._namespace import MarketMatchNamespace
from mm_pipeline._online._run import OnRequestFailed
from mm_pipeline._session import set_backoff_scale
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.conftest import make_vins
from tests.reliability._support import ServedRequests, placement_pairs


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with set_backoff_scale(0.0):
        yield


def known_pairs(vehicles: int, dealers: int) -> pl.DataFrame:
    """Decodable vehicles against sandbox rooftops (with a zip): every request answered 200."""
    cars = pl.DataFrame(
        {
            "vin": make_vins(vehicles, offset=40),
            "price": [21_000 + 150 * i for i in range(vehicles)],
            "miles": [5_000 + 1_000 * i for i in range(vehicles)],
        }
    )
    rooftops = Market.default().dealers.slice(500, dealers).select("source", "zip")
    return mm.cross_pairs(cars, rooftops)


def client_of(sb: Sandbox) -> mm.MarketMatchClient:
    return mm.MarketMatchClient(sb.api_key, sb.base_url, max_retries=4)


def test_a_plan_over_budget_is_refused_before_sending(clean_sandbox: Sandbox) -> None:
    """One request short of the plan: BudgetExceededError naming the plan, 0 requests sent."""
    pairs = known_pairs(3, 150)  # 3 groups in rounds
    planned = mm.plan(pairs).requests
    assert planned == mm.plan(pairs, mode="online").requests > 3
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        with pytest.raises(mm.BudgetExceededError) as caught:
            mm.rank_dealers(
                pairs, client=client_of(clean_sandbox), max_requests=planned - 1, progress=False
            )
        assert served() == 0
    error = caught.value
    assert (error.max_requests, error.planned, error.spent) == (planned - 1, planned, 0)
    assert f"needs {planned} requests for 450 pairs in 3 groups" in str(error)
    assert "nothing was sent" in str(error)
    exact = mm.rank_dealers(
        pairs, client=client_of(clean_sandbox), max_requests=planned, progress=False
    )
    assert exact.stats.requests == planned


def test_rank_vins_and_the_namespace_take_max_requests(clean_sandbox: Sandbox) -> None:
    """rank_vins and df.marketmatch refuse the same way."""
    pairs = known_pairs(45, 1)  # one dealer, 45 vehicles: 3 chunks and a re-ranking round
    planned = mm.plan(pairs, endpoint="vins").requests
    with pytest.raises(mm.BudgetExceededError, match="needs"):
        mm.rank_vins(pairs, client=client_of(clean_sandbox), max_requests=1, progress=False)
    namespace: MarketMatchNamespace = pairs.marketmatch  # type: ignore[attr-defined]
    with pytest.raises(mm.BudgetExceededError):
        namespace.rank_vins(client=client_of(clean_sandbox), max_requests=planned - 1)
    with pytest.raises(ValueError, match="max_requests must be a non-negative integer"):
        mm.rank_vins(pairs, client=client_of(clean_sandbox), max_requests=-1)


@pytest.mark.parametrize("on_request_failed", ["raise", "fail"])
def test_retries_that_push_past_the_budget_stop_the_run(
    clean_sandbox: Sandbox, on_request_failed: OnRequestFailed
) -> None:
    """Injected 503s: the retries count, the run stops at the budget with what it spent."""
    pairs = known_pairs(4, 20)  # 4 requests when nothing fails
    clean_sandbox.inject("503", count=2)
    with pytest.raises(mm.BudgetExceededError) as caught:
        mm.rank_dealers(
            pairs,
            client=client_of(clean_sandbox),
            mode="online",
            max_requests=4,
            on_request_failed=on_request_failed,
            progress=False,
        )
    error = caught.value
    assert (error.max_requests, error.spent) == (4, 4)
    assert "ranking stopped" in str(error)
    assert "retries" in str(error)
    assert "no partial result" in str(error)


def test_resends_after_a_422_count_against_the_budget(clean_sandbox: Sandbox) -> None:
    """A 422 naming an unknown dealer makes its chunk go again: that request counts too."""
    pairs = placement_pairs(2, 3)  # + an unknown rooftop (422, re-sent) and a refused VIN
    planned = mm.plan(pairs).requests
    with pytest.raises(mm.BudgetExceededError) as caught:
        mm.rank_dealers(
            pairs, client=client_of(clean_sandbox), max_requests=planned, progress=False
        )
    assert caught.value.spent == planned
    assert "answered 422" in str(caught.value)
    result = mm.rank_dealers(
        pairs, client=client_of(clean_sandbox), max_requests=planned + 2, progress=False
    )
    assert result.stats.requests == planned + result.stats.resent_after_422 == planned + 2


def test_answers_from_the_cache_are_free(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """A rerun from the answer cache passes max_requests=0; an empty cache is checked first."""
    pairs = known_pairs(2, 10)
    client = client_of(clean_sandbox)
    with pytest.raises(mm.BudgetExceededError, match="nothing was sent"):
        mm.rank_dealers(pairs, client=client, cache_dir=tmp_path, max_requests=0, progress=False)
    first = mm.rank_dealers(pairs, client=client, cache_dir=tmp_path, progress=False)
    rerun = mm.rank_dealers(
        pairs, client=client, cache_dir=tmp_path, max_requests=0, progress=False
    )
    assert (rerun.stats.requests, rerun.stats.cached_answers) == (0, first.stats.requests)


def test_the_batch_route_is_checked_on_its_own_figures(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """mode="batch": the budget is compared with the batch route's unavoidable requests."""
    pairs = known_pairs(3, 10)
    plan = mm.plan(pairs, mode="batch")
    assert plan.route == "batch"
    assert plan.batch is not None
    assert plan.requests_at_least == 4  # listing, upload, one poll, download
    with pytest.raises(mm.BudgetExceededError, match="batch route needs at least 4 requests"):
        mm.rank_dealers(
            pairs,
            client=client_of(clean_sandbox),
            mode="batch",
            cache_dir=tmp_path,
            max_requests=3,
            progress=False,
        )
    result = mm.rank_dealers(
        pairs,
        client=client_of(clean_sandbox),
        mode="batch",
        cache_dir=tmp_path,
        max_requests=plan.requests,
        progress=False,
    )
    assert plan.requests_at_least <= result.stats.requests <= plan.requests
    assert result.ranked.height == pairs.height


def test_polls_past_the_budget_stop_the_batch_route_and_a_rerun_adopts_the_job(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A held job: its polls reach max_requests, the run stops; the rerun adopts the job."""
    pairs = known_pairs(2, 5)
    client = client_of(clean_sandbox)
    clean_sandbox.hold_jobs()
    with pytest.raises(mm.BudgetExceededError) as caught:
        mm.rank_dealers(
            pairs, client=client, mode="batch", cache_dir=tmp_path, max_requests=4, progress=False
        )
    assert caught.value.spent == 4  # listing, upload, two polls
    (job,) = (j for j in client.batch.list() if j.status == "PROCESSING")
    clean_sandbox.hold_jobs(False)
    rerun = mm.rank_dealers(pairs, client=client, mode="batch", cache_dir=tmp_path, progress=False)
    assert rerun.stats.batch_job_ids == (job.job_id,)
    assert rerun.ranked.height == pairs.height
