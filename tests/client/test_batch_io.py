"""Batch files: gzip CSV writing (exact columns, deterministic, hashed, split by VIN), parsing."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_pipeline._batch import _parquet, _results
from mm_pipeline._batch._files import BATCH_COLUMNS, sha256_file, write_batch_files
from mm_pipeline._batch._results import (
    RESULT_SCHEMA,
    _csv_blocks,
    error_code_text,
    read_result_file,
)
from tests.conftest import BOUND, scan_in_small_batches


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


# -- streaming parse: blocks, gzip, odd inputs --------------------------------------------

_ODD_RESULT = (
    "\ufeffVIN_RANK,vin,Source,zip,price,miles,extra,vin_score,dealer_ymm_score,"
    "mc_location_id,error\r\n"
    "1,1hgcm82633a000000,Dealer0.example.com,2134,20000.0,3000,x,1500.5,900,loc-1,\r\n"
    '2, 1HGCM82633A000000 ," dealer1.example.com",02135,20000,3000,"a,b",1400,800,"",\r\n'
    ',1HGCM82633A000000,dealer2.example.com,02136,20000,3000,"say ""hi""\nthere",,,,'
    '"dealer_not_found: no such\nrooftop"\r\n'
    ",1HGCM82633A000001,dealer1.example.com,02135,20000,3000,y,,,,Dealer Not Found\r\n"
    "3,1HGCM82633A000001,dealer3.example.com,02137,1e3,3000,z,1300,700,,\r\n"
    "4,1HGCM82633A000001,dealer4.example.com,02138,20000,3000,z,,,,"
)
"""Header case, BOM, CRLF, quoted commas, doubled quotes, newlines inside values, blanks,
a quoted empty value, an unparsable price, and no newline at the end."""


def _gzip_file(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


@pytest.mark.parametrize("block_bytes", [1, 7, 64, 200, 1 << 20])
def test_odd_result_parses_the_same_in_any_block_size(tmp_path: Path, block_bytes: int) -> None:
    """Every block size, down to one byte, gives the same typed rows for an odd file."""
    path = _gzip_file(tmp_path / "r.csv.gz", _ODD_RESULT)
    frame = read_result_file(path, block_bytes=block_bytes)
    assert frame.schema == RESULT_SCHEMA
    assert frame.to_dicts() == [
        {
            "vin": "1HGCM82633A000000",
            "price": 20000,
            "miles": 3000,
            "source": "dealer0.example.com",
            "zip": "02134",
            "mc_location_id": "loc-1",
            "vin_score": 1500.5,
            "dealer_ymm_score": 900.0,
            "vin_rank": 1,
            "error_code": None,
            "error_message": None,
        },
        {
            "vin": "1HGCM82633A000000",
            "price": 20000,
            "miles": 3000,
            "source": "dealer1.example.com",
            "zip": "02135",
            "mc_location_id": None,  # a quoted empty value is null too
            "vin_score": 1400.0,
            "dealer_ymm_score": 800.0,
            "vin_rank": 2,
            "error_code": None,
            "error_message": None,
        },
        {
            "vin": "1HGCM82633A000000",
            "price": 20000,
            "miles": 3000,
            "source": "dealer2.example.com",
            "zip": "02136",
            "mc_location_id": None,
            "vin_score": None,
            "dealer_ymm_score": None,
            "vin_rank": None,
            "error_code": "dealer_not_found",
            "error_message": "no such\nrooftop",
        },
        {
            "vin": "1HGCM82633A000001",
            "price": 20000,
            "miles": 3000,
            "source": "dealer1.example.com",
            "zip": "02135",
            "mc_location_id": None,
            "vin_score": None,
            "dealer_ymm_score": None,
            "vin_rank": None,
            "error_code": "ranking_failed",
            "error_message": "Dealer Not Found",
        },
        {
            "vin": "1HGCM82633A000001",
            "price": 1000,
            "miles": 3000,
            "source": "dealer3.example.com",
            "zip": "02137",
            "mc_location_id": None,
            "vin_score": 1300.0,
            "dealer_ymm_score": 700.0,
            "vin_rank": 3,
            "error_code": None,
            "error_message": None,
        },
        {
            "vin": "1HGCM82633A000001",
            "price": 20000,
            "miles": 3000,
            "source": "dealer4.example.com",
            "zip": "02138",
            "mc_location_id": None,
            "vin_score": None,
            "dealer_ymm_score": None,
            "vin_rank": None,  # a rank without scores is not a ranked row
            "error_code": "ranking_failed",
            "error_message": "the batch result has no rank or score for this row: no error given",
        },
    ]


def _result_text(rows: int, *, vins: int) -> str:
    lines = ["vin,price,miles,source,zip,mc_location_id,vin_score,dealer_ymm_score,vin_rank,error"]
    for row in range(rows):
        vin = f"1HGCM82633A{row * vins // rows:06d}"
        if row % 97 == 5:
            lines.append(
                f'{vin},100,200,d{row}.com,{row % 9999},,,,,"vin_decode_failed: no, sorry"'
            )
        else:
            lines.append(f"{vin},100,200,D{row % 50}.com,{row % 99999:05d},id{row},1.5,2.5,{row},")
    return "\n".join(lines) + "\n"


def test_large_file_parses_in_blocks_equal_to_one_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file parsed in many small blocks equals the same file parsed in one block."""
    path = _gzip_file(tmp_path / "r.csv.gz", _result_text(5_000, vins=60))
    whole = read_result_file(path, block_bytes=1 << 30)
    sizes: list[int] = []

    def spy(pieces: Iterable[bytes], block_bytes: int) -> Iterator[bytes]:
        for block in _csv_blocks(pieces, block_bytes):
            sizes.append(len(block))
            yield block

    monkeypatch.setattr(_results, "_csv_blocks", spy)
    blocks = read_result_file(path, block_bytes=4_096)
    assert len(sizes) > 50
    assert max(sizes) <= 2 * 4_096 + 200  # at most a block, one more piece and the header
    assert blocks.equals(whole)
    assert blocks.height == 5_000
    failed = blocks.filter(pl.col("error_code").is_not_null())
    assert set(failed["error_code"]) == {"vin_decode_failed"}
    assert set(failed["error_message"]) == {"no, sorry"}
    assert failed.height == len([r for r in range(5_000) if r % 97 == 5])


def test_blocks_hold_a_bounded_part_of_the_text() -> None:
    """The block splitter reads ahead at most one block and yields blocks of whole records."""
    header = b"vin,source,vin_rank,note\n"
    records = [f'V{n},s{n}.com,{n},"line\n{n}, ""q"""\n'.encode() for n in range(3_000)]
    text = header + b"".join(records)
    piece, block_bytes = 100, 1_000
    consumed = 0

    def pieces() -> Iterator[bytes]:
        nonlocal consumed
        for start in range(0, len(text), piece):
            consumed += piece
            yield text[start : start + piece]

    emitted = 0
    parsed = []
    for block in _csv_blocks(pieces(), block_bytes):
        assert block.startswith(header)
        assert len(block) <= len(header) + block_bytes + piece
        emitted += len(block) - len(header)
        assert consumed - emitted <= block_bytes + piece  # never holds more than a block
        parsed.append(pl.read_csv(block, infer_schema=False))
    assert emitted == len(text) - len(header)
    assert len(parsed) > 50
    assert pl.concat(parsed)["note"].to_list() == [f'line\n{n}, "q"' for n in range(3_000)]


def test_plain_and_multi_member_files_are_read(tmp_path: Path) -> None:
    """An uncompressed CSV and a gzip file of several members parse like one gzip stream."""
    text = _result_text(300, vins=10)
    one = read_result_file(_gzip_file(tmp_path / "one.csv.gz", text))
    plain = tmp_path / "plain.csv"
    plain.write_text(text)
    middle = len(text) // 2
    members = tmp_path / "members.csv.gz"
    members.write_bytes(
        gzip.compress(text[:middle].encode()) + gzip.compress(text[middle:].encode())
    )
    assert read_result_file(plain, block_bytes=512).equals(one)
    assert read_result_file(members, block_bytes=512).equals(one)


def test_cut_off_gzip_is_an_error(tmp_path: Path) -> None:
    """A gzip file cut before its end raises instead of returning the rows it got so far."""
    data = gzip.compress(_result_text(2_000, vins=20).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EOFError, match="cut off"):
        read_result_file(path)


def test_header_only_file_gives_an_empty_typed_frame(tmp_path: Path) -> None:
    """A result file with a header and no rows gives an empty frame with the result schema."""
    path = _gzip_file(tmp_path / "r.csv.gz", "vin,source,zip,vin_rank,vin_score,error\n")
    frame = read_result_file(path)
    assert frame.height == 0
    assert frame.schema == RESULT_SCHEMA


def test_block_size_must_be_positive(tmp_path: Path) -> None:
    """A zero block size is refused with a clear message."""
    path = _gzip_file(tmp_path / "r.csv.gz", "vin,source,vin_rank\n")
    with pytest.raises(ValueError, match="block_bytes must be positive"):
        read_result_file(path, block_bytes=0)


_CELL = st.text(alphabet='ab ,"\n\r\u00e9', max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(_CELL, _CELL), min_size=1, max_size=30),
    piece=st.integers(min_value=1, max_value=40),
    block_bytes=st.integers(min_value=1, max_value=120),
)
def test_blocks_parse_like_the_whole_text(
    rows: list[tuple[str, str]], piece: int, block_bytes: int
) -> None:
    """Any quoted text cut into any pieces and blocks parses to the rows of the whole text."""
    whole = pl.DataFrame(rows, schema=["a", "b"], orient="row").write_csv().encode()
    pieces = [whole[start : start + piece] for start in range(0, len(whole), piece)]
    parsed = [pl.read_csv(block, infer_schema=False) for block in _csv_blocks(pieces, block_bytes)]
    assert pl.concat(parsed).equals(pl.read_csv(whole, infer_schema=False))


_NUMBER_CELL = st.one_of(
    st.integers(min_value=-5, max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " 7 ", "20000.0", "1e3", "+4", "0x10", "007", "4294967296", "-0"]),
)


@settings(max_examples=150, deadline=None)
@given(cells=st.lists(st.tuples(_NUMBER_CELL, _NUMBER_CELL, _NUMBER_CELL), min_size=1, max_size=4))
def test_numbers_typed_by_the_csv_reader_equal_the_text_rules(
    cells: list[tuple[str, str, str]],
) -> None:
    """A block whose numbers the CSV reader types gives what the tolerant text rules give."""
    lines = [
        f"V{i}X,a.com,30907,{price},{score},{rank}," for i, (price, score, rank) in enumerate(cells)
    ]
    block = ("vin,source,zip,price,vin_score,vin_rank,error\n" + "\n".join(lines) + "\n").encode()
    numbers = _results._number_columns(block)
    assert sorted(numbers) == ["price", "vin_rank", "vin_score"]
    fast = _results._read_block(block, numbers)
    text = pl.read_csv(block, infer_schema=False)
    path = Path("r.csv")
    typed_fast = _results._typed(_results._result_columns(fast, path))
    assert typed_fast.equals(_results._typed(_results._result_columns(text, path)))


def test_plain_numbers_are_typed_by_the_reader_and_odd_ones_fall_back_to_text() -> None:
    """The fast reading applies to plain numbers only; a block with "20000.0" is read as text."""
    header = "VIN,Source,zip,Price,vin_score,vin_rank,error\n"
    numbers = _results._number_columns(header.encode())
    assert numbers == {"Price": pl.Int64(), "vin_score": pl.Float64(), "vin_rank": pl.UInt32()}
    plain = _results._read_block(f"{header}A,a.com,1,20000,1.5,3,\n".encode(), numbers)
    assert plain.schema["Price"] == pl.Int64()
    odd = _results._read_block(f"{header}A,a.com,1,20000.0,1.5,3,\n".encode(), numbers)
    assert odd.schema["Price"] == pl.String()


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty result file (no header at all) is refused with a message saying so."""
    path = _gzip_file(tmp_path / "r.csv.gz", b"")
    message = r"r\.csv\.gz is not a MarketMatch result file: it is empty"
    with pytest.raises(ValueError, match=message):
        read_result_file(path)


# -- streaming over frames bigger than memory ---------------------------------------------


def test_guard_catches_a_collect(tmp_path: Path, bounded_collect: list[int]) -> None:
    """The guard is real: collecting the guarded scan raises."""
    lazy = scan_in_small_batches(_pairs(2_000, 30), tmp_path)
    with pytest.raises(AssertionError, match=r"rows (was collected|reached the writer)"):
        lazy.collect()


@pytest.mark.parametrize("cap", [100 * 1024 * 1024, 150_000])
def test_lazy_frame_is_written_without_collecting(
    tmp_path: Path, bounded_collect: list[int], cap: int
) -> None:
    """A LazyFrame streams into the files (one or split by VIN), the same bytes as the frame."""
    frame = _pairs(2_000, 30)  # 60,000 rows, past the bound
    lazy = scan_in_small_batches(frame, tmp_path)
    files = write_batch_files(lazy, tmp_path / "lazy", max_file_bytes=cap)
    assert max(bounded_collect) <= BOUND
    expected = write_batch_files(frame, tmp_path / "eager", max_file_bytes=cap)
    assert [f.sha256 for f in files] == [f.sha256 for f in expected]
    assert sum(f.rows for f in files) == frame.height
    assert (len(files) > 1) == (cap < 1024 * 1024)


def test_nulls_in_a_lazy_frame_are_counted_over_every_batch(tmp_path: Path) -> None:
    """Nulls found while streaming are refused with their total count; no file is left."""
    frame = _pairs(2_000, 30).with_columns(
        pl.when(pl.col("_row") % 20_000 == 7).then(None).otherwise(pl.col("zip")).alias("zip")
    )
    with pytest.raises(ValueError, match=r"nulls in zip \(3 rows\)"):
        write_batch_files(scan_in_small_batches(frame, tmp_path), tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


def test_result_streams_to_parquet_equal_to_the_in_memory_parse(
    tmp_path: Path, bounded_collect: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranked and failed Parquet parts hold exactly the in-memory parse's rows, in order."""
    monkeypatch.setattr(_parquet, "_PART_ROWS", 10_000)
    path = _gzip_file(tmp_path / "r.csv.gz", _result_text(60_000, vins=1_200))
    whole = read_result_file(path)
    out = _parquet.write_result_parquet(
        path, tmp_path / "parquet", extra={"_job": pl.lit("job-1")}, block_bytes=64 * 1024
    )
    assert len(out.ranked) == 6  # parts of 10,000 rows or a block more
    ranked, failed = pl.read_parquet(list(out.ranked)), pl.read_parquet(list(out.failed))
    assert ranked.drop("_job").equals(whole.filter(pl.col("error_code").is_null()))
    assert failed.drop("_job").equals(whole.filter(pl.col("error_code").is_not_null()))
    assert ranked["_job"].unique().to_list() == ["job-1"]
    assert (out.ranked_rows, out.failed_rows) == (ranked.height, failed.height)
    assert failed.height == 619  # every 97th row
    assert _parquet.parquet_rows(*out.ranked, *out.failed) == whole.height
    assert bounded_collect == []  # nothing was collected


def test_result_parquet_is_removed_when_the_file_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result file cut off mid-stream raises and leaves none of the parts it wrote."""
    monkeypatch.setattr(_parquet, "_PART_ROWS", 2_000)
    data = gzip.compress(_result_text(20_000, vins=400).encode())
    path = tmp_path / "r.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EOFError):
        _parquet.write_result_parquet(path, tmp_path / "parquet", block_bytes=16 * 1024)
    assert not list((tmp_path / "parquet").iterdir())
