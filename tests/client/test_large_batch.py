"""rank_dealers(..., output=PATH): pairs streamed through VIN buckets, Parquet out."""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline import _rank_output
from mm_pipeline._batch import _large
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.conftest import (
    BOUND,
    make_vins,
    refuse_large_collects,
    scan_in_small_batches,
    server_jobs,
    wait_until,
)

KEY = ["vin", "price", "miles", "source", "zip"]
VEHICLE_KEYS = ["vin", "price", "miles"]


def _pairs(vehicles: int, dealers: int) -> pl.DataFrame:
    """Vehicles x rooftops, shuffled (a VIN's rows apart), with the rows the route must sort out.

    Exact duplicates, a conflicting row (same VIN and dealer, another price), invalid VINs,
    a VIN at two prices (two vehicles) and lower-cased VINs.
    """
    cars = pl.DataFrame(
        {
            "vin": make_vins(vehicles),
            "price": [15_000 + 37 * i for i in range(vehicles)],
            "miles": [1_000 + 29 * i for i in range(vehicles)],
        }
    )
    rooftops = Market.default().dealers.head(dealers).select("source", "zip")
    pairs = cars.join(rooftops, how="cross")
    first = pairs.head(3)
    odd = pl.concat(
        [
            pairs.slice(100, 5),  # exact duplicates
            first.head(1).with_columns(pl.col("price") + 1),  # conflict: same vin and dealer
            pairs.slice(dealers, 2).with_columns(pl.lit("NOT-A-VIN").alias("vin")),  # invalid
        ]
    )
    mixed = pl.concat([pairs, odd]).sample(fraction=1.0, shuffle=True, seed=7)
    return mixed.with_columns(pl.col("vin").str.to_lowercase())


@pytest.fixture
def client(clean_sandbox: Sandbox) -> mm.MarketMatchClient:
    """A client on account A of a reset sandbox."""
    return mm.MarketMatchClient(api_key=clean_sandbox.api_key, base_url=clean_sandbox.base_url)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort([*KEY, "error_code"] if "error_code" in frame.columns else KEY)


def test_lazy_input_is_never_collected_and_ranks_as_in_memory(
    client: mm.MarketMatchClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan of 50,000 pairs in 6 VIN buckets: no collect past 40,000 rows; same frames."""
    pairs = _pairs(500, 100)
    assert pairs.height > BOUND
    in_memory = mm.rank_dealers(
        pairs,
        client=client,
        mode="batch",
        on_invalid="fail",
        progress=False,
        cache_dir=tmp_path / "cache-a",
    )
    monkeypatch.setattr(_large, "BUCKET_ROWS", 9_000)
    heights = refuse_large_collects(monkeypatch)
    result = mm.rank_dealers(
        scan_in_small_batches(pairs, tmp_path),
        client=client,
        mode="batch",
        on_invalid="fail",
        progress=False,
        cache_dir=tmp_path / "cache-b",
        output=tmp_path / "out",
    )
    assert isinstance(result.ranked, pl.LazyFrame)
    assert isinstance(result.failed, pl.LazyFrame)
    assert heights
    assert max(heights) <= BOUND
    monkeypatch.undo()  # the test itself reads the results whole
    ranked, failed = result.ranked.collect(), result.failed.collect()
    assert _sorted(ranked).equals(_sorted(in_memory.ranked))
    assert _sorted(failed).equals(_sorted(in_memory.failed))
    assert sorted(failed["error_code"].to_list()) == [
        "duplicate_conflict",
        "invalid_input",
        "invalid_input",
    ]
    stats, expected = result.stats, in_memory.stats
    for name in ("rows", "invalid_rows", "duplicates_removed", "conflicts", "pairs", "groups"):
        assert getattr(stats, name) == getattr(expected, name), name
    assert stats.ranked + stats.failed == stats.rows - stats.duplicates_removed
    assert (stats.ranked, stats.failed) == (ranked.height, failed.height)
    assert "LazyFrames scanning Parquet under" in repr(result)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "failed.parquet",
        "ranked.parquet",
    ]


def test_invalid_rows_raise_with_input_row_numbers_before_any_job(
    client: mm.MarketMatchClient,
    clean_sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """on_invalid="raise" names the rows by their input number; nothing is submitted."""
    monkeypatch.setattr(_large, "BUCKET_ROWS", 500)
    pairs = _pairs(20, 50).with_row_index("n")
    bad_rows = pairs.filter(pl.col("vin") == "not-a-vin")["n"].to_list()
    with pytest.raises(mm.InvalidInputError) as caught:
        mm.rank_dealers(
            pairs.drop("n").lazy(),
            client=client,
            mode="batch",
            progress=False,
            output=tmp_path / "out",
        )
    message = str(caught.value)
    assert all(f"row {row}: vin" in message for row in bad_rows), message
    assert "nothing was submitted" in message
    assert (
        clean_sandbox.requests_served() == 0 if hasattr(clean_sandbox, "requests_served") else True
    )


def test_online_route_with_output_writes_the_same_files(
    client: mm.MarketMatchClient, tmp_path: Path
) -> None:
    """mode="auto" on a small frame ranks online, and still returns lazy scans of the output."""
    pairs = _pairs(4, 20)
    expected = mm.rank_dealers(pairs, client=client, on_invalid="fail", progress=False)
    result = mm.rank_dealers(
        pairs, client=client, on_invalid="fail", progress=False, output=tmp_path / "out"
    )
    assert result.stats.mode == "online"
    assert result.ranked.collect().equals(expected.ranked)
    assert result.failed.collect().equals(expected.failed)
    assert result.output == tmp_path / "out"


def test_a_failed_job_fails_its_pairs_with_its_code(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """on_job_failed="fail": the job's pairs go to failed with its error code, none is lost."""
    pairs = _pairs(10, 30)
    clean_sandbox.hold_jobs()

    def fail_the_job() -> None:
        listed = wait_until(lambda: server_jobs(clean_sandbox), lambda jobs: len(jobs) == 1)
        clean_sandbox.fail_job(str(listed[0]["job_id"]), error_code="processing_failed")

    failer = threading.Thread(target=fail_the_job)
    failer.start()
    result = mm.rank_dealers(
        pairs.lazy(),
        client=client,
        mode="batch",
        on_invalid="fail",
        on_job_failed="fail",
        progress=False,
        cache_dir=tmp_path / "cache",
        output=tmp_path / "out",
    )
    failer.join()
    codes = result.failed.group_by("error_code").len().collect()
    assert dict(codes.iter_rows()) == {
        "processing_failed": pairs.height - 5 - 1 - 2,
        "duplicate_conflict": 1,
        "invalid_input": 2,
    }
    assert result.stats.ranked == 0
    assert result.stats.failed == result.stats.rows - result.stats.duplicates_removed


def test_auto_takes_the_bucketed_route_past_the_threshold(
    client: mm.MarketMatchClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mode="auto" with output= picks batch once rows / chunk_size passes the threshold."""
    monkeypatch.setattr(_rank_output, "BATCH_THRESHOLD_REQUESTS", 5)
    pairs = _pairs(10, 60)  # 600 rows: 6 requests of 100
    result = mm.rank_dealers(
        pairs.lazy(),
        client=client,
        on_invalid="fail",
        progress=False,
        cache_dir=tmp_path / "cache",
        output=tmp_path / "out",
    )
    assert result.stats.mode == "batch"
    assert len(result.stats.batch_job_ids) == 1
    assert result.stats.ranked == result.ranked.select(pl.len()).collect().item() > 0


def test_dealers_known_by_id_alone_are_completed_online_as_in_memory(
    client: mm.MarketMatchClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pairs without a zip are ranked online with their vehicle's batch order, bucket by bucket.

    30 vehicles x (25 rooftops by zip + 3 by mc_location_id alone), and 2 vehicles with
    id-only rooftops alone (ranked online, no batch order to merge): the same frames, ranks
    and counts as the in-memory route.
    """
    rooftops = Market.default().dealers.select("source", "zip", "mc_location_id")
    by_zip = rooftops.head(25).with_columns(pl.lit(None, pl.String).alias("mc_location_id"))
    by_id = rooftops.slice(25, 3).with_columns(pl.lit(None, pl.String).alias("zip"))
    cars = pl.DataFrame(
        {
            "vin": make_vins(32),
            "price": [15_000 + 37 * i for i in range(32)],
            "miles": [1_000 + 29 * i for i in range(32)],
        }
    )
    pairs = pl.concat(
        [
            cars.head(30).join(pl.concat([by_zip, by_id]), how="cross"),
            cars.tail(2).join(by_id, how="cross"),
        ]
    ).sample(fraction=1.0, shuffle=True, seed=3)
    in_memory = mm.rank_dealers(
        pairs, client=client, mode="batch", progress=False, cache_dir=tmp_path / "a"
    )
    monkeypatch.setattr(_large, "BUCKET_ROWS", 150)
    result = mm.rank_dealers(
        pairs.lazy(),
        client=client,
        mode="batch",
        progress=False,
        cache_dir=tmp_path / "b",
        output=tmp_path / "out",
    )
    ranked = result.ranked.collect()
    assert result.failed.collect().height == 0
    assert _sorted(ranked).equals(_sorted(in_memory.ranked))
    assert ranked.filter(pl.col("zip").is_null()).height == 0  # the API names each rooftop
    assert ranked.height == pairs.height
    stats, expected = result.stats, in_memory.stats
    assert stats.mode == expected.mode == "online+batch"
    assert stats.merge_requests == expected.merge_requests == 30  # the 2 id-only: no merge
    assert (stats.ranked, stats.failed) == (pairs.height, 0)
    assert (
        ranked.group_by(VEHICLE_KEYS)
        .agg((pl.col("vin_rank").sort() == pl.int_range(1, pl.len() + 1)).all())
        .get_column("vin_rank")
        .all()
    )


def test_pairs_all_without_a_zip_submit_no_job(
    client: mm.MarketMatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Every rooftop known by mc_location_id alone: no bucket sends a batch file, all online."""
    by_id = (
        Market.default()
        .dealers.slice(40, 4)
        .select("source", pl.lit(None, pl.String).alias("zip"), "mc_location_id")
    )
    cars = pl.DataFrame({"vin": make_vins(6), "price": [20_000] * 6, "miles": [5_000] * 6})
    pairs = cars.join(by_id, how="cross")
    expected = mm.rank_dealers(pairs, client=client, mode="online", progress=False)
    result = mm.rank_dealers(
        pairs.lazy(), client=client, mode="batch", progress=False, output=tmp_path / "out"
    )
    assert server_jobs(clean_sandbox) == []
    assert result.stats.batch_job_ids == ()
    assert result.stats.mode == "online"
    assert _sorted(result.ranked.collect()).equals(_sorted(expected.ranked))
    assert result.stats.ranked == pairs.height
