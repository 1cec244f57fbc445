"""Dagster wiring of mm_pipeline: ``dagster dev -m dagster_defs``.

The project's own code location, built from ``mm_pipeline.dagster``'s factories (extra
``dagster``). ``python -m dagster_defs.demo`` materializes the whole graph for today against the
embedded sandbox; ``python -m dagster_defs.ui`` serves the UI next to it.
"""

from __future__ import annotations

# First: without the extra this says `pip install 'mm-pipeline[dagster]'`, not a bare error.
import mm_pipeline.dagster  # noqa: F401
from dagster_defs.definitions import defs

__all__ = ["defs"]
