"""Only mm_pipeline.dagster imports Dagster, and without the extra it says which one to install."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dagster.conftest import REPO

ALLOWED = ("mm_pipeline/dagster/", "dagster_defs/", "tests/")
MESSAGE = "pip install 'mm-pipeline[dagster]'"
# A meta-path finder that makes `dagster` (and its submodules) look uninstalled.
BLOCK_DAGSTER = """
import sys
class _NoDagster:
    def find_spec(self, name, path=None, target=None):
        if name == "dagster" or name.startswith("dagster."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoDagster())
"""


def _imports_dagster(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "dagster" or name.startswith(("dagster.", "dagster_")) for name in names):
            return True
    return False


def test_only_the_dagster_package_imports_dagster() -> None:
    """No module outside mm_pipeline/dagster (and dagster_defs, tests) imports dagster."""
    sources = [
        path
        for folder in ("mm_pipeline", "benchmarks", "sample_data", "examples")
        for path in (REPO / folder).rglob("*.py")
    ]
    importers = {path.relative_to(REPO).as_posix() for path in sources if _imports_dagster(path)}
    assert importers, "the scan found no importer at all"
    assert {p for p in importers if not p.startswith(ALLOWED)} == set()
    assert "mm_pipeline/dagster/_factory.py" in importers


@pytest.mark.parametrize("module", ["mm_pipeline.dagster", "dagster_defs"])
def test_without_the_extra_the_import_names_it(module: str) -> None:
    """With dagster missing, the import fails with the pip command, not a bare module error."""
    code = f"""{BLOCK_DAGSTER}
import mm_pipeline
try:
    import {module}
except ImportError as exc:
    print(type(exc).__name__, exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("ImportError mm_pipeline.dagster needs Dagster"), done.stderr
    assert MESSAGE in done.stdout
