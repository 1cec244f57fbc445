"""The bounded-memory route of a ranking step (``spill_dir=``): its folders and its counts.

With ``spill_dir`` a step ranks through the library's ``output=`` route: each run gets a folder
``<spill_dir>/<asset key path>/<partition key or "unpartitioned">`` (``RankingStep.spill_path``)
where ``ranked.parquet`` and ``failed.parquet`` are written; the step yields LazyFrames scanning
them, the IO manager stores each one when it is yielded (Dagster stores a generator's output
before resuming it), and the folder is removed once the step has yielded everything (or
failed). Counts are lazy aggregates: nothing here holds more than the distinct rows of a few
columns.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from dagster import AssetExecutionContext

from mm_pipeline.dagster._metadata import Frame, count_rows
from mm_pipeline.dagster._step import RankingStep

__all__ = ["distinct_rows", "remove_spill", "spill_folder"]


def spill_folder(step: RankingStep, context: AssetExecutionContext) -> Path | None:
    """Return the folder this run of ``step`` ranks into (None: the step ranks in memory)."""
    if step.spill_dir is None:
        return None
    return step.spill_path(context.partition_key if context.has_partition_key else None)


def remove_spill(folder: Path, root: Path) -> None:
    """Remove a run's ``folder``, then its parents up to ``root`` (excluded) once empty.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = Path(tmp, "spill")
    ...     (root / "mm" / "placement" / "2026-06-01").mkdir(parents=True)
    ...     (root / "mm" / "sourcing").mkdir()
    ...     remove_spill(root / "mm" / "placement" / "2026-06-01", root)
    ...     print(sorted(p.relative_to(root).as_posix() for p in root.rglob("*")))
    ['mm', 'mm/sourcing']
    """
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.relative_to(root).parents:
        if parent == Path():
            break
        try:
            (root / parent).rmdir()
        except OSError:  # not empty (another partition's run), or already gone
            break


def distinct_rows(frame: Frame, columns: Sequence[str]) -> int:
    """Count the distinct rows of ``frame`` over those of ``columns`` it has, lazily.

    Examples
    --------
    >>> import polars as pl
    >>> dealers = pl.LazyFrame({"source": ["a.com", "a.com", "b.com"], "zip": ["1", "1", None]})
    >>> distinct_rows(dealers, ("source", "zip", "mc_location_id"))
    2
    """
    lazy = frame.lazy()
    present = [c for c in columns if c in lazy.collect_schema().names()]
    return count_rows(lazy.select(present).unique())
