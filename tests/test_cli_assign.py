"""``mm-pipeline assign RANKED PLAN``: capacity flags, output files, clean errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

import mm_pipeline as mm
from mm_pipeline.cli import cli
from mm_pipeline.cli._assign import unassigned_path
from tests._support.frames import ranked

RANKED = ranked(
    ("V1", "a.com", 1, True),
    ("V1", "b.com", 2, True),
    ("V2", "a.com", 1, True),
    ("V2", "b.com", 3, True),
    ("V3", "a.com", 1, True),
)


def test_assign_with_one_capacity_writes_plan_and_unassigned(tmp_path: Path) -> None:
    """--capacity 1: two vehicles placed optimally (PLAN), the third unassigned beside it."""
    source, out = tmp_path / "ranked.parquet", tmp_path / "plan.parquet"
    RANKED.write_parquet(source)
    result = CliRunner().invoke(cli, ["assign", str(source), str(out), "--capacity", "1"])
    assert result.exit_code == 0, result.output
    plan = pl.read_parquet(out)
    assert sorted(plan.select("vin", "source").rows()) == [("V1", "b.com"), ("V2", "a.com")]
    unassigned = pl.read_parquet(unassigned_path(out))
    assert unassigned.select("vin", "reason").rows() == [("V3", "capacity")]
    assert "placed 2 of 3 vehicles" in result.output
    assert "OPTIMAL" in result.output


def test_assign_with_a_capacity_file_as_csv(tmp_path: Path) -> None:
    """--capacity-file (CSV, zips as text) and --default-capacity for unlisted dealers."""
    source, out = tmp_path / "ranked.csv", tmp_path / "plan.csv"
    RANKED.write_csv(source)
    capacity = tmp_path / "dealers.csv"
    capacity.write_text("source,zip,capacity\na.com,30907,2\n")
    result = CliRunner().invoke(
        cli,
        [
            "assign",
            str(source),
            str(out),
            "--capacity-file",
            str(capacity),
            "--default-capacity",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = pl.read_csv(out, schema_overrides={"zip": pl.String})
    assert plan.height == 3
    assert plan["zip"].to_list() == ["30907"] * 3
    assert plan.filter(pl.col("source") == "a.com").height == 2


def test_assign_refuses_both_or_neither_capacity_and_bad_files(tmp_path: Path) -> None:
    """Exactly one capacity flag; a bad capacity file is one clear line and exit code 1."""
    source, out = tmp_path / "ranked.parquet", tmp_path / "plan.parquet"
    RANKED.write_parquet(source)
    neither = CliRunner().invoke(cli, ["assign", str(source), str(out)])
    assert neither.exit_code == 2
    assert "exactly one of --capacity" in neither.output
    capacity = tmp_path / "dealers.csv"
    capacity.write_text("source,capacity\na.com,-3\n")
    bad = CliRunner().invoke(
        cli, ["assign", str(source), str(out), "--capacity-file", str(capacity)]
    )
    assert bad.exit_code == 1
    assert "InvalidInputError: capacity: 1 row(s) are not valid" in bad.output
    assert "capacity is negative" in bad.output
    assert not out.exists()


def test_a_parquet_ranking_is_scanned_and_a_broken_one_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RANKED as Parquet reaches mm.assign as a scan; a file that is not Parquet: exit 1."""
    source, out = tmp_path / "ranked.parquet", tmp_path / "plan.parquet"
    RANKED.write_parquet(source)
    given: list[object] = []
    assign = mm.assign

    def spy(ranked: pl.DataFrame | pl.LazyFrame, **options: Any) -> mm.AssignResult:
        given.append(ranked)
        return assign(ranked, **options)

    monkeypatch.setattr(mm, "assign", spy)
    result = CliRunner().invoke(cli, ["assign", str(source), str(out), "--capacity", "1"])
    assert result.exit_code == 0, result.output
    assert [type(frame) for frame in given] == [pl.LazyFrame]
    assert pl.read_parquet(out).height == 2
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    bad = CliRunner().invoke(cli, ["assign", str(broken), str(out), "--capacity", "1"])
    assert bad.exit_code == 1
    assert "broken.parquet cannot be read as parquet" in bad.output
    assert "Traceback" not in bad.output
