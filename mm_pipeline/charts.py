"""Charts of a ranking, with Altair (the ``plot`` extra: ``pip install 'mm-pipeline[plot]'``).

- :func:`score_distribution`: ``dealer_ymm_score`` of every candidate pair and of each
  vehicle's best dealer.
- :func:`best_vs_runner_up`: each vehicle's best dealer against its runner-up.
- :func:`dealer_concentration`: how concentrated the best placements are on a few dealers.
- :func:`placement_concentration`: a placement plan (``mm.assign``) against every vehicle
  going to its rank-1 dealer, per dealer, with the dealers' capacities.
- :func:`to_png`: any of them as PNG bytes (vl-convert, no browser), e.g. for Dagster metadata.

Each takes a ``rank_dealers`` :class:`~mm_pipeline.RankResult` or its ``ranked`` frame (the
plan chart an :class:`~mm_pipeline.AssignResult`) and returns an Altair chart, which Jupyter
displays as it is.

Examples
--------
>>> import mm_pipeline as mm
>>> sorted(name for name in mm.charts.__all__ if name != "to_png")
['best_vs_runner_up', 'dealer_concentration', 'placement_concentration', 'score_distribution']
"""

from __future__ import annotations

from mm_pipeline._charts import (
    best_vs_runner_up,
    dealer_concentration,
    placement_concentration,
    score_distribution,
    to_png,
)

__all__ = [
    "best_vs_runner_up",
    "dealer_concentration",
    "placement_concentration",
    "score_distribution",
    "to_png",
]
