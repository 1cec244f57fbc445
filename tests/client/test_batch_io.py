"""Batch files: gzip CSV writing (exact columns, deterministic, hashed, split by VIN), parsing."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import polars as pl
import pytest

from mm_pipeline._batch_io import (
    BATCH_COLUMNS,
    RESULT_SCHEMA,
    error_code_text,
    read_result_file,
    sha256_file,
    write_batch_files,
)


def _pairs(vins: int, dealers_per_vin: int) -> pl.DataFrame:
    rows = [
        {
            "vin": f"1HGCM82633A{v:06d}",
            "price": 10_000 + v,
            "miles": 1_000 * d,
            "source": f"dealer{d}.example.com",
            "zip": f"{(v * 7 + d) % 100_000:05d}",
            "mc_location_id": None,
            "_row": v * dealers_per_vin + d,
        }
        for v in range(vins)
        for d in range(dealers_per_vin)
    ]
    return pl.DataFrame(rows, schema_overrides={"mc_location_id": pl.String})


def _csv_text(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode()


def test_writes_exactly_the_published_columns(tmp_path: Path) -> None:
    """The file's header is vin,price,miles,source,zip and extra columns are left out."""
    (batch_file,) = write_batch_files(_pairs(3, 2), tmp_path)
    lines = _csv_text(batch_file.path).splitlines()
    assert lines[0] == ",".join(BATCH_COLUMNS)
    assert lines[1] == "1HGCM82633A000000,10000,0,dealer0.example.com,00000"
    assert len(lines) == 1 + 6
    assert (batch_file.rows, batch_file.vins) == (6, None)


def test_single_gzip_member_and_hash_match(tmp_path: Path) -> None:
    """The file is one gzip stream (strict readers accept it) and its recorded hash is right."""
    (batch_file,) = write_batch_files(_pairs(50, 3), tmp_path)
    data = batch_file.path.read_bytes()
    decompressor = zlib.decompressobj(31)
    decompressor.decompress(data)
    assert decompressor.eof
    assert decompressor.unused_data == b""
    assert batch_file.sha256 == hashlib.sha256(data).hexdigest() == sha256_file(batch_file.path)
    assert batch_file.size == len(data)


def test_same_frame_gives_same_bytes(tmp_path: Path) -> None:
    """Writing the same frame twice yields identical hashes (what makes reruns idempotent)."""
    first = write_batch_files(_pairs(40, 4), tmp_path / "a")
    second = write_batch_files(_pairs(40, 4), tmp_path / "b")
    assert [f.sha256 for f in first] == [f.sha256 for f in second]
    other = write_batch_files(_pairs(41, 4), tmp_path / "c")
    assert other[0].sha256 != first[0].sha256


def test_values_that_need_quoting_round_trip(tmp_path: Path) -> None:
    """A value holding a comma or quote is quoted, and reads back unchanged."""
    pairs = _pairs(1, 1).with_columns(pl.lit('odd,"name".com').alias("source"))
    (batch_file,) = write_batch_files(pairs, tmp_path)
    back = pl.read_csv(batch_file.path, infer_schema=False)
    assert back["source"].to_list() == ['odd,"name".com']


def test_empty_frame_writes_header_only(tmp_path: Path) -> None:
    """An empty frame still gives a valid file with the header."""
    (batch_file,) = write_batch_files(_pairs(1, 1).clear(), tmp_path)
    assert _csv_text(batch_file.path).strip() == ",".join(BATCH_COLUMNS)


def test_missing_columns_and_nulls_are_refused(tmp_path: Path) -> None:
    """Missing columns or null values raise a message naming them."""
    with pytest.raises(ValueError, match="missing: zip"):
        write_batch_files(_pairs(2, 2).drop("zip"), tmp_path)
    with_null = _pairs(2, 2).with_columns(
        pl.when(pl.col("_row") == 1).then(None).otherwise(pl.col("zip")).alias("zip")
    )
    with pytest.raises(ValueError, match=r"zip \(1 rows\)"):
        write_batch_files(with_null, tmp_path)


def test_split_by_vin_under_the_cap(tmp_path: Path) -> None:
    """A small cap yields several files, each under it, no VIN divided, every row once."""
    pairs = _pairs(400, 25)
    cap = 12_000
    files = write_batch_files(pairs, tmp_path, max_file_bytes=cap)
    assert len(files) > 2
    assert all(f.size <= cap for f in files)
    seen_vins: set[str] = set()
    total = 0
    for batch_file in files:
        frame = pl.read_csv(batch_file.path, infer_schema=False)
        vins = set(frame["vin"].to_list())
        assert batch_file.vins is not None
        assert vins == set(batch_file.vins.to_list())
        assert not vins & seen_vins
        seen_vins |= vins
        total += frame.height
        assert frame.height == batch_file.rows
    assert total == pairs.height
    assert seen_vins == set(pairs["vin"].to_list())


def test_vin_larger_than_cap_is_refused(tmp_path: Path) -> None:
    """One VIN whose rows alone exceed the cap cannot be split: a clear error."""
    with pytest.raises(ValueError, match="one VIN alone exceed"):
        write_batch_files(_pairs(1, 3000), tmp_path, max_file_bytes=2_000)


def _write_result(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_result_file_parsing_is_tolerant(tmp_path: Path) -> None:
    """Column order, header case, BOM, extra columns and float-looking numbers are accepted."""
    text = (
        "\ufeffVIN_RANK,vin,Source,zip,price,miles,extra,vin_score,dealer_ymm_score,"
        "mc_location_id,error\n"
        "1,1hgcm82633a000000,Dealer0.example.com,2134,20000.0,3000,x,1500.5,900,loc-1,\n"
        ",1HGCM82633A000000,dealer1.example.com,02135,20000,3000,y,,,,"
        "dealer_not_found: no such rooftop\n"
        ",1HGCM82633A000001,dealer1.example.com,02135,20000,3000,y,,,,Dealer Not Found\n"
        "2,1HGCM82633A000000,dealer2.example.com,02136,20000,3000,z,,,,\n"
    )
    frame = read_result_file(_write_result(tmp_path / "r.csv.gz", text))
    assert frame.schema == RESULT_SCHEMA
    rows = frame.to_dicts()
    assert rows[0]["vin"] == "1HGCM82633A000000"
    assert rows[0]["source"] == "dealer0.example.com"
    assert rows[0]["zip"] == "02134"
    assert (rows[0]["price"], rows[0]["vin_rank"], rows[0]["error_code"]) == (20000, 1, None)
    assert (rows[1]["error_code"], rows[1]["error_message"]) == (
        "dealer_not_found",
        "no such rooftop",
    )
    assert rows[2]["error_code"] == "ranking_failed"
    assert rows[2]["error_message"] == "Dealer Not Found"
    # a rank without scores is not a ranked row
    assert rows[3]["vin_rank"] is None
    assert rows[3]["error_code"] == "ranking_failed"


def test_result_file_with_split_error_columns(tmp_path: Path) -> None:
    """``error_code``/``error_message`` columns are used as given."""
    text = (
        "vin,price,miles,source,zip,mc_location_id,vin_score,dealer_ymm_score,vin_rank,"
        "error_code,error_message\n"
        "1HGCM82633A000000,1,2,a.com,00001,,,,,vin_decode_failed,VIN could not be decoded\n"
    )
    (row,) = read_result_file(_write_result(tmp_path / "r.csv.gz", text)).to_dicts()
    assert (row["error_code"], row["error_message"]) == (
        "vin_decode_failed",
        "VIN could not be decoded",
    )


def test_not_a_result_file(tmp_path: Path) -> None:
    """A file without the identifying columns is refused with the columns it has."""
    path = _write_result(tmp_path / "r.csv.gz", "a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a MarketMatch result file"):
        read_result_file(path)


def test_error_code_text() -> None:
    """Free-text codes become snake_case; empty ones get the default."""
    assert error_code_text("Processing-Failed") == "processing_failed"
    assert error_code_text("  ", default="batch_job_failed") == "batch_job_failed"
    assert error_code_text("42 things") == "ranking_failed"
