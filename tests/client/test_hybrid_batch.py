"""Hybrid batch + online ranking: batch ranks the dealers with a zip, online merges the others.

The merge itself (``_exact.rank_group`` with pre-ranked chunks) is checked against an in-memory
ranker that keeps the ranking contract; the route end to end against the sandbox, whose
``Market.default().rank_dealers`` over a vehicle's whole dealer list is the truth.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mm_pipeline as mm
from mm_pipeline._batch._route import BATCH_THRESHOLD_REQUESTS
from mm_pipeline._frames import PAIR_COLUMNS, ROW
from mm_pipeline._hybrid import online_requests
from mm_pipeline._online._rounds import group_rounds, rank_group
from mm_pipeline._online._run import OnlineOptions, rank_online
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.client.conftest import (
    UNDECODABLE_VIN,
    assert_accounted,
    assert_contiguous,
    client_for,
    market_dealers,
    truth_order,
    vehicles,
)
from tests.conftest import SubsetRanker, server_jobs, wait_until

VEHICLE = ["vin", "price", "miles"]
K = 10


@pytest.fixture
def client(clean_sandbox: Sandbox) -> mm.MarketMatchClient:
    """A client for the freshly reset session sandbox."""
    return client_for(clean_sandbox)


def id_only(dealers: pl.DataFrame) -> pl.DataFrame:
    """The same rooftops named by source and mc_location_id alone (no zip)."""
    universe = Market.default().dealers.select("source", "zip", "mc_location_id")
    named = dealers.select("source", "zip").join(universe, on=["source", "zip"], how="left")
    return named.select("source", pl.lit(None, pl.String).alias("zip"), "mc_location_id")


def by_zip(dealers: pl.DataFrame) -> pl.DataFrame:
    """Rooftops named by source and zip, with an (empty) mc_location_id column."""
    return dealers.select("source", "zip", pl.lit(None, pl.String).alias("mc_location_id"))


def best_rooftops(vin: dict[str, Any], pool: pl.DataFrame, count: int) -> pl.DataFrame:
    """The ``count`` rooftops of ``pool`` that fit the vehicle best (by the sandbox's truth)."""
    best = pl.DataFrame(truth_order(vin, pool), schema=["source", "zip"], orient="row")
    return best.head(count)


def rank_batch(
    client: mm.MarketMatchClient, pairs: pl.DataFrame, tmp_path: Path, **options: Any
) -> mm.RankResult:
    """rank_dealers through the batch route (cache under tmp_path, no progress bar)."""
    options.setdefault("mode", "batch")
    return mm.rank_dealers(pairs, client=client, cache_dir=tmp_path, progress=False, **options)


def identified(frame: pl.DataFrame) -> list[tuple[str, str]]:
    """(source, zip) of each row: the rooftop as the API resolved it."""
    return list(frame.select("source", "zip").iter_rows())


# -- the merge rounds, against an in-memory ranker ---------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    batch_size=st.integers(min_value=0, max_value=400),
    unranked=st.integers(min_value=0, max_value=250),
    chunk_size=st.integers(min_value=2, max_value=100),
    data=st.data(),
)
async def test_merge_top_k_equals_ranking_of_the_whole_group(
    batch_size: int, unranked: int, chunk_size: int, data: st.DataObject
) -> None:
    """Merging unranked items into a pre-ranked chunk gives the group's exact ranks (>= K)."""
    top_k = data.draw(st.integers(min_value=1, max_value=chunk_size - 1), label="top_k")
    rng = random.Random(data.draw(st.integers(min_value=0, max_value=2**32), label="seed"))
    n = batch_size + unranked
    fit = {i: float(rng.randint(0, 40)) for i in range(n)}  # many ties on purpose
    ranker = SubsetRanker(fit)
    truth = ranker.truth(list(range(n)))
    batch = ranker.truth(list(range(batch_size)))  # the batch's exact order of its items
    items = list(range(batch_size, n))
    result = await rank_group(
        items, rank_chunk=ranker, chunk_size=chunk_size, exact_top_k=top_k, preranked=[batch]
    )
    assert sorted(result.order) == list(range(n))
    assert result.order[: result.exact] == truth[: result.exact]
    # all exact when the group fits one request, or nothing is merged into the batch order
    if n <= chunk_size or not unranked:
        assert result.exact == n
    else:
        assert result.exact >= top_k
    assert all(len(chunk) <= chunk_size for chunk in ranker.chunks)
    rounds = group_rounds(unranked, chunk_size, top_k, preranked=[batch_size])
    assert result.requests == len(ranker.chunks) == sum(rounds)
    assert result.rounds == len(rounds)
    # The batch's own order is never contradicted, even beyond K.
    assert [item for item in result.order if item < batch_size] == batch
    assert result.violations == 0


async def test_a_few_unranked_items_take_one_request() -> None:
    """300 pre-ranked items and 12 unranked ones: one request of the top 10, the 12, and fill."""
    fit = {i: float((i * 7919) % 1000) for i in range(312)}
    ranker = SubsetRanker(fit)
    batch = ranker.truth(list(range(300)))
    result = await rank_group(
        range(300, 312), rank_chunk=ranker, chunk_size=100, exact_top_k=10, preranked=[batch]
    )
    # the final request is filled up with the batch's next 78: ranks 1..88 are exact
    assert ranker.chunks == [batch[:10] + list(range(300, 312)) + batch[10:88]]
    assert (result.rounds, result.requests, result.exact) == (1, 1, 88)
    assert result.order[:88] == ranker.truth(list(range(312)))[:88]
    # ranks beyond: the rest of the final request, then the batch beyond its top 88
    final = ranker.truth(batch[:88] + list(range(300, 312)))
    assert result.order == final + batch[88:]


async def test_a_lone_pre_ranked_chunk_sends_nothing() -> None:
    """With nothing to merge, the pre-ranked order is the group's, exact, without a request."""
    ranker = SubsetRanker({i: float(i) for i in range(150)})
    batch = ranker.truth(list(range(150)))
    result = await rank_group(
        [], rank_chunk=ranker, chunk_size=100, exact_top_k=10, preranked=[batch]
    )
    assert (result.order, result.exact, result.rounds, result.requests) == (batch, 150, 0, 0)
    assert ranker.chunks == []


async def test_an_answer_contradicting_the_batch_order_is_counted() -> None:
    """The online ranking must keep the batch's relative order; an inversion is a violation."""
    fit = {i: float(i) for i in range(30)}

    async def contrary(chunk: list[int]) -> list[int]:
        return sorted(chunk, key=lambda item: fit[item])  # worst first: inverts the batch

    batch = sorted(range(20), key=lambda item: -fit[item])
    result = await rank_group(
        range(20, 30), rank_chunk=contrary, chunk_size=40, exact_top_k=10, preranked=[batch]
    )
    assert result.violations > 0


# -- the route, against the sandbox ------------------------------------------------------------


def test_hybrid_top_k_equals_the_ranking_of_every_dealer(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """The exact ranks of a vehicle with id-only dealers equal the sandbox's ranking of all."""
    cars = vehicles(4)
    zipped = market_dealers(150)
    first = cars.row(0, named=True)
    # The best rooftops (for the first vehicle) of another part of the market, named by id only,
    # so that the merge has to place them among the batch's best.
    best = best_rooftops(first, market_dealers(200, offset=150), 4)
    ids = id_only(best)
    id_rooftops = set(identified(best))
    pairs = mm.cross_pairs(cars, pl.concat([by_zip(zipped), ids]))
    result = rank_batch(client, pairs, tmp_path)

    assert_accounted(pairs, result)
    assert result.failed.is_empty()
    assert_contiguous(result.ranked, VEHICLE)
    stats = result.stats
    assert stats.mode == "online+batch"
    assert len(stats.batch_job_ids) == 1
    assert [job["job_id"] for job in server_jobs(clean_sandbox)] == list(stats.batch_job_ids)
    assert stats.merge_requests == cars.height  # 10 batch-best + 4 id-only: one request each
    assert (stats.rerank_requests, stats.consistency_violations) == (0, 0)
    placed_by_id = 0
    for vin in cars.iter_rows(named=True):
        ranked = identified(result.ranked.filter(pl.col("vin") == vin["vin"]))
        truth = truth_order(vin, pl.concat([zipped, ids.drop("zip")], how="diagonal"))
        # one request: the batch's top 10, the 4 id-only, and the batch's next 86 as fill
        exact = result.ranked.filter(pl.col("vin") == vin["vin"])["rank_exact"]
        assert exact.to_list() == [True] * 96 + [False] * (len(ranked) - 96)
        assert ranked[:96] == truth[:96]
        # beyond K too, the batch's own (exact) order of its dealers is kept
        by_batch = [pair for pair in ranked if pair not in id_rooftops]
        assert by_batch == [pair for pair in truth if pair not in id_rooftops]
        placed_by_id += sum(pair in id_rooftops for pair in ranked[:K])
    assert placed_by_id > 0, "the merge placed no id-only dealer in a top K: a weak test"
    # id-only rows keep their given id and come back with the zip the API resolved
    merged = result.ranked.filter(pl.col("mc_location_id").is_in(ids["mc_location_id"].implode()))
    assert merged.height == cars.height * ids.height
    assert set(identified(merged)) == id_rooftops


def test_vehicles_whose_dealers_all_have_a_zip_stay_exact(
    client: mm.MarketMatchClient, tmp_path: Path
) -> None:
    """In a mixed frame, vehicles without id-only dealers keep their batch ranks, all exact."""
    zipped = by_zip(market_dealers(120, offset=300))
    ids = id_only(market_dealers(2, offset=470))
    hybrid = mm.cross_pairs(vehicles(2), pl.concat([zipped, ids]))
    plain = mm.cross_pairs(vehicles(2, offset=50), zipped)
    result = rank_batch(client, pl.concat([hybrid, plain]), tmp_path)
    assert_accounted(pl.concat([hybrid, plain]), result)
    exact = result.ranked.group_by("vin").agg(pl.col("rank_exact").all(), pl.len())
    plain_vins = set(plain["vin"])
    for vin, all_exact, _ in exact.iter_rows():
        assert all_exact == (vin in plain_vins)  # 122 dealers: the hybrid ones exact to K
    assert result.stats.merge_requests == 2


def test_a_vehicle_that_fits_one_request_is_exact_throughout(
    client: mm.MarketMatchClient, tmp_path: Path
) -> None:
    """30 batch-ranked dealers and 3 id-only ones go in one merge request: every rank exact."""
    zipped = market_dealers(30, offset=430)
    ids = id_only(market_dealers(3, offset=465))
    cars = vehicles(2, offset=80)
    result = rank_batch(client, mm.cross_pairs(cars, pl.concat([by_zip(zipped), ids])), tmp_path)
    assert result.ranked.height == 66
    assert result.ranked["rank_exact"].all()
    assert result.stats.merge_requests == 2
    for vin in cars.iter_rows(named=True):
        ranked = identified(result.ranked.filter(pl.col("vin") == vin["vin"]))
        assert ranked == truth_order(vin, pl.concat([zipped, ids.drop("zip")], how="diagonal"))


def test_failures_of_either_part_land_in_failed(
    client: mm.MarketMatchClient, tmp_path: Path
) -> None:
    """Batch failures (result codes) and online ones (422) are in failed; the rest is ranked."""
    good = vehicles(2, offset=20)
    cars = pl.concat(
        [good, pl.DataFrame({"vin": [UNDECODABLE_VIN], "price": [21000], "miles": [900]})]
    )
    zipped = by_zip(market_dealers(30, offset=500))
    ghost_zip = pl.DataFrame(
        {"source": ["no-such-dealer.example"], "zip": ["30907"], "mc_location_id": [None]},
        schema_overrides={"mc_location_id": pl.String},
    )
    ids = id_only(market_dealers(3, offset=540))
    ghost_id = ids.head(1).with_columns(pl.lit("no-such-location").alias("mc_location_id"))
    pairs = mm.cross_pairs(cars, pl.concat([zipped, ghost_zip, ids, ghost_id]))
    result = rank_batch(client, pairs, tmp_path)

    assert_accounted(pairs, result)
    failed = result.failed
    undecodable = failed.filter(pl.col("vin") == UNDECODABLE_VIN)
    assert undecodable.height == 35  # every dealer of that vehicle, by batch and online
    assert set(undecodable["error_code"]) == {"vin_decode_failed"}
    others = failed.filter(pl.col("vin") != UNDECODABLE_VIN)
    assert others.height == 2 * good.height
    assert set(others["error_code"]) == {"dealer_not_found"}
    assert set(others["source"]) == {"no-such-dealer.example", ghost_id["source"][0]}
    assert sorted(others["mc_location_id"].drop_nulls()) == ["no-such-location"] * 2
    assert result.ranked.height == good.height * 33
    assert_contiguous(result.ranked, VEHICLE)
    for vin in good.iter_rows(named=True):
        ranked = result.ranked.filter(pl.col("vin") == vin["vin"])
        truth = truth_order(vin, pl.concat([zipped, ids.drop("zip")], how="diagonal"))
        assert identified(ranked.head(K)) == truth[:K]


def test_a_failed_job_fails_its_pairs_and_the_rest_is_ranked_online(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A FAILED job with on_job_failed="fail": its pairs fail, the id-only ones rank online."""
    clean_sandbox.hold_jobs()
    zipped = by_zip(market_dealers(12, offset=600))
    ids = id_only(market_dealers(3, offset=620))
    pairs = mm.cross_pairs(vehicles(2, offset=30), pl.concat([zipped, ids]))

    def fail_when_submitted() -> None:
        jobs = wait_until(lambda: server_jobs(clean_sandbox), bool, timeout=30)
        clean_sandbox.fail_job(jobs[0]["job_id"], error_code="processing_failed")

    failer = threading.Thread(target=fail_when_submitted)
    failer.start()
    result = rank_batch(client, pairs, tmp_path, on_job_failed="fail")
    failer.join(30)
    assert_accounted(pairs, result)
    assert result.failed.height == 24
    assert set(result.failed["error_code"]) == {"processing_failed"}
    assert result.failed["zip"].null_count() == 0
    assert result.ranked.height == 6
    assert result.ranked["zip"].null_count() == 0  # resolved by the API
    assert result.ranked["rank_exact"].all()  # three dealers per vehicle: one request each
    assert_contiguous(result.ranked, VEHICLE)
    assert result.stats.merge_requests == 0


def test_a_failing_merge_request_fails_its_whole_vehicle(
    clean_sandbox: Sandbox,
    tmp_path: Path,
    fast_retries: None,
) -> None:
    """A merge request that fails after retries puts all its vehicle's pairs in failed."""
    zipped = by_zip(market_dealers(8, offset=700))
    ids = id_only(market_dealers(2, offset=710))
    pairs = mm.cross_pairs(vehicles(2, offset=40), pl.concat([zipped, ids]))
    client = client_for(clean_sandbox, max_retries=0, max_concurrency=1)
    clean_sandbox.inject("503", count=1, path_prefix="/v2/marketmatch/dealers/rank")
    with pytest.raises(mm.ServerError) as info:
        rank_batch(client, pairs, tmp_path)
    note = "\n".join(info.value.__notes__)
    assert "no partial result" in note
    assert "The failing group has 10 pairs" in note

    clean_sandbox.inject("503", count=1, path_prefix="/v2/marketmatch/dealers/rank")
    result = rank_batch(client, pairs, tmp_path, on_request_failed="fail")
    assert_accounted(pairs, result)
    assert result.failed.height == result.ranked.height == 10
    assert result.failed["vin"].n_unique() == 1
    assert set(result.failed["error_code"]) == {"ranking_failed"}
    # the vehicle's batch-ranked pairs fail with it: no partial ranking that looks complete
    assert result.failed["zip"].null_count() == ids.height


def test_auto_mode_sends_a_cross_product_through_one_job(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Auto mode on a cross product with 3 id-only dealers: one job, one request per vehicle."""
    cars = vehicles(100, offset=100)
    dealers = pl.concat(
        [by_zip(market_dealers(100, offset=800)), id_only(market_dealers(3, offset=900))]
    )
    pairs = mm.cross_pairs(cars, dealers)
    online_plan = mm.plan(pairs, chunk_size=8)
    assert online_plan.online_requests > BATCH_THRESHOLD_REQUESTS
    result = mm.rank_dealers(pairs, client=client, chunk_size=8, cache_dir=tmp_path, progress=False)
    assert_accounted(pairs, result)
    assert result.failed.is_empty()
    assert len(server_jobs(clean_sandbox)) == 1
    stats = result.stats
    assert stats.mode == "online+batch"
    assert stats.merge_requests == cars.height  # top 4 of the batch + 3 id-only = 7 <= 8
    assert stats.requests < cars.height + 20  # + submit, list, polls, download
    assert online_plan.online_requests == cars.height * sum(group_rounds(103, 8, 4))
    has_zip = pl.col("zip").is_not_null()
    predicted = online_requests(
        pairs.filter(~has_zip), pairs.filter(has_zip), chunk_size=8, exact_top_k=4
    )
    assert predicted == stats.merge_requests  # the progress bar's total
    # the batch's top 4, 3 id-only, and the batch's 5th as fill: ranks 1..5 exact
    exact = result.ranked.group_by("vin").agg(pl.col("rank_exact").sum())["rank_exact"]
    assert (exact == 5).all()


def test_batch_ranks_are_per_vehicle_when_a_vin_has_two_prices(
    client: mm.MarketMatchClient, tmp_path: Path
) -> None:
    """The batch ranks a VIN's rows together; each vehicle (vin, price, miles) gets 1..N."""
    dealers = market_dealers(6, offset=950)
    car = vehicles(1, offset=60)
    repriced = car.with_columns(pl.col("price") + 9_000, pl.col("miles") + 40_000)
    pairs = pl.concat(
        [mm.cross_pairs(car, dealers.head(3)), mm.cross_pairs(repriced, dealers.tail(3))]
    )
    batch = rank_batch(client, pairs, tmp_path)
    online = mm.rank_dealers(pairs, client=client, mode="online", progress=False)
    assert_contiguous(batch.ranked, VEHICLE)
    columns = [*VEHICLE, "source", "zip", "vin_rank", "vin_score"]
    assert (
        batch.ranked.select(columns)
        .sort(columns)
        .equals(online.ranked.select(columns).sort(columns))
    )


async def test_batch_scores_are_checked_against_the_online_answer(
    client: mm.MarketMatchClient,
) -> None:
    """A pre-ranked pair whose online score differs from its batch score is a violation."""
    zipped = by_zip(market_dealers(5, offset=980))
    ids = id_only(market_dealers(2, offset=990))
    pairs = mm.cross_pairs(vehicles(1, offset=70), pl.concat([zipped, ids]))
    pairs = pairs.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    truth = mm.rank_dealers(
        pairs.select(PAIR_COLUMNS), client=client, mode="online", progress=False
    )
    batch_like = (
        pairs.filter(pl.col("zip").is_not_null())
        .join(
            truth.ranked.select("source", "zip", "vin_rank", "vin_score", "dealer_ymm_score"),
            on=["source", "zip"],
        )
        .with_columns(
            answered_mc_location_id=pl.lit(None, pl.String),
            vin_score=pl.when(pl.col("vin_rank") == 1)
            .then(pl.col("vin_score") + 1)
            .otherwise("vin_score"),
        )
    )
    async with client.session() as session:
        options = OnlineOptions(
            endpoint="dealers", chunk_size=100, exact_top_k=K, concurrency=2, progress=False
        )
        outcome = await rank_online(
            pairs.filter(pl.col("zip").is_null()),
            session=session,
            options=options,
            preranked=batch_like,
        )
    assert outcome.counters.consistency_violations == 1
    assert outcome.counters.merge_requests == 1
    assert outcome.failed.is_empty()
    assert identified(outcome.ranked.sort("vin_rank")) == identified(truth.ranked)
