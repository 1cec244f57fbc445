"""The whole graph materialized in process against the sandbox, and the demo around it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import (
    DagsterInstance,
    EnvVar,
    instance_for_test,
    materialize,
)

import mm_pipeline as mm
from dagster_defs import demo
from dagster_defs.assets import ALL_ASSETS, SPILL_DIR, candidate_dealers, placement, vehicles
from dagster_defs.demo import run_daily
from mm_pipeline.dagster import (
    RANKING_CHECKS,
    MarketMatchResource,
    PolarsParquetIOManager,
    SourceData,
)
from mm_pipeline.sandbox import Sandbox
from tests._support.dagster_runs import (
    ASSETS,
    CHECKS,
    check_evaluations,
    checks_passed,
    materialization_metadata,
)
from tests.dagster.conftest import PARTITION, ROWS, SAMPLE_DATA, DailyRun, api_env_vars


def test_every_asset_materializes_and_every_check_passes(daily_run: DailyRun) -> None:
    """One run materializes every asset and every check passes."""
    result = daily_run.result
    assert result.success
    materialized = {
        e.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }
    assert materialized == ASSETS
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }
    assert evaluations == dict.fromkeys(CHECKS, True)


def test_outputs_are_parquet_an_analyst_can_scan(daily_run: DailyRun) -> None:
    """Each asset is one Parquet file per day, typed as the pandera models say."""
    for asset in ASSETS:
        assert (daily_run.data_dir / asset / f"date={PARTITION}" / "data.parquet").is_file()
    placed = pl.scan_parquet(daily_run.data_dir / "placement", hive_partitioning=True).collect()
    assert placed.height > 0
    assert placed["date"].cast(pl.String).unique().to_list() == [PARTITION]
    mm.schemas.RankedMatch.validate(placed.drop("date"))
    best = pl.read_parquet(daily_run.data_dir / "best_placement" / f"date={PARTITION}")
    assert best["vin_rank"].unique().to_list() == [1]
    assert best.select("vin", "price", "miles").is_unique().all()
    assert best.height == placed.select("vin", "price", "miles").n_unique()


def test_materialization_metadata(daily_run: DailyRun) -> None:
    """Row counts, failures by code, request stats, elapsed time and previews are recorded."""
    placement_md = materialization_metadata(daily_run.result, "placement")
    failures_md = materialization_metadata(daily_run.result, "placement_failures")
    ranked = pl.read_parquet(daily_run.data_dir / "placement" / f"date={PARTITION}")
    assert placement_md["dagster/row_count"] == ranked.height
    assert placement_md["dagster/row_count"] + failures_md["dagster/row_count"] == ROWS * ROWS
    assert isinstance(placement_md["failures_by_error_code"], dict)
    assert placement_md["stats/failed"] == failures_md["dagster/row_count"]
    assert placement_md["stats/requests"] >= ROWS  # one request per vehicle at least
    assert placement_md["stats/retries"] >= 0
    assert placement_md["stats/elapsed"] > 0
    assert placement_md["stats/batch_job_ids"] == []  # this size goes online
    assert str(placement_md["preview"]).startswith("| vin ")
    vehicles_md = materialization_metadata(daily_run.result, "vehicles")
    assert vehicles_md["dagster/row_count"] == ROWS
    assert str(vehicles_md["source"]).endswith("vehicles.csv")


def test_placement_ranks_through_the_spill_folder_and_removes_it(daily_run: DailyRun) -> None:
    """The placement step ranked into data/.mm_spill/placement/<day>, then removed it."""
    folder = Path(SPILL_DIR, "placement", PARTITION)
    assert {d.dagster_type.display_name for d in placement.op.input_defs} == {"PolarsFrame"}
    assert any(f"Ranking through {folder}" in entry for entry in daily_run.event_log)
    spill = daily_run.work_dir / SPILL_DIR
    assert spill.is_dir()
    assert list(spill.iterdir()) == []


def test_the_key_appears_nowhere(daily_run: DailyRun, sandbox: Sandbox) -> None:
    """Neither the event log, the stored run (config, tags) nor any Python log holds the key."""
    assert daily_run.event_log
    assert not [entry for entry in daily_run.event_log if sandbox.api_key in entry]
    assert "source_data" in daily_run.run_record  # the run config is in there
    assert sandbox.api_key not in daily_run.run_record
    assert any("/v2/marketmatch/" in line for line in daily_run.python_logs)  # URLs were logged
    assert not [line for line in daily_run.python_logs if sandbox.api_key in line]


def _bad_inputs(folder: Path) -> Path:
    """Sample rows plus vehicles whose VINs cannot be valid (wrong length, bad check digit)."""
    folder.mkdir()
    good = pl.read_csv(SAMPLE_DATA / "vehicles.csv", schema_overrides={"vin": pl.String}).head(4)
    bad = good.head(2).with_columns(pl.col("vin").str.slice(0, 16))
    pl.concat([good, bad]).write_csv(folder / "vehicles.csv")
    dealers = pl.read_csv(SAMPLE_DATA / "dealers.csv", infer_schema=False).head(3)
    dealers.write_csv(folder / "dealers.csv")
    acquisitions = pl.read_csv(SAMPLE_DATA / "acquisitions.csv", infer_schema=False).head(5)
    acquisitions.write_csv(folder / "acquisitions.csv")
    return folder


def test_failure_rate_check_fails_on_bad_input(api_env: Sandbox, tmp_path: Path) -> None:
    """A third of the pairs invalid: inputs_valid and failure_rate fail, naming the rows."""
    inputs = _bad_inputs(tmp_path / "in")
    result = materialize(
        ALL_ASSETS,
        partition_key=PARTITION,
        resources={
            "marketmatch": MarketMatchResource(api_key=EnvVar("MARKETCHECK_API_KEY")),
            "source_data": SourceData(root=str(inputs)),
            "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "data")),
        },
    )
    assert result.success  # checks report; they do not stop the run
    outcome = check_evaluations(result, "placement")
    assert not outcome["failure_rate"].passed
    assert outcome["failure_rate"].metadata["failure_rate"].value == pytest.approx(6 / 18)
    assert not outcome["inputs_valid"].passed
    assert outcome["inputs_valid"].metadata["invalid_rows"].value == 6
    assert "invalid_input" in str(outcome["inputs_valid"].metadata["invalid_preview"].value)
    assert outcome["complete"].passed
    assert outcome["ranks_contiguous"].passed
    assert outcome["scores_in_range"].passed
    failed = pl.read_parquet(tmp_path / "data" / "placement_failures" / f"date={PARTITION}")
    assert failed.height == 6
    assert failed["vin"].str.len_chars().unique().to_list() == [16]


def test_demo_embedded_sandbox_prints_summary_and_exits_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no MARKETCHECK_BASE_URL the demo runs its own sandbox, prints the tables, exits 0."""
    monkeypatch.delenv("MARKETCHECK_BASE_URL", raising=False)
    monkeypatch.delenv("MARKETCHECK_API_KEY", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    status = demo.main(
        [
            "--inputs",
            str(SAMPLE_DATA),
            "--data-dir",
            str(data),
            "--max-rows",
            "12",
            "--partition",
            PARTITION,
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "(embedded sandbox)" in out
    for asset in ASSETS:
        assert asset in out
    assert "5/5 passed" in out
    assert "7/7 passed" in out
    assert "Best placements (12 vehicles" in out
    assert re.search(r"best_placement \(rank 1\): +\d+\.\d% \(\d+ of 12 vehicles, ", out)
    assert re.search(r"placement_plan \(capacity\): +\d+\.\d% \(\d+ of 12 vehicles, ", out)
    assert (tmp_path / "home" / "dagster.yaml").is_file()
    assert (data / "best_placement" / f"date={PARTITION}" / "data.parquet").is_file()
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert instance.get_runs_count() == 1  # recorded where `make ui` will show it
    assert "MARKETCHECK_BASE_URL" not in os.environ  # the sandbox's URL does not outlive it


def test_demo_uses_the_given_api_and_exits_one_when_a_check_fails(
    api_env: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With MARKETCHECK_BASE_URL set the demo uses that API; a failed check makes it exit 1."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    inputs = _bad_inputs(tmp_path / "in")
    status = demo.main(
        ["--inputs", str(inputs), "--data-dir", str(tmp_path / "data"), "--partition", PARTITION]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert f"{api_env.base_url} (MARKETCHECK_BASE_URL)" in out
    assert "failed: inputs_valid, failure_rate" in out
    assert api_env.api_key not in out


def test_a_rerun_of_the_day_adopts_its_batch_job(api_env: Sandbox, tmp_path: Path) -> None:
    """Placement through the batch API twice for one day: the second run reuses the same job."""
    resources = {
        "marketmatch": MarketMatchResource(
            api_key=EnvVar("MARKETCHECK_API_KEY"), mode="batch", cache_dir=str(tmp_path / "cache")
        ),
        "source_data": SourceData(root=str(SAMPLE_DATA), max_rows=5),
        "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "data")),
    }
    jobs: list[Any] = []
    for _ in range(2):
        result = materialize(
            [vehicles, candidate_dealers, placement], partition_key=PARTITION, resources=resources
        )
        jobs.append(materialization_metadata(result, "placement")["stats/batch_job_ids"])
    assert isinstance(jobs[0], list)
    assert len(jobs[0]) == 1
    assert jobs[1] == jobs[0]


def test_placement_through_batch_merges_the_id_only_dealers(
    api_env: Sandbox, tmp_path: Path
) -> None:
    """30 vehicles x 30 dealers (2 known by id only) by batch: one job, one merge per vehicle."""
    resources = {
        "marketmatch": MarketMatchResource(
            api_key=EnvVar("MARKETCHECK_API_KEY"), mode="batch", cache_dir=str(tmp_path / "cache")
        ),
        "source_data": SourceData(root=str(SAMPLE_DATA), max_rows=ROWS),
        "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "data")),
    }
    result = materialize(
        [vehicles, candidate_dealers, placement], partition_key=PARTITION, resources=resources
    )
    assert result.success
    assert checks_passed(result, "placement") == dict.fromkeys(RANKING_CHECKS, True)
    stats = materialization_metadata(result, "placement")
    assert stats["stats/mode"] == "online+batch"
    assert len(stats["stats/batch_job_ids"]) == 1
    assert stats["stats/merge_requests"] == ROWS
    placed = pl.read_parquet(tmp_path / "data" / "placement" / f"date={PARTITION}")
    assert placed.height == ROWS * ROWS
    dealers = pl.read_csv(SAMPLE_DATA / "dealers.csv", infer_schema=False).head(ROWS)
    id_only = dealers.filter(pl.col("zip").is_null())["mc_location_id"]
    assert id_only.len() == 2
    assert placed.filter(pl.col("mc_location_id").is_in(id_only.implode()))["zip"].null_count() == 0
    assert placed["rank_exact"].all()  # 30 dealers per vehicle: one merge request holds them all


def test_demo_reads_every_row_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --max-rows the demo ranks whole inputs, not a slice of them."""
    monkeypatch.delenv("MARKETCHECK_BASE_URL", raising=False)
    monkeypatch.delenv("MARKETCHECK_API_KEY", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, rows in (("vehicles", 130), ("dealers", 12), ("acquisitions", 105)):
        frame = pl.read_csv(SAMPLE_DATA / f"{name}.csv", infer_schema=False).head(rows)
        frame.write_csv(inputs / f"{name}.csv")
    data = tmp_path / "data"
    status = demo.main(["--inputs", str(inputs), "--data-dir", str(data), "--partition", PARTITION])
    out = capsys.readouterr().out
    assert status == 0, out
    placed = pl.read_parquet(data / "placement" / f"date={PARTITION}")
    assert placed.height == 130 * 12
    assert pl.read_parquet(data / "sourcing" / f"date={PARTITION}").height == 105
    assert "Best placements (130 vehicles" in out


@pytest.mark.slow
def test_the_whole_sample_data_passes_every_check(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main job's work: 1,200 vehicles x 320 dealers by one batch job + 1,200 merges."""
    sandbox.reset()
    for name, value in api_env_vars(sandbox).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MM_PIPELINE_CACHE_DIR", str(tmp_path / "cache"))
    with instance_for_test() as instance:
        result = run_daily(
            PARTITION, instance=instance, inputs=str(SAMPLE_DATA), data_dir=str(tmp_path / "data")
        )
    table, best, ok = demo.summarize(result)
    assert ok, table
    assert table.filter(pl.col("asset") == "placement")["rows"].item() == 1_200 * 320
    assert best.height == 1_200
    stats = materialization_metadata(result, "placement")
    assert len(stats["stats/batch_job_ids"]) == 1
    assert stats["stats/merge_requests"] == 1_200
    assert stats["stats/requests"] < 1_200 + 20
    plan = materialization_metadata(result, "placement_plan")
    assert plan["vehicles_placed"] >= 0.85 * 1_200
    assert plan["largest_dealer_share_plan"] < plan["largest_dealer_share_rank1"] / 2
