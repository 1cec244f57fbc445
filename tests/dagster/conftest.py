"""Fixtures of the Dagster suite: the session sandbox (tests/conftest.py), one whole-graph run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import ExecuteInProcessResult, instance_for_test, serialize_value

from dagster_defs.demo import run_daily
from mm_pipeline.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO / "sample_data"
PARTITION = "2026-06-01"
ROWS = 30
"""Rows read from each sample input: 30 vehicles x 30 dealers, 30 acquisition pairs."""


def api_env_vars(sb: Sandbox) -> dict[str, str]:
    """The environment variables a deployment would set to reach ``sb``."""
    return {"MARKETCHECK_BASE_URL": sb.base_url, "MARKETCHECK_API_KEY": sb.api_key}


@pytest.fixture
def api_env(clean_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """Point MARKETCHECK_BASE_URL / MARKETCHECK_API_KEY at the (reset) session sandbox."""
    for name, value in api_env_vars(clean_sandbox).items():
        monkeypatch.setenv(name, value)
    return clean_sandbox


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass(frozen=True)
class DailyRun:
    """What the shared run left behind."""

    result: ExecuteInProcessResult
    data_dir: Path
    work_dir: Path  # the working directory of the run (relative paths: the spill folder)
    event_log: list[str]  # every event log entry, serialized
    run_record: str  # the stored run, with its run config and tags, serialized
    python_logs: list[str]  # every Python log record emitted during the run


@pytest.fixture(scope="session")
def daily_run(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> DailyRun:
    """The daily job run once in process, against the sandbox, on a slice of the sample data."""
    sandbox.reset()
    data_dir = tmp_path_factory.mktemp("data")
    work_dir = tmp_path_factory.mktemp("work")
    records = _Records()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        with pytest.MonkeyPatch.context() as mp, instance_for_test() as instance:
            for name, value in api_env_vars(sandbox).items():
                mp.setenv(name, value)
            mp.chdir(work_dir)
            result = run_daily(
                PARTITION,
                instance=instance,
                inputs=str(SAMPLE_DATA),
                data_dir=str(data_dir),
                max_rows=ROWS,
            )
            event_log = [serialize_value(entry) for entry in instance.all_logs(result.run_id)]
            run_record = serialize_value(instance.get_run_by_id(result.run_id))
    finally:
        root.removeHandler(records)
        root.setLevel(previous_level)
    return DailyRun(result, data_dir, work_dir, event_log, run_record, records.lines)
