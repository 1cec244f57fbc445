"""Dagster wiring of mm_pipeline: ``dagster dev -m dagster_defs``.

A thin layer: the assets call ``mm_pipeline``'s public functions; ``mm_pipeline`` itself never
imports Dagster. ``python -m dagster_defs.demo`` materializes the whole graph for today against the
embedded sandbox; ``python -m dagster_defs.ui`` serves the UI next to it.
"""

from __future__ import annotations

from dagster_defs.definitions import defs

__all__ = ["defs"]
