"""The analyst notebook runs top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import nbformat
import polars as pl
import pytest
from nbclient import NotebookClient

from mm_pipeline.sandbox import Sandbox
from tests.dagster.conftest import REPO, DailyRun

NOTEBOOK = REPO / "examples" / "analyst.ipynb"


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_notebook_ranks_and_reads_dagster_outputs(
    api_env: Sandbox, daily_run: DailyRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every cell runs (sync API inside the kernel's loop); it reads the job's Parquet."""
    monkeypatch.setenv("MM_PIPELINE_DATA_DIR", str(daily_run.data_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    assert not any(cell.get("outputs") for cell in notebook.cells)  # committed clean
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    text = "\n".join(_text(cell) for cell in notebook.cells)
    assert "event loop running in this kernel: True" in text
    assert "every pair accounted for: True" in text
    best = pl.read_parquet(daily_run.data_dir / "best_placement")
    assert f"best dealer for {best.height} vehicles" in text
    assert api_env.api_key not in text
