"""`dagster asset materialize -m dagster_defs` in a subprocess, against the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mm_pipeline.sandbox import Sandbox
from tests._support.dagster_runs import ASSETS
from tests.dagster.conftest import PARTITION, REPO, SAMPLE_DATA, api_env_vars


@pytest.mark.slow
def test_dagster_cli_materializes_the_graph(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """The Dagster CLI materializes every asset for a partition, with the key from the env."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    config = {
        "execution": {"config": {"in_process": {}}},
        "resources": {
            "source_data": {"config": {"root": str(SAMPLE_DATA), "max_rows": 10}},
            "io_manager": {"config": {"base_dir": str(data)}},
        },
    }
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_defs",
        "--select", "*", "--partition", PARTITION, "--config-json", json.dumps(config),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, **api_env_vars(clean_sandbox), "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for asset in ASSETS:
        assert (data / asset / f"date={PARTITION}" / "data.parquet").is_file(), asset
    assert pl.read_parquet(data / "best_placement").height == 10
    assert clean_sandbox.api_key not in done.stdout + done.stderr
