"""Dataframe-native MarketMatch ranking for polars and Dagster.

The public names are re-exported here; every module behind them is private.
"""

from __future__ import annotations

import importlib.metadata

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    if name == "__version__":
        return importlib.metadata.version("mm-pipeline")
    raise AttributeError(f"module 'mm_pipeline' has no attribute {name!r}")
