"""mm.plan prices the route a mode takes: online rounds, or batch jobs plus merge requests."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._batch._files import estimated_file_count, write_batch_files
from mm_pipeline._batch._plan import ASSUMED_JOB_SECONDS
from mm_pipeline._plan import BATCH_THRESHOLD_REQUESTS, DEFAULT_RATE_LIMIT, group_rounds
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.conftest import make_vins


def cars(count: int, *, offset: int = 70) -> pl.DataFrame:
    """Decodable vehicles."""
    return pl.DataFrame(
        {
            "vin": make_vins(count, offset=offset),
            "price": [18_000 + 10 * i for i in range(count)],
            "miles": [2_000 + 10 * i for i in range(count)],
        }
    )


def rooftops(count: int, *, offset: int = 0, by: str = "zip") -> pl.DataFrame:
    """Sandbox rooftops named by ``source`` and ``by`` (``zip`` or ``mc_location_id``)."""
    return Market.default().dealers.slice(offset, count).select("source", by)


def test_auto_below_the_threshold_takes_the_online_route_and_shows_both() -> None:
    """Small work: online; the batch figures are shown beside it for comparison."""
    plan = mm.plan(mm.cross_pairs(cars(3), rooftops(150)))
    assert (plan.mode, plan.route) == ("auto", "online")
    assert plan.requests == plan.online_requests == 3 * sum(group_rounds(150, 100, 10))
    assert plan.batch is not None
    assert (plan.batch.jobs, plan.batch.files, plan.batch.uploads, plan.batch.downloads) == (1,) * 4
    assert plan.batch.merge_requests == 0
    text = repr(plan)
    assert "route='online'" in text
    assert "6 in 2 round(s) (3 + 3); 3 for re-ranking; >= 1.2 s <- route" in text  # at 5 req/s
    assert "batch:    40 in 1 job(s); ~600.6 s\n" in text
    assert "1 listing, 1 upload, ~37 polls (600 s assumed), 1 download" in text
    assert "5 req/s, the documented default" in text


def test_auto_above_the_threshold_takes_the_batch_route() -> None:
    """Over 2,000 online requests: the batch route's figures are the plan's."""
    pairs = mm.cross_pairs(cars(2_001), rooftops(1))
    plan = mm.plan(pairs)
    assert plan.online_requests == 2_001 > BATCH_THRESHOLD_REQUESTS
    assert plan.route == "batch"
    assert plan.batch is not None
    assert plan.requests == plan.batch.requests == 3 + plan.batch.polls
    assert plan.requests_at_least == 4
    polls_time = 3 / DEFAULT_RATE_LIMIT + ASSUMED_JOB_SECONDS
    assert plan.estimated_seconds == pytest.approx(polls_time)
    assert "batch:    40 in 1 job(s); ~600.6 s <- route" in repr(plan)
    online = mm.plan(pairs, mode="online")
    assert (online.route, online.requests, online.batch) == ("online", 2_001, None)
    assert "batch:" not in repr(online)


def test_vehicles_with_dealers_without_a_zip_are_merged_online() -> None:
    """Hybrid: batch for the zip pairs, then per vehicle the batch top-K + the id-only dealers."""
    dealers = pl.concat(
        [rooftops(100), rooftops(3, offset=200, by="mc_location_id")], how="diagonal"
    )
    only_ids = mm.cross_pairs(cars(2, offset=9), rooftops(95, offset=300, by="mc_location_id"))
    pairs = pl.concat([mm.cross_pairs(cars(4), dealers), only_ids], how="diagonal")
    plan = mm.plan(pairs, mode="batch")
    assert plan.batch is not None
    assert plan.batch.pairs == 400
    # 4 vehicles: the batch top 10 + 3 id-only dealers, one request each; 2 vehicles whose
    # 95 dealers have no zip are ranked online from scratch (one request each).
    assert plan.batch.merge_requests_per_round == (6,)
    assert group_rounds(3, 100, 10, preranked=[100]) == [1]
    assert plan.requests == 3 + plan.batch.polls + 6  # listing, upload, download; polls; merges
    assert "online:  6 in 1 round(s) (6) for dealers without a zip" in repr(plan)


def test_batch_is_not_possible_without_a_zip_nor_for_vins() -> None:
    """No zip anywhere, or /vins/rank: the online route, and the plan says why."""
    ids_only = mm.cross_pairs(cars(2), rooftops(5, by="mc_location_id"))
    plan = mm.plan(ids_only, mode="batch")
    assert (plan.route, plan.batch) == ("online", None)
    assert "batch:    not possible (no pair has a zip)" in repr(plan)
    vins = mm.plan(mm.cross_pairs(cars(2), rooftops(5)), endpoint="vins")
    assert (vins.route, vins.batch) == ("online", None)
    assert "not possible (/vins/rank is always online)" in repr(vins)
    with pytest.raises(ValueError, match="mode must be"):
        mm.plan(ids_only, mode="fast")  # type: ignore[arg-type]


def test_the_rate_and_where_it_comes_from(sandbox: Sandbox) -> None:
    """Given > the client's configured > the client's learned rate > the documented default."""
    pairs = mm.cross_pairs(cars(1), rooftops(4))
    configured = mm.MarketMatchClient(sandbox.api_key, sandbox.base_url, rate_limit=20)
    assert mm.plan(pairs, client=configured).rate_source == "the client's configured rate_limit"
    assert mm.plan(pairs, client=configured, rate_limit=2).rate_limit == 2.0
    learner = mm.MarketMatchClient(sandbox.api_key, sandbox.base_url)
    assert mm.plan(pairs, client=learner).rate_limit == DEFAULT_RATE_LIMIT
    mm.rank_dealers(pairs, client=learner, mode="online", progress=False)
    learned = mm.plan(pairs, client=learner)
    assert learner.learned_rate is not None
    assert learned.rate_limit == learner.learned_rate > 1_000  # the sandbox allows 100,000/s
    assert "learned from the API's RateLimit-Limit" in repr(learned)
    namespace = pairs.marketmatch.plan(client=learner)  # type: ignore[attr-defined]
    assert namespace == learned


def test_the_file_estimate_matches_the_writer(tmp_path: Path) -> None:
    """estimated_file_count predicts how many files write_batch_files makes."""
    pairs = mm.cross_pairs(cars(400), rooftops(30))
    for cap in (10**9, 60_000, 12_000):
        written = write_batch_files(pairs, tmp_path / str(cap), max_file_bytes=cap)
        assert estimated_file_count(pairs, max_file_bytes=cap) == len(written)
    assert len(written) > 2


def test_auto_keeps_the_online_route_when_batch_would_cost_more() -> None:
    """Above the threshold, auto takes batch only if it is cheaper in requests.

    Each vehicle has one dealer by zip and one by ``mc_location_id`` only: batch ranks the
    first, then every vehicle needs an online merge request anyway, so the batch route costs
    its jobs on top of as many requests as the online route.
    """
    by_zip = mm.cross_pairs(cars(2_001), rooftops(1))
    by_id = mm.cross_pairs(cars(2_001), rooftops(1, offset=1, by="mc_location_id"))
    plan = mm.plan(pl.concat([by_zip, by_id], how="diagonal_relaxed"))
    assert plan.online_requests == 2_001 > BATCH_THRESHOLD_REQUESTS
    assert plan.batch is not None
    assert plan.batch.merge_requests == 2_001
    assert plan.batch.requests > plan.online_requests
    assert plan.route == "online"
    assert plan.requests == plan.online_requests
    assert mm.plan(by_zip).route == "batch"  # no merges: batch is the cheaper route
