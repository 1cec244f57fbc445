"""The Parquet IO manager and the source readers, without the API."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DailyPartitionsDefinition, asset, materialize
from polars.testing import assert_frame_equal

import mm_pipeline as mm
from mm_pipeline._files import read_table
from mm_pipeline.dagster import PolarsParquetIOManager, SourceData
from tests.conftest import BOUND, refuse_large_collects, scan_in_small_batches

DAYS = DailyPartitionsDefinition(start_date="2026-01-01")
FRAME = pl.DataFrame({"vin": ["A", "B", "C"], "vin_rank": pl.Series([1, 2, 3], dtype=pl.UInt32)})


@asset(partitions_def=DAYS)
def upstream() -> pl.DataFrame:
    return FRAME


@asset(partitions_def=DAYS)
def eager(upstream: pl.DataFrame) -> pl.DataFrame:
    assert isinstance(upstream, pl.DataFrame)
    return upstream.filter(pl.col("vin_rank") < 3)


@asset(partitions_def=DAYS)
def lazy(upstream: pl.LazyFrame) -> pl.LazyFrame:
    assert isinstance(upstream, pl.LazyFrame)
    return upstream.filter(pl.col("vin_rank") > 1)


@asset
def unpartitioned() -> pl.DataFrame:
    return FRAME


def test_round_trip_eager_and_lazy_per_partition(tmp_path: Path) -> None:
    """Frames come back equal, as DataFrame or LazyFrame per annotation, one file per day."""
    io = PolarsParquetIOManager(base_dir=str(tmp_path))
    for day in ("2026-03-01", "2026-03-02"):
        result = materialize(
            [upstream, eager, lazy], partition_key=day, resources={"io_manager": io}
        )
        assert result.success
    for day in ("2026-03-01", "2026-03-02"):
        assert_frame_equal(pl.read_parquet(tmp_path / f"upstream/date={day}/data.parquet"), FRAME)
        assert_frame_equal(pl.read_parquet(io.path_for(AssetKey("eager"), day)), FRAME.head(2))
        assert_frame_equal(pl.read_parquet(io.path_for(AssetKey("lazy"), day)), FRAME.tail(2))
    metadata = result.asset_materializations_for_node("lazy")[0].metadata
    assert metadata["dagster/row_count"].value == 2
    assert str(metadata["path"].value).endswith("lazy/date=2026-03-02/data.parquet")


def test_hive_layout_reads_every_day_with_a_date_column(tmp_path: Path) -> None:
    """An analyst's pl.scan_parquet(folder, hive_partitioning=True) gets the day as a column."""
    io = PolarsParquetIOManager(base_dir=str(tmp_path))
    for day in ("2026-03-01", "2026-03-02"):
        assert materialize([upstream], partition_key=day, resources={"io_manager": io}).success
    both = pl.scan_parquet(tmp_path / "upstream", hive_partitioning=True).collect()
    assert both.height == 2 * FRAME.height
    assert both["date"].cast(pl.String).unique().sort().to_list() == ["2026-03-01", "2026-03-02"]


def test_unpartitioned_asset_is_one_file(tmp_path: Path) -> None:
    """An unpartitioned asset is stored as {base_dir}/{asset}/data.parquet."""
    io = PolarsParquetIOManager(base_dir=str(tmp_path))
    assert materialize([unpartitioned], resources={"io_manager": io}).success
    assert_frame_equal(pl.read_parquet(tmp_path / "unpartitioned/data.parquet"), FRAME)


def test_missing_upstream_partition_is_named(tmp_path: Path) -> None:
    """Loading a day that was never materialized fails with the asset and the missing path."""
    io = PolarsParquetIOManager(base_dir=str(tmp_path))
    result = materialize(
        [upstream, eager],
        partition_key="2026-03-05",
        resources={"io_manager": io},
        selection=[eager],
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert "upstream has not been materialized" in message
    assert "date=2026-03-05" in message


def test_only_polars_frames_are_stored(tmp_path: Path) -> None:
    """Returning something else is a clear error naming the asset and the type."""

    @asset
    def wrong() -> dict[str, int]:
        return {"a": 1}

    result = materialize(
        [wrong],
        resources={"io_manager": PolarsParquetIOManager(base_dir=str(tmp_path))},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "wrong: PolarsParquetIOManager stores polars frames, got dict" in str(
        failure.step_failure_data.error
    )


def test_read_table_file_folder_and_text_identifiers(tmp_path: Path) -> None:
    """CSV, gzip CSV and Parquet are read; a folder is concatenated; ZIPs keep leading zeros."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("vin,price,zip\nV1,100,02134\n")
    (folder / "b.csv.gz").write_bytes(gzip.compress(b"vin,price,zip\nV2,200,10001\n"))
    pl.DataFrame({"vin": ["V3"], "price": [300]}).write_parquet(folder / "c.parquet")
    (folder / "notes.txt").write_text("ignored")
    frame = read_table(folder)
    assert frame.to_dicts() == [
        {"vin": "V1", "price": 100, "zip": "02134"},
        {"vin": "V2", "price": 200, "zip": "10001"},
        {"vin": "V3", "price": 300, "zip": None},
    ]
    assert read_table(folder / "a.csv")["zip"].to_list() == ["02134"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.csv", "input file not found"), ("notes.txt", "unsupported input format")],
)
def test_read_table_refuses_what_it_cannot_read(tmp_path: Path, name: str, message: str) -> None:
    """A missing file or an unknown format is an error naming the path."""
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises((FileNotFoundError, ValueError), match=message) as raised:
        read_table(tmp_path / name)
    assert name in str(raised.value)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("ragged.csv", b"vin,price,zip\nV1,100,02134,x\n", "line 2 has 4 fields, the header 3"),
        ("empty.csv", b"", "cannot be read as csv"),
        ("cut.csv.gz", b"\x1f\x8b\x08\x00garbage", "cannot be read as csv.gz"),
        ("broken.parquet", b"not parquet", "cannot be read as parquet"),
    ],
)
def test_read_table_unreadable_file_names_it(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    """An unreadable input file is an InvalidInputError naming the file, not a raw polars error."""
    (tmp_path / name).write_bytes(content)
    with pytest.raises(mm.InvalidInputError, match=reason) as raised:
        read_table(tmp_path / name)
    assert name in str(raised.value)


def test_read_table_empty_folder(tmp_path: Path) -> None:
    """A folder without input files is an error, not an empty frame."""
    with pytest.raises(FileNotFoundError, match=r"no \.csv, \.csv\.gz, \.parquet files"):
        read_table(tmp_path)


def test_source_data_partition_placeholder_and_row_cap(tmp_path: Path) -> None:
    """{partition} in a path selects the day's file; max_rows caps every input."""
    day = tmp_path / "2026-03-01"
    day.mkdir()
    pl.DataFrame({"vin": [f"V{i}" for i in range(5)]}).write_parquet(day / "vehicles.parquet")
    source = SourceData(root=str(tmp_path / "{partition}"), vehicles="vehicles.parquet", max_rows=2)
    assert source.path("vehicles", partition_key="2026-03-01") == day / "vehicles.parquet"
    assert source.read("vehicles", partition_key="2026-03-01")["vin"].to_list() == ["V0", "V1"]


def test_lazy_output_is_sunk_without_collecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LazyFrame output larger than any collect allowed streams to its file; rows counted."""
    source = tmp_path / "big.parquet"
    rows = 3 * BOUND
    pl.DataFrame({"n": range(rows)}).write_parquet(source, row_group_size=10_000)

    @asset
    def big() -> pl.LazyFrame:
        return scan_in_small_batches(pl.read_parquet(source), tmp_path)

    heights = refuse_large_collects(monkeypatch)
    io = PolarsParquetIOManager(base_dir=str(tmp_path / "data"))
    result = materialize([big], resources={"io_manager": io})
    assert result.success
    assert all(height <= BOUND for height in heights)
    metadata = result.asset_materializations_for_node("big")[0].metadata
    assert metadata["dagster/row_count"].value == rows
    monkeypatch.undo()
    assert pl.read_parquet(io.path_for(AssetKey("big")))["n"].to_list() == list(range(rows))
