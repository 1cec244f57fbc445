"""The built wheel is typed: a user's script type-checks against it under ``mypy --strict``.

The wheel is built from this checkout, installed without extras into a fresh venv together with
mypy (uv's cache makes this take seconds), and a small user script is checked there, as in a
user's own project. A second script with deliberate mistakes (a wrong argument type, a misspelt
keyword, a wrong result type) shows the names are really typed (not ``Any``, which would let
them pass).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD = """
import polars as pl

import mm_pipeline as mm


def best_dealers(pairs: pl.DataFrame | pl.LazyFrame, key: str) -> pl.DataFrame:
    client = mm.MarketMatchClient(api_key=key, base_url="http://127.0.0.1:8765")
    result: mm.RankResult = mm.rank_dealers(pairs, client=client, mode="online", exact_top_k=3)
    failed: pl.DataFrame = result.failed
    groups: int = result.stats.groups
    print(failed.height, groups)
    return result.ranked.filter(pl.col("vin_rank") == 1)
"""
MISTAKES = """
import polars as pl

import mm_pipeline as mm

pairs = pl.DataFrame()
mm.rank_dealers(["not", "a", "frame"])
mm.rank_dealers(pairs, chunk_sise=10)
groups: str = mm.rank_dealers(pairs, mode="online").stats.groups
"""


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env={**env, "NO_COLOR": "1", "MYPY_FORCE_COLOR": "0"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_a_user_script_type_checks_against_the_installed_wheel(tmp_path: Path) -> None:
    """py.typed ships for every package; mypy --strict sees real types, in a venv with no extras."""
    # On PATH, or where `make install` bootstraps it on a machine that had none.
    uv = shutil.which("uv") or shutil.which("uv", path=ROOT / ".tools" / "bin")
    assert uv is not None, "uv is needed to build and install the wheel (make install uses it)"
    built = _run(uv, "build", "--wheel", "--out-dir", tmp_path / "dist", ROOT, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"mm_pipeline/py.typed", "dagster_defs/py.typed"} <= names

    venv = tmp_path / "venv"
    made = _run(uv, "venv", "--quiet", venv, "--python", sys.executable, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(uv, "pip", "install", "--python", python, wheel, "mypy", cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    cli = _run(venv / "bin" / "mm-pipeline", "--help", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "mistakes.py").write_text(MISTAKES)

    checked = _run(python, "-m", "mypy", "--strict", "good.py", "mistakes.py", cwd=tmp_path)

    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], checked.stdout
    assert "py.typed" not in checked.stdout
    assert len(errors) == 4, checked.stdout  # the misspelt keyword: named, and no overload matches
    assert 'No overload variant of "rank_dealers" matches argument type "list[str]"' in errors[0]
    assert 'Unexpected keyword argument "chunk_sise"' in errors[1]
    assert (
        'No overload variant of "rank_dealers" matches argument types "DataFrame", "int"'
        in errors[2]
    )
    assert 'expression has type "int", variable has type "str"' in errors[3]
