"""rank_dealers / rank_vins online, end to end against the sandbox served over loopback.

Shared helpers (``market_dealers``, ``truth_order``, ``client_for``, ...) live in
``tests/client/conftest.py``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox, running
from mm_pipeline.sandbox._market import Market
from mm_pipeline.schemas import FailedMatch, RankedMatch
from tests.client.conftest import (
    UNDECODABLE_VIN,
    assert_accounted,
    assert_contiguous,
    client_for,
    market_dealers,
    truth_order,
    vehicles,
)


@pytest.fixture
def client(clean_sandbox: Sandbox) -> mm.MarketMatchClient:
    """A client for the freshly reset session sandbox."""
    return client_for(clean_sandbox)


def test_published_dealers_example(client: mm.MarketMatchClient) -> None:
    """The published /dealers/rank example comes back ranked 1..3, exact, in the sandbox order."""
    pairs = mm.cross_pairs(
        pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000]}),
        pl.DataFrame(
            {
                "source": [
                    "mbofaugusta.com",
                    "acceleride.mbofaugusta.com",
                    "acceleride.esterobaychevrolet.com",
                ],
                "zip": ["30907", "30907", "33928"],
            }
        ),
    )
    result = mm.rank_dealers(pairs, client=client, mode="online", progress=False)
    RankedMatch.validate(result.ranked)
    FailedMatch.validate(result.failed)
    assert result.ranked.get_column("vin_rank").to_list() == [1, 2, 3]
    assert result.ranked.get_column("rank_exact").all()
    vehicle = {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000}
    truth = truth_order(vehicle, pairs.select("source", "zip"))
    assert list(result.ranked.select("source", "zip").iter_rows()) == truth
    assert result.ranked.get_column("mc_location_id").null_count() == 0  # filled from answer
    assert (result.stats.requests, result.stats.mode) == (1, "online")


@pytest.mark.parametrize(
    ("dealer", "vins"),
    [
        (
            {"source": "mbofaugusta.com", "zip": "30907"},
            [
                ("5FNYF8H54SB000197", 37610, 14428),
                ("JTJBM7FX1K5236458", 35087, 73788),
                ("YV4L12RL4R1757085", 33085, 45490),
            ],
        ),
        (
            {"source": "carvana.com", "zip": "95765"},
            [
                ("JTMDFREV7JJ214231", 25990, 34307),
                ("7YAKN4DA1SY001014", 38990, 38990),
                ("KL79MPSL8SB184667", 20355, 15313),
                ("1FMCU0GD0JUD56190", 13790, 73592),
                ("4T1C11BKXNU065125", 22590, 50947),
            ],
        ),
    ],
)
def test_published_vins_examples(
    client: mm.MarketMatchClient, dealer: dict[str, str], vins: list[tuple[str, int, int]]
) -> None:
    """The published /vins/rank examples rank every VIN once, in the sandbox's order."""
    pairs = pl.DataFrame([{"vin": v, "price": p, "miles": m, **dealer} for v, p, m in vins])
    result = mm.rank_vins(pairs, client=client, progress=False)
    RankedMatch.validate(result.ranked)
    outcome = Market.default().rank_vins(
        dealer,  # type: ignore[arg-type]
        [{"vin": v, "price": p, "miles": m} for v, p, m in vins],
    )
    truth = [m["vin"] for m in outcome.ranked_matches]  # type: ignore[union-attr]
    assert result.ranked.get_column("vin").to_list() == truth
    assert result.ranked.get_column("vin_rank").to_list() == list(range(1, len(vins) + 1))
    assert result.failed.is_empty()


def test_result_dtypes_are_exactly_as_published(client: mm.MarketMatchClient) -> None:
    """ranked and failed carry exactly the documented columns and dtypes."""
    dealers = pl.concat(
        [market_dealers(2), pl.DataFrame({"source": ["gone.com"], "zip": ["10001"]})]
    )
    result = mm.rank_dealers(mm.cross_pairs(vehicles(1), dealers), client=client, progress=False)
    pair = {
        "vin": pl.String,
        "price": pl.Int64,
        "miles": pl.Int64,
        "source": pl.String,
        "zip": pl.String,
        "mc_location_id": pl.String,
    }
    scores = {"vin_score": pl.Float64, "dealer_ymm_score": pl.Float64, "vin_rank": pl.UInt32}
    assert result.ranked.schema == pl.Schema({**pair, **scores, "rank_exact": pl.Boolean})
    assert result.failed.schema == pl.Schema(
        {**pair, **scores, "error_code": pl.String, "error_message": pl.String}
    )
    assert (result.ranked.height, result.failed.height) == (2, 1)
    assert result.failed.select("vin_score", "dealer_ymm_score", "vin_rank").null_count().row(
        0
    ) == (1, 1, 1)


def test_thousand_pairs_across_many_groups(client: mm.MarketMatchClient) -> None:
    """1,200 pairs in 30 groups: all accounted for, contiguous, equal to the sandbox's ranking."""
    cars = vehicles(30)
    dealers = market_dealers(40, offset=100)
    pairs = mm.cross_pairs(cars, dealers)
    plan = mm.plan(pairs)
    result = mm.rank_dealers(pairs, client=client, mode="online", progress=False)
    RankedMatch.validate(result.ranked)
    assert result.ranked.height == 1_200
    assert_accounted(pairs, result)
    assert_contiguous(result.ranked, ["vin", "price", "miles"])
    assert (
        result.ranked.get_column("vin").unique(maintain_order=True).to_list()
        == cars["vin"].to_list()
    )
    for vin, group in result.ranked.group_by("vin", maintain_order=True):
        vehicle = cars.filter(pl.col("vin") == vin[0]).to_dicts()[0]
        assert list(group.select("source", "zip").iter_rows()) == truth_order(vehicle, dealers)
    assert result.stats.requests == plan.requests == 30
    assert (result.stats.groups, result.stats.pairs) == (30, 1_200)


def test_vins_groups_by_dealer_across_chunks(client: mm.MarketMatchClient) -> None:
    """rank_vins with 45 VINs per dealer ranks each dealer's VINs 1..45, the top ones exact."""
    cars = vehicles(45)
    dealers = market_dealers(3, offset=400)
    pairs = mm.cross_pairs(cars, dealers)
    result = mm.rank_vins(pairs, client=client, exact_top_k=5, progress=False)
    assert_accounted(pairs, result)
    assert_contiguous(result.ranked, ["source", "zip", "mc_location_id"])
    for dealer in dealers.to_dicts():
        spec = {"source": dealer["source"], "zip": dealer["zip"]}
        outcome = Market.default().rank_vins(spec, cars.to_dicts())  # type: ignore[arg-type]
        truth = [m["vin"] for m in outcome.ranked_matches]  # type: ignore[union-attr]
        group = result.ranked.filter(pl.col("source") == dealer["source"])
        # 2 full chunks, then their top 5 + the 5 left + 5 more of theirs as fill: 1..7 exact
        assert group.get_column("rank_exact").to_list() == [True] * 7 + [False] * 38
        assert group.get_column("vin").head(7).to_list() == truth[:7]
    assert result.stats.rerank_rounds == 1
    assert result.stats.requests == mm.plan(pairs, endpoint="vins", exact_top_k=5).requests


def test_unknown_dealer_is_pruned_and_the_other_99_ranked(client: mm.MarketMatchClient) -> None:
    """A 422 naming one unknown dealer of 100 fails that pair only; the 99 are ranked exactly."""
    known = market_dealers(99, offset=1_000)
    dealers = pl.concat([known, pl.DataFrame({"source": ["nosuchdealer.com"], "zip": ["10001"]})])
    cars = vehicles(1)
    result = mm.rank_dealers(mm.cross_pairs(cars, dealers), client=client, progress=False)
    assert result.ranked.height == 99
    assert result.failed.select("source", "error_code").rows() == [
        ("nosuchdealer.com", "dealer_not_found")
    ]
    assert "422" in result.failed.item(0, "error_message")
    truth = truth_order(cars.to_dicts()[0], known)
    assert list(result.ranked.select("source", "zip").iter_rows()) == truth
    assert result.ranked.get_column("rank_exact").all()
    assert (result.stats.requests, result.stats.resent_after_422) == (2, 1)


def test_multi_location_without_zip_and_undecodable_vin(client: mm.MarketMatchClient) -> None:
    """A multi-location source without zip and an undecodable VIN fail with their codes."""
    multi = Market.default().dealers.filter(pl.col("multi_location")).get_column("source").item(0)
    dealers = pl.concat(
        [market_dealers(5), pl.DataFrame({"source": [multi], "zip": [None]})],
        how="vertical_relaxed",
    )
    cars = pl.concat(
        [vehicles(2), pl.DataFrame({"vin": [UNDECODABLE_VIN], "price": [9000], "miles": [9]})]
    )
    pairs = mm.cross_pairs(cars, dealers)
    result = mm.rank_dealers(pairs, client=client, progress=False)
    assert_accounted(pairs, result)
    codes = dict(result.failed.group_by("error_code").len().iter_rows())
    assert codes == {"multi_location_requires_zip": 2, "vin_decode_failed": 6}
    assert result.ranked.height == 10
    FailedMatch.validate(result.failed)


def test_undecodable_vin_in_a_vins_request_comes_back_as_failed_item(
    client: mm.MarketMatchClient,
) -> None:
    """/vins/rank answers 200 with failed_items for one bad VIN; it lands in failed."""
    cars = pl.concat(
        [vehicles(3), pl.DataFrame({"vin": [UNDECODABLE_VIN], "price": [9000], "miles": [9]})]
    )
    pairs = mm.cross_pairs(cars, market_dealers(1))
    result = mm.rank_vins(pairs, client=client, progress=False)
    assert result.failed.select("vin", "error_code").rows() == [
        (UNDECODABLE_VIN, "vin_decode_failed")
    ]
    assert result.ranked.get_column("vin_rank").to_list() == [1, 2, 3]
    assert result.stats.resent_after_422 == 0


def test_location_id_only_pairs_get_their_zip_from_the_answer(
    client: mm.MarketMatchClient,
) -> None:
    """Dealers named by mc_location_id alone are ranked, with zip filled in from the answer."""
    rooftops = Market.default().dealers.slice(200, 4)
    pairs = mm.cross_pairs(vehicles(1), rooftops.select("source", "mc_location_id"))
    result = mm.rank_dealers(pairs, client=client, mode="batch", progress=False)
    assert result.stats.mode == "online"  # no zip: these cannot go through batch
    got = result.ranked.select("source", "zip", "mc_location_id").sort("source")
    assert got.rows() == rooftops.select("source", "zip", "mc_location_id").sort("source").rows()


def test_exact_duplicates_are_sent_once_and_appear_once(client: mm.MarketMatchClient) -> None:
    """Repeated rows (also after normalisation) are counted and ranked once."""
    pairs = mm.cross_pairs(vehicles(1), market_dealers(3))
    noisy = pairs.with_columns(
        pl.col("source").str.to_uppercase(), pl.col("price").cast(pl.Float64)
    )
    mixed = pl.concat([pairs, noisy, pairs], how="vertical_relaxed")  # price: Float64
    result = mm.rank_dealers(mixed, client=client, progress=False)
    assert result.ranked.height == 3
    assert result.stats.duplicates_removed == 6
    assert result.stats.rows == 9


def test_invalid_rows_raise_before_anything_is_sent() -> None:
    """on_invalid='raise' names rows, columns and values, and sends nothing."""
    pairs = mm.cross_pairs(vehicles(2), market_dealers(2)).with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(-5).otherwise(pl.col("price")).alias("price")
    )
    unreachable = mm.MarketMatchClient("mc_test_unused", "http://127.0.0.1:9")
    with pytest.raises(mm.InvalidInputError) as info:
        mm.rank_dealers(pairs, client=unreachable, progress=False)
    assert "row 1: price must be a positive whole number (got -5)" in str(info.value)
    assert info.value.failure_cases.select("row", "column").rows() == [(1, "price")]


def test_invalid_rows_fail_and_the_rest_is_ranked(client: mm.MarketMatchClient) -> None:
    """on_invalid='fail' puts invalid rows in failed with invalid_input and ranks the others."""
    pairs = mm.cross_pairs(vehicles(2), market_dealers(3))
    broken = pairs.with_columns(
        pl.when(pl.int_range(pl.len()) == 4)
        .then(pl.lit("02134-5678"))
        .otherwise(pl.col("zip"))
        .alias("zip")
    )
    result = mm.rank_dealers(broken, client=client, on_invalid="fail", progress=False)
    assert result.failed.select("error_code").to_series().to_list() == ["invalid_input"]
    assert "row 4: zip is a ZIP+4" in result.failed.item(0, "error_message")
    assert result.ranked.height == 5
    assert result.stats.invalid_rows == 1
    FailedMatch.validate(result.failed)


async def test_sync_call_inside_a_running_loop(client: mm.MarketMatchClient) -> None:
    """rank_dealers works from code that already runs an event loop (as in Jupyter)."""
    asyncio.get_running_loop()
    result = mm.rank_dealers(
        mm.cross_pairs(vehicles(1), market_dealers(3)), client=client, progress=False
    )
    assert result.ranked.height == 3


async def test_async_functions(client: mm.MarketMatchClient) -> None:
    """arank_dealers and arank_vins give the same frames as the sync functions."""
    pairs = mm.cross_pairs(vehicles(3), market_dealers(4))
    dealers_async = await mm.arank_dealers(pairs, client=client, progress=False)
    vins_async = await mm.arank_vins(pairs, client=client, progress=False)
    assert dealers_async.ranked.equals(mm.rank_dealers(pairs, client=client, progress=False).ranked)
    assert vins_async.ranked.equals(mm.rank_vins(pairs, client=client, progress=False).ranked)


def test_fault_rate_run_equals_clean_run(fast_retries: None) -> None:
    """With 20% of requests failing (429/5xx/drops), the frames equal those of a clean run."""
    pairs = mm.cross_pairs(vehicles(8), market_dealers(150, offset=3_000))
    with running(rate_limit=100_000, quota=10**9) as clean_sb:
        clean = mm.rank_dealers(pairs, client=client_for(clean_sb), progress=False)
    with running(rate_limit=100_000, quota=10**9, fault_rate=0.2, seed=11) as faulty_sb:
        faulty = mm.rank_dealers(
            pairs, client=client_for(faulty_sb, max_retries=20), progress=False
        )
    assert faulty.ranked.equals(clean.ranked)
    assert faulty.failed.equals(clean.failed)
    assert faulty.stats.retries > 0
    assert faulty.stats.requests > clean.stats.requests


def test_failed_request_raises_naming_what_was_affected(
    clean_sandbox: Sandbox, fast_retries: None
) -> None:
    """A chunk that still fails after retries raises; the note counts groups and pairs."""
    clean_sandbox.inject("500", count=1)
    pairs = mm.cross_pairs(vehicles(1), market_dealers(5))
    with pytest.raises(mm.ServerError) as info:
        mm.rank_dealers(pairs, client=client_for(clean_sandbox, max_retries=0), progress=False)
    note = "\n".join(info.value.__notes__)
    assert "no partial result" in note
    assert "1 of 1 groups (5 of 5 pairs) were not completed" in note


def test_failed_request_can_fail_its_group_instead(
    clean_sandbox: Sandbox, fast_retries: None
) -> None:
    """With on_request_failed='fail' the failing group is in failed, the other group ranked."""
    clean_sandbox.inject("503", count=1)
    pairs = mm.cross_pairs(vehicles(2), market_dealers(5))
    result = mm.rank_dealers(
        pairs,
        client=client_for(clean_sandbox, max_retries=0, max_concurrency=1),
        on_request_failed="fail",
        progress=False,
    )
    assert_accounted(pairs, result)
    assert result.failed.get_column("error_code").unique().to_list() == ["ranking_failed"]
    assert result.failed.height == result.ranked.height == 5
    assert result.failed.get_column("vin").n_unique() == 1


def test_the_key_appears_in_no_log_message_or_repr(
    clean_sandbox: Sandbox, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Forced errors, DEBUG logs, exception text, notes and result reprs never show the key."""
    key = clean_sandbox.api_key
    caplog.set_level(logging.DEBUG)
    pairs = mm.cross_pairs(vehicles(1), market_dealers(3))
    client = client_for(clean_sandbox, max_retries=1)
    clean_sandbox.inject("500", count=1)
    result = mm.rank_dealers(pairs, client=client, progress=False)  # one retry, then fine
    clean_sandbox.inject("502", count=2)
    with pytest.raises(mm.ServerError) as info:
        mm.rank_dealers(pairs, client=client, progress=False)
    texts = [
        caplog.text,
        str(info.value),
        repr(info.value),
        "\n".join(info.value.__notes__),
        repr(result),
        result._repr_html_(),
        repr(client),
    ]
    assert result.stats.retries == 1
    assert any("POST" in record.getMessage() for record in caplog.records)
    for text in texts:
        assert key not in text


def test_progress_bar_shows_requests(
    client: mm.MarketMatchClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """progress=True draws a bar over the requests; progress=False draws nothing."""
    pairs = mm.cross_pairs(vehicles(2), market_dealers(3))
    mm.rank_dealers(pairs, client=client, progress=False)
    assert "ranking dealers" not in capsys.readouterr().err
    mm.rank_dealers(pairs, client=client, progress=True)
    err = capsys.readouterr().err
    assert "ranking dealers" in err
    assert "2/2" in err


def test_result_reprs_summarise(client: mm.MarketMatchClient) -> None:
    """The terminal and notebook reprs name the counts and failure codes."""
    dealers = pl.concat(
        [market_dealers(3), pl.DataFrame({"source": ["gone.com"], "zip": ["10001"]})]
    )
    result = mm.rank_dealers(mm.cross_pairs(vehicles(1), dealers), client=client, progress=False)
    text = repr(result)
    assert "ranked:   3 pairs in 1 groups (3 ranks exact)" in text
    assert "dealer_not_found 1" in text
    html = result._repr_html_()
    assert "<table>" in html
    assert "dealer_not_found 1" in html


def test_one_rooftop_named_two_ways_is_ranked_once(client: mm.MarketMatchClient) -> None:
    """A dealer given with and without its zip is one rooftop: ranked once, the alias failed."""
    dealers = market_dealers(3, offset=50)
    alias = dealers.head(1).with_columns(pl.lit(None, pl.String).alias("zip"))
    pairs = mm.cross_pairs(vehicles(1), pl.concat([dealers, alias]))
    result = mm.rank_dealers(pairs, client=client, progress=False)
    assert result.ranked.height == 3
    assert result.failed.select("zip", "error_code").rows() == [(None, "duplicate_conflict")]
    assert "same rooftop as input row 0" in result.failed.item(0, "error_message")
    assert result.stats.consistency_violations == 0


def test_batch_mode_ranks_like_online(client: mm.MarketMatchClient, tmp_path: Path) -> None:
    """mode='batch' sends vehicles whose dealers all have a zip through a batch job."""
    pairs = mm.cross_pairs(vehicles(2), market_dealers(4, offset=60))
    online = mm.rank_dealers(pairs, client=client, mode="online", progress=False)
    batch = mm.rank_dealers(pairs, client=client, mode="batch", cache_dir=tmp_path, progress=False)
    assert batch.stats.mode == "batch"
    assert len(batch.stats.batch_job_ids) == 1
    columns = ["vin", "source", "zip", "vin_rank", "vin_score", "dealer_ymm_score"]
    assert batch.ranked.select(columns).equals(online.ranked.select(columns))
    RankedMatch.validate(batch.ranked)


def test_auto_mode_uses_batch_above_the_threshold(
    client: mm.MarketMatchClient, tmp_path: Path
) -> None:
    """Above 2,000 planned requests, auto sends zip pairs by batch and id-only pairs online."""
    by_zip = mm.cross_pairs(vehicles(2_001), market_dealers(1, offset=70))
    rooftop = Market.default().dealers.slice(71, 1).select("source", "mc_location_id")
    by_id = mm.cross_pairs(vehicles(2, offset=5_000), rooftop)
    pairs = pl.concat([by_zip, by_id])
    assert mm.plan(pairs).online_requests == 2_003
    result = mm.rank_dealers(pairs, client=client, cache_dir=tmp_path, progress=False)
    assert result.stats.mode == "online+batch"
    assert len(result.stats.batch_job_ids) == 1
    assert result.stats.requests < 50  # 2 online requests + submit/poll/download, not 2,003
    assert result.ranked.height == 2_003
    assert result.ranked.get_column("vin_rank").unique().to_list() == [1]
    assert_accounted(pairs, result)


def test_several_rooftops_of_one_source_in_one_request(client: mm.MarketMatchClient) -> None:
    """Rooftops sharing a source (by zip or id) are told apart and ranked as the sandbox does."""
    universe = Market.default().dealers
    multi = universe.filter(pl.col("multi_location"))
    source = multi.get_column("source").item(0)
    rooftops = multi.filter(pl.col("source") == source).head(3)
    dealers = pl.concat(
        [
            rooftops.head(2).select("source", "zip"),
            market_dealers(5, offset=90),
            rooftops.slice(2, 1).select("source", pl.lit(None, pl.String).alias("zip")),
        ]
    )
    by_id = rooftops.slice(2, 1).select("source", "mc_location_id")
    pairs = mm.cross_pairs(vehicles(1), dealers).with_columns(
        mc_location_id=pl.when(pl.col("zip").is_null())
        .then(pl.lit(by_id.item(0, "mc_location_id")))
        .otherwise(None)
    )
    result = mm.rank_dealers(pairs, client=client, progress=False)
    assert result.failed.is_empty()
    specs = [
        {k: v for k, v in row.items() if v is not None}
        for row in pairs.drop("vin", "price", "miles").to_dicts()
    ]
    outcome = Market.default().rank_dealers(vehicles(1).to_dicts()[0], specs)  # type: ignore[arg-type]
    truth = [(m["source"], m["zip"]) for m in outcome.ranked_matches]  # type: ignore[union-attr]
    assert list(result.ranked.select("source", "zip").iter_rows()) == truth
    assert result.ranked.filter(pl.col("source") == source).height == 3
