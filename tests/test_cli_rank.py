"""``mm-pipeline rank dealers|vins IN OUT`` against the sandbox: formats, modes, errors."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from mm_pipeline.cli import cli
from mm_pipeline.cli._rank import failed_path, read_pairs
from mm_pipeline.sandbox import Sandbox
from tests._support.batch import make_pairs, rooftops
from tests.conftest import server_jobs


def _run(sb: Sandbox, *args: str) -> Result:
    env = {"MARKETCHECK_API_KEY": sb.api_key, "MARKETCHECK_BASE_URL": sb.base_url}
    return CliRunner().invoke(cli, ["rank", *args, "--no-progress"], env=env)


def _zero_zip_pairs() -> pl.DataFrame:
    """Pairs whose dealers have ZIPs with a leading zero (they must survive CSV round trips)."""
    zero_zips = rooftops().filter(pl.col("zip").str.starts_with("0")).head(5)
    assert zero_zips.height == 5
    vehicles = make_pairs(1, vehicles=3).select("vin", "price", "miles")
    return vehicles.join(zero_zips, how="cross")


@pytest.mark.parametrize("command", ["dealers", "vins"])
def test_rank_commands_have_help(command: str) -> None:
    """rank dealers/vins answer --help, naming IN and OUT and the key variable."""
    result = CliRunner().invoke(cli, ["rank", command, "--help"])
    assert result.exit_code == 0
    assert "IN OUT" in result.output
    assert "MARKETCHECK_API_KEY" in result.output


def test_rank_dealers_csv_to_parquet_online(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """A CSV in, Parquet out, online: ZIPs keep their zeros and every pair is ranked."""
    source = tmp_path / "pairs.csv"
    pairs = _zero_zip_pairs()
    pairs.write_csv(source)
    out = tmp_path / "out" / "ranked.parquet"
    result = _run(clean_sandbox, "dealers", str(source), str(out), "--mode", "online")
    assert result.exit_code == 0, result.output
    ranked = pl.read_parquet(out)
    assert ranked.height == pairs.height
    assert ranked["zip"].str.starts_with("0").all()
    assert pl.read_parquet(failed_path(out)).height == 0
    assert "ranked 15 pairs" in result.output


def test_rank_dealers_batch_mode(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """--mode batch goes through one batch job, named in the output."""
    source = tmp_path / "pairs.parquet"
    make_pairs(10).drop("mc_location_id").write_parquet(source)
    out = tmp_path / "ranked.csv"
    result = _run(
        clean_sandbox,
        "dealers",
        str(source),
        str(out),
        "--mode",
        "batch",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--reference",
        "cli-rank",
    )
    assert result.exit_code == 0, result.output
    (job,) = server_jobs(clean_sandbox)
    assert f"batch jobs: {job['job_id']}" in result.output
    assert job["client_reference"].startswith("cli-rank:mm-")
    assert read_pairs(out).height == 90


def test_rank_vins_gzip_csv(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """rank vins reads and writes gzip CSV."""
    source = tmp_path / "pairs.csv.gz"
    _zero_zip_pairs().write_csv(source, compression="gzip")
    out = tmp_path / "ranked.csv.gz"
    result = _run(clean_sandbox, "vins", str(source), str(out))
    assert result.exit_code == 0, result.output
    ranked = read_pairs(out)
    assert ranked.height == 15
    assert ranked.group_by("source", "zip").len()["len"].to_list() == [3] * 5


def test_invalid_rows_raise_or_fail(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """--on-invalid raise stops with the rows named; fail writes them to the failed file."""
    pairs = _zero_zip_pairs().with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(-5).otherwise(pl.col("price")).alias("price")
    )
    source = tmp_path / "pairs.csv"
    pairs.write_csv(source)
    out = tmp_path / "ranked.csv"
    raised = _run(clean_sandbox, "dealers", str(source), str(out), "--mode", "online")
    assert raised.exit_code == 1
    assert "InvalidInputError" in raised.output
    # The third data row is line 4 of the file (the header is line 1); the hint names the flag.
    assert "line 4: price must be a positive whole number (got -5)" in raised.output
    assert "row 2" not in raised.output
    assert "pass --on-invalid fail to" in raised.output
    assert "on_invalid=" not in raised.output
    assert "Traceback" not in raised.output
    failed = _run(clean_sandbox, "dealers", str(source), str(out), "--on-invalid", "fail")
    assert failed.exit_code == 0, failed.output
    failed_rows = read_pairs(failed_path(out))
    assert failed_rows["error_code"].to_list() == ["invalid_input"]
    assert failed_rows["error_message"].to_list() == [
        "line 4: price must be a positive whole number (got -5)"
    ]
    assert read_pairs(out).height == 14


def test_parquet_input_keeps_row_numbers(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """A Parquet file has no lines: messages name 0-based rows, as the library does."""
    pairs = _zero_zip_pairs().with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(-5).otherwise(pl.col("price")).alias("price")
    )
    source = tmp_path / "pairs.parquet"
    pairs.write_parquet(source)
    raised = _run(clean_sandbox, "dealers", str(source), str(tmp_path / "ranked.csv"))
    assert raised.exit_code == 1
    assert "row 2: price must be a positive whole number" in raised.output


def test_unknown_extension_is_a_usage_error(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """An output that is neither CSV nor Parquet is refused before any request."""
    source = tmp_path / "pairs.csv"
    _zero_zip_pairs().write_csv(source)
    result = _run(clean_sandbox, "dealers", str(source), str(tmp_path / "ranked.xlsx"))
    assert result.exit_code == 2
    assert "expected a file ending in .csv" in result.output


def test_stream_ranks_a_scanned_file_as_in_memory(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """--stream scans IN and streams OUT: the same rows, rows named by line, parts removed."""
    pairs = _zero_zip_pairs().with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(-5).otherwise(pl.col("price")).alias("price")
    )
    source = tmp_path / "pairs.csv"
    pairs.write_csv(source)
    args = ("--mode", "batch", "--cache-dir", str(tmp_path / "cache"))
    raised = _run(clean_sandbox, "dealers", str(source), str(tmp_path / "r.csv"), "--stream", *args)
    assert raised.exit_code == 1
    assert "line 4: price must be a positive whole number (got -5)" in raised.output
    assert "nothing was submitted" in raised.output
    assert server_jobs(clean_sandbox) == []
    streamed, in_memory = tmp_path / "streamed.csv.gz", tmp_path / "in_memory.csv.gz"
    for out, extra in ((streamed, ("--stream",)), (in_memory, ())):
        result = _run(
            clean_sandbox, "dealers", str(source), str(out), "--on-invalid", "fail", *args, *extra
        )
        assert result.exit_code == 0, result.output
        assert "ranked 14 pairs" in result.output
    key = ["vin", "source", "zip"]
    assert read_pairs(streamed).sort(key).equals(read_pairs(in_memory).sort(key))
    assert read_pairs(failed_path(streamed))["error_message"].to_list() == [
        "line 4: price must be a positive whole number (got -5)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_stream_refuses_a_gzip_input_with_the_way_out(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A gzip CSV cannot be scanned in pieces: --stream says to decompress or convert it."""
    source = tmp_path / "pairs.csv.gz"
    _zero_zip_pairs().write_csv(source, compression="gzip")
    result = _run(clean_sandbox, "dealers", str(source), str(tmp_path / "r.parquet"), "--stream")
    assert result.exit_code == 2
    assert "decompress it (gunzip -k) or convert it to Parquet" in result.output
