"""rank_dealers through batch jobs, against the sandbox: complete, split, resumable, consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._batch._route import (
    BATCH_THRESHOLD_REQUESTS,
    BatchCounts,
    BatchOptions,
    rank_pairs_batch,
)
from mm_pipeline._frames import FAILED_SCHEMA, RANKED_SCHEMA
from mm_pipeline.sandbox import Sandbox
from tests._support.batch import EXAMPLE_VEHICLES, make_pairs
from tests.conftest import server_jobs, wait_until


@pytest.fixture
def client(clean_sandbox: Sandbox) -> mm.MarketMatchClient:
    """A client on account A of a reset sandbox."""
    return mm.MarketMatchClient(api_key=clean_sandbox.api_key, base_url=clean_sandbox.base_url)


def _key(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("vin", "price", "miles", "source", "zip").sort(pl.all())


def _assert_accounted(pairs: pl.DataFrame, result: mm.RankResult) -> None:
    both = pl.concat([_key(result.ranked), _key(result.failed)])
    assert both.height == pairs.height
    assert both.sort(pl.all()).equals(_key(pairs))


async def _route(
    client: mm.MarketMatchClient, pairs: pl.DataFrame, tmp_path: Path, **options: object
) -> tuple[pl.DataFrame, pl.DataFrame, tuple[str, ...], BatchCounts]:
    """Run the batch route directly (fast polling) on normalised pairs."""
    settings = BatchOptions(
        cache_dir=tmp_path / "cache",
        poll_interval=0.02,
        max_poll_interval=0.2,
        **options,  # type: ignore[arg-type]
    )
    prepared = pairs.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    async with client.session() as session:
        outcome = await rank_pairs_batch(
            prepared, session=session, options=settings, progress=False
        )
    return outcome.ranked, outcome.failed, outcome.job_ids, outcome.counts


def test_rank_dealers_batch_end_to_end(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """mode="batch" returns the same typed frames as online, every pair once, exact ranks."""
    pairs = make_pairs(40)
    result = mm.rank_dealers(pairs, client=client, mode="batch", cache_dir=tmp_path, progress=False)
    assert result.ranked.schema == RANKED_SCHEMA
    assert result.failed.schema == FAILED_SCHEMA
    _assert_accounted(pairs, result)
    assert result.ranked["rank_exact"].all()
    ranks = result.ranked.group_by("vin").agg(pl.col("vin_rank").sort())
    for row in ranks.iter_rows(named=True):
        assert row["vin_rank"] == list(range(1, len(row["vin_rank"]) + 1))
    assert len(result.stats.batch_job_ids) == 1
    assert result.stats.mode == "batch"
    assert [j["job_id"] for j in server_jobs(clean_sandbox)] == list(result.stats.batch_job_ids)


SAMPLE_DATA = Path(__file__).parents[2] / "sample_data"


def test_sample_data_end_to_end(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """The committed sample pairs rank through one batch job, every pair ranked, exactly."""
    pairs = pl.read_csv(SAMPLE_DATA / "pairs.csv.gz", schema_overrides={"zip": pl.String})
    result = mm.rank_dealers(pairs, client=client, mode="batch", cache_dir=tmp_path, progress=False)
    _assert_accounted(pairs, result)
    assert result.failed.height == 0
    (job,) = server_jobs(clean_sandbox)
    assert (job["item_count"], job["successful_count"]) == (pairs.height, pairs["vin"].n_unique())
    assert (
        result.ranked.group_by("vin")
        .agg((pl.col("vin_rank").max() == pl.len()).alias("dense"))["dense"]
        .all()
    )


def test_bad_sample_rows_get_their_codes(client: mm.MarketMatchClient, tmp_path: Path) -> None:
    """The sample's problem rows: caught locally (invalid_input) or failed with the batch code."""
    pairs = pl.read_csv(SAMPLE_DATA / "bad_pairs.csv", infer_schema=False)
    result = mm.rank_dealers(
        pairs, client=client, mode="batch", on_invalid="fail", cache_dir=tmp_path, progress=False
    )
    assert result.ranked.height + result.failed.height + result.stats.duplicates_removed == 19
    codes = dict(result.failed["error_code"].value_counts().rows())
    # decoded by the server: an unknown manufacturer, a model year too new (from the batch file)
    assert codes.pop("vin_decode_failed") == 2
    assert codes.pop("dealer_not_found") == 1
    assert codes.pop("multi_location_requires_zip") == 1  # no zip: ranked online
    assert set(codes) == {"invalid_input"}  # the rest never leaves the client


def test_batch_agrees_with_online(client: mm.MarketMatchClient, tmp_path: Path) -> None:
    """Scores are equal; ranks are equal wherever the online ranks are exact."""
    pairs = make_pairs(150, vehicles=3)
    online = mm.rank_dealers(pairs, client=client, mode="online", progress=False)
    batch = mm.rank_dealers(pairs, client=client, mode="batch", cache_dir=tmp_path, progress=False)
    keys = ["vin", "source", "zip"]
    joined = online.ranked.join(batch.ranked, on=keys, suffix="_batch")
    assert joined.height == pairs.height
    assert (joined["vin_score"] == joined["vin_score_batch"]).all()
    assert (joined["dealer_ymm_score"] == joined["dealer_ymm_score_batch"]).all()
    exact = joined.filter("rank_exact")
    assert exact.height >= 3
    assert (exact["vin_rank"] == exact["vin_rank_batch"]).all()


async def test_split_into_several_jobs(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A small cap splits the work by VIN into jobs run one after another; same result."""
    pairs = make_pairs(120)
    ranked_one, failed_one, jobs_one, _ = await _route(client, pairs, tmp_path / "one")
    clean_sandbox.reset()
    ranked, failed, job_ids, counts = await _route(
        client, pairs, tmp_path / "many", max_file_bytes=3_000
    )
    assert len(job_ids) == counts.files == counts.jobs > 2
    assert len(jobs_one) == 1
    assert ranked.sort("vin", "vin_rank").equals(ranked_one.sort("vin", "vin_rank"))
    assert failed.height == failed_one.height == 0
    assert {j["status"] for j in server_jobs(clean_sandbox)} == {"COMPLETED"}


async def test_rerun_adopts_jobs_and_spends_no_download(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Running the same work twice reuses the jobs and the cached files: no new job, no slot."""
    pairs = make_pairs(60)
    first = await _route(client, pairs, tmp_path, max_file_bytes=8_000)
    second = await _route(client, pairs, tmp_path, max_file_bytes=8_000)
    assert second[2] == first[2]
    assert second[3].jobs_adopted == len(first[2])
    assert (second[3].downloads, second[3].cache_hits) == (0, len(first[2]))
    assert second[0].equals(first[0])
    for job in server_jobs(clean_sandbox):
        assert job["download_count"] == 1
    assert len(server_jobs(clean_sandbox)) == len(first[2])


def test_failed_job_raises_or_fails_every_row(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A FAILED job raises BatchJobFailed, or with on_job_failed="fail" fails every pair."""
    clean_sandbox.hold_jobs()
    pairs = make_pairs(10)

    def fail_when_submitted() -> None:
        jobs = wait_until(lambda: server_jobs(clean_sandbox), bool, timeout=30)
        clean_sandbox.fail_job(jobs[0]["job_id"], error_code="processing_failed")

    failer = threading.Thread(target=fail_when_submitted)
    failer.start()
    with pytest.raises(mm.BatchJobFailed) as info:
        mm.rank_dealers(pairs, client=client, mode="batch", cache_dir=tmp_path, progress=False)
    failer.join(30)
    assert info.value.error_code == "processing_failed"

    clean_sandbox.reset()
    clean_sandbox.hold_jobs()
    failer = threading.Thread(target=fail_when_submitted)
    failer.start()
    result = mm.rank_dealers(
        pairs,
        client=client,
        mode="batch",
        cache_dir=tmp_path,
        progress=False,
        on_job_failed="fail",
    )
    failer.join(30)
    assert result.ranked.height == 0
    _assert_accounted(pairs, result)
    assert set(result.failed["error_code"]) == {"processing_failed"}
    assert result.failed["error_message"].str.contains(result.stats.batch_job_ids[0]).all()


async def test_unknown_dealer_rows_fail_with_the_result_code(
    client: mm.MarketMatchClient, tmp_path: Path
) -> None:
    """Rows the batch could not rank go to failed with the code from the result file."""
    pairs = make_pairs(5, vehicles=2)
    ghost = pairs.head(1).with_columns(pl.lit("no-such-dealer.example").alias("source"))
    ranked, failed, _, counts = await _route(client, pl.concat([pairs, ghost]), tmp_path)
    assert ranked.height == pairs.height
    assert failed.height == 1
    assert failed["source"].to_list() == ["no-such-dealer.example"]
    assert failed["error_code"].to_list() == ["dealer_not_found"]
    assert counts.missing_from_result == 0
    assert set(failed.columns) >= {"_row"}


async def test_duplicate_vin_dealer_rows_are_explained(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """The same VIN and dealer at another price is not sent: failed as duplicate_conflict."""
    pairs = make_pairs(4, vehicles=1)
    repriced = pairs.head(2).with_columns(pl.col("price") + 500)
    ranked, failed, (job_id,), counts = await _route(client, pl.concat([pairs, repriced]), tmp_path)
    assert counts.duplicate_vin_dealer_rows == 2
    assert (counts.rows_sent, counts.unique_vins) == (4, 1)
    assert ranked.height == 4
    assert failed["error_code"].to_list() == ["duplicate_conflict"] * 2
    assert failed["_row"].to_list() == [4, 5]
    assert failed["error_message"][0].startswith("row 4: same vin and dealer as row 0")
    assert clean_sandbox.job(job_id)["item_count"] == 4
    result = mm.rank_dealers(
        pl.concat([pairs, repriced]),
        client=client,
        mode="batch",
        cache_dir=tmp_path,
        progress=False,
    )
    assert result.stats.conflicts == 2
    assert result.failed["error_code"].to_list() == ["duplicate_conflict"] * 2


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    import polars as pl
    import mm_pipeline as mm

    base_url, parquet, cache = sys.argv[1:4]
    client = mm.MarketMatchClient(base_url=base_url)
    mm.rank_dealers(pl.read_parquet(parquet), client=client, mode="batch",
                    client_reference="nightly", cache_dir=cache, progress=False)
    """
)


def test_rerun_after_kill_adopts_the_same_job(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """rank_dealers killed (SIGKILL) right after its submit: the rerun adopts that one job."""
    clean_sandbox.hold_jobs()
    pairs = make_pairs(25)
    parquet = tmp_path / "pairs.parquet"
    pairs.write_parquet(parquet)
    env = {**os.environ, "MARKETCHECK_API_KEY": clean_sandbox.api_key}
    process = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, clean_sandbox.base_url, str(parquet), str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:  # the moment of the submit: the job appears in the account's list
        created = wait_until(lambda: server_jobs(clean_sandbox), bool, timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    clean_sandbox.hold_jobs(False)
    result = mm.rank_dealers(
        pairs,
        client=client,
        mode="batch",
        client_reference="nightly",
        cache_dir=tmp_path,
        progress=False,
    )
    assert result.stats.batch_job_ids == (created[0]["job_id"],)
    _assert_accounted(pairs, result)
    assert result.failed.height == 0
    (job,) = server_jobs(clean_sandbox)
    assert (job["status"], job["download_count"]) == ("COMPLETED", 1)


@pytest.mark.slow
def test_hundred_thousand_pairs(client: mm.MarketMatchClient, tmp_path: Path) -> None:
    """100k+ pairs go through one batch job and come back complete."""
    dealers = 100_000 // len(EXAMPLE_VEHICLES) + 1
    pairs = make_pairs(dealers)
    assert pairs.height >= 100_000
    result = mm.rank_dealers(pairs, client=client, mode="batch", cache_dir=tmp_path, progress=False)
    _assert_accounted(pairs, result)
    assert result.ranked.height + result.failed.height == pairs.height
    assert result.ranked.group_by("vin").agg(pl.col("vin_rank").max())["vin_rank"].max() == (
        result.ranked.group_by("vin").len()["len"].max()
    )


def test_auto_picks_batch_above_the_threshold(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """mode="auto" ranks online below BATCH_THRESHOLD_REQUESTS requests and by batch above."""
    small = make_pairs(20, vehicles=2)
    assert mm.plan(small, endpoint="dealers").requests <= BATCH_THRESHOLD_REQUESTS
    assert mm.rank_dealers(small, client=client, progress=False).stats.mode == "online"
    large = make_pairs(2_300)
    assert mm.plan(large, chunk_size=10).online_requests > BATCH_THRESHOLD_REQUESTS
    result = mm.rank_dealers(
        large, client=client, chunk_size=10, cache_dir=tmp_path, progress=False
    )
    assert result.stats.mode == "batch"
    assert len(result.stats.batch_job_ids) == 1
    _assert_accounted(large, result)


def test_a_given_location_id_is_checked_against_the_rooftop_ranked(
    client: mm.MarketMatchClient, tmp_path: Path
) -> None:
    """The batch file ranks by (source, zip); a row whose mc_location_id names another rooftop
    (or none) fails as dealer_not_found, as it does online, and the other rows stay ranked."""
    from mm_pipeline.sandbox._market import Market  # noqa: PLC0415

    carvana = Market.default().dealers.filter(source="carvana.com")
    here = carvana.filter(zip="95765")["mc_location_id"].item()
    elsewhere = carvana.filter(pl.col("zip") != "95765")["mc_location_id"][0]
    pairs = make_pairs(3, vehicles=3)
    vins = pairs["vin"].unique(maintain_order=True).to_list()
    named = pairs.unique("vin", keep="first", maintain_order=True).with_columns(
        source=pl.lit("carvana.com"),
        zip=pl.lit("95765"),
        mc_location_id=pl.Series([here, elsewhere, "no-such-location"]),
    )
    both = pl.concat([pairs, named])
    outcomes = {
        mode: mm.rank_dealers(both, client=client, mode=mode, cache_dir=tmp_path, progress=False)
        for mode in ("batch", "online")
    }
    batch = outcomes["batch"]
    assert batch.stats.mode == "batch"
    _assert_accounted(both, batch)
    assert batch.failed.select("vin", "mc_location_id", "error_code").sort("vin").rows() == sorted(
        [
            (vins[1], elsewhere, "dealer_not_found"),
            (vins[2], "no-such-location", "dealer_not_found"),
        ]
    )
    assert batch.ranked.filter(source="carvana.com")["mc_location_id"].to_list() == [here]
    shown = ["vin", "source", "zip", "mc_location_id", "vin_score", "vin_rank", "rank_exact"]
    for mode in ("ranked", "failed"):
        columns = shown if mode == "ranked" else [*shown[:4], "error_code"]
        frames = [getattr(outcomes[m], mode).select(columns).sort(columns) for m in outcomes]
        assert frames[0].equals(frames[1]), mode
