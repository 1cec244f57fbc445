"""Dagster: a daily run that fails after placement submitted its batch job, then re-executed.

The project's own ``marketmatch_daily`` job runs in process (``execute_job`` with the in-process
executor, on a temporary instance) against a sandbox. Status polls of the submitted job are
answered with 503s past the client's retry budget, so the placement step fails mid-way (its
job keeps running on the server). Re-executing the run from failure -- what the daemon's run
retry with ``FROM_FAILURE`` does -- must adopt that same job (one job on the account) and
materialize the same outputs as a run that never failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import (
    DagsterInstance,
    JobDefinition,
    ReexecutionOptions,
    execute_job,
    instance_for_test,
    reconstructable,
)
from dagster._core.execution.execution_result import ExecutionResult
from polars.testing import assert_frame_equal

from dagster_defs.definitions import defs
from dagster_defs.schedules import marketmatch_daily
from mm_pipeline.sandbox import Sandbox, running
from tests.reliability._support import JOBS, KEY, account_jobs

pytestmark = pytest.mark.usefixtures("fast_backoff")

REPO = Path(__file__).resolve().parents[2]
PARTITION = "2026-06-01"
ROWS = 8
"""Rows read from each sample input: 8 vehicles x 8 dealers for placement."""
CLIENT_ATTEMPTS = 9
"""The resource's client makes 1 + max_retries (8) attempts per request."""


def daily_job() -> JobDefinition:
    """The project's daily job (module level, so ``reconstructable`` can rebuild it)."""
    return defs.resolve_job_def(marketmatch_daily.name)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    """A sandbox for this module's runs."""
    with running(api_keys=[KEY], rate_limit=100_000, quota=10**9, job_seconds=0.2) as sandbox:
        yield sandbox


@pytest.fixture
def env(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The deployment's environment variables pointing at the (reset) sandbox."""
    sb.reset()
    monkeypatch.setenv("MARKETCHECK_BASE_URL", sb.base_url)
    monkeypatch.setenv("MARKETCHECK_API_KEY", KEY)
    return sb


def _run_config(folder: Path) -> dict[str, Any]:
    return {
        "execution": {"config": {"in_process": {}}},
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        "resources": {
            "marketmatch": {
                "config": {
                    "api_key": {"env": "MARKETCHECK_API_KEY"},
                    "mode": "batch",
                    "cache_dir": str(folder / "cache"),
                }
            },
            "source_data": {"config": {"root": str(REPO / "sample_data"), "max_rows": ROWS}},
            "io_manager": {"config": {"base_dir": str(folder / "data")}},
        },
    }


def _execute(
    instance: DagsterInstance, folder: Path, reexecute: str | None = None
) -> ExecutionResult:
    options = ReexecutionOptions.from_failure(reexecute, instance) if reexecute else None
    with execute_job(
        reconstructable(daily_job),
        instance,
        run_config=_run_config(folder),
        tags={"dagster/partition": PARTITION},
        reexecution_options=options,
    ) as result:
        return result


def _output(folder: Path, asset: str) -> pl.DataFrame:
    return pl.read_parquet(folder / "data" / asset / f"date={PARTITION}" / "data.parquet")


def _materialized(result: ExecutionResult) -> dict[str, dict[str, Any]]:
    return {
        event.asset_key.to_user_string(): {
            k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
        if event.asset_key is not None
    }


def test_a_run_failed_after_submit_is_reexecuted_and_reuses_the_job(
    env: Sandbox, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Re-executed from failure, the run adopts the submitted job and matches a clean run."""
    with instance_for_test() as instance:
        clean = _execute(instance, tmp_path / "clean")
        assert clean.success
        env.reset()
        # Every attempt of the first status poll fails: the step fails after its submit.
        env.inject("503", count=CLIENT_ATTEMPTS, path_prefix=f"{JOBS}/")
        failed = _execute(instance, tmp_path / "run")
        (failure,) = failed.get_step_failure_events()
        assert failure.step_key == "placement"
        assert "503" in str(failure.event_specific_data)
        (job,) = account_jobs(env)  # submitted, and left running on the server
        assert _output(tmp_path / "run", "sourcing").height > 0  # the other branch finished
        assert not (tmp_path / "run" / "data" / "placement").exists()
        retried = _execute(instance, tmp_path / "run", reexecute=failed.run_id)
        assert retried.success
        steps = {e.step_key for e in retried.all_events if e.is_step_success}
    (after,) = account_jobs(env)  # still that one job, downloaded once
    assert (after["job_id"], after["status"], after["download_count"]) == (
        job["job_id"],
        "COMPLETED",
        1,
    )
    assert _materialized(retried)["placement"]["stats/batch_job_ids"] == [job["job_id"]]
    assert steps == {"placement", "best_placement", "placement_plan"}  # only what had not run
    for asset in ("placement", "best_placement", "placement_plan"):
        assert_frame_equal(_output(tmp_path / "run", asset), _output(tmp_path / "clean", asset))
    failures = [_output(tmp_path / name, "placement_failures") for name in ("run", "clean")]
    assert_frame_equal(failures[0].drop("error_message"), failures[1].drop("error_message"))
    figures["dagster"] = {
        "failed_step": failure.step_key,
        "reexecuted_steps": sorted(steps),
        "batch_jobs": 1,
        "placement_rows": _output(tmp_path / "run", "placement").height,
    }
