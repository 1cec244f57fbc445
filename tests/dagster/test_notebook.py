"""The analyst notebook: committed with its outputs, and runs top to bottom in a real kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import polars as pl
import pytest
from nbclient import NotebookClient

from mm_pipeline.sandbox import DEMO_API_KEY, Sandbox
from tests.dagster.conftest import REPO, DailyRun

NOTEBOOK = REPO / "examples" / "analyst.ipynb"


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _images(notebook: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def test_notebook_is_committed_with_its_outputs() -> None:
    """Every code cell but the last has its output, the five charts included, and no error."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("outputs") for cell in code[:-1])
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    assert _images(notebook) >= 5
    text = "\n".join(_text(cell) for cell in notebook.cells)
    assert "every pair accounted for: True" in text
    assert "placed:    60 of 60 vehicles" in text  # the placement plan's summary
    assert DEMO_API_KEY not in NOTEBOOK.read_text()


@pytest.mark.slow
def test_notebook_ranks_and_reads_dagster_outputs(
    api_env: Sandbox, daily_run: DailyRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every cell runs from another working directory (sync API inside the kernel's loop): it
    draws the charts, plans the placements under capacity, lists bad_pairs.csv's failures with
    reasons, and reads the job's Parquet."""
    monkeypatch.setenv("MM_PIPELINE_DATA_DIR", str(daily_run.data_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    client = NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # not examples/: any directory works
    )
    client.execute()
    text = "\n".join(_text(cell) for cell in notebook.cells)
    assert "event loop running in this kernel: True" in text
    assert "every pair accounted for: True" in text
    assert _images(notebook) >= 5
    assert "row 12: price is not a whole number" in text
    assert "dealer_not_found" in text
    assert "AssignResult(cost='vin_rank', max_rank=None" in text
    best = pl.read_parquet(daily_run.data_dir / "best_placement")
    assert f"best dealer for {best.height} vehicles" in text
    assert api_env.api_key not in text
