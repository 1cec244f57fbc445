"""RankingStep: one ranking step as a factory built it, what downstream steps build on.

A step downstream of a ranking (the placement plan, ``_plan``) takes a :class:`RankingStep`,
reads ``step.ranked_key`` and names its assets ``step.key("<suffix>")``; the factories
(``_factory``) build the step and append the downstream ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dagster import AssetKey, PartitionsDefinition

import mm_pipeline as mm
from mm_pipeline.dagster._options import validate_options

__all__ = ["DEALER_COLUMNS", "UNPARTITIONED", "VEHICLE_COLUMNS", "Kind", "RankingStep"]

VEHICLE_COLUMNS = ("vin", "price", "miles")
DEALER_COLUMNS = ("source", "zip", "mc_location_id")

Kind = Literal["rank_dealers", "rank_vins"]

UNPARTITIONED = "unpartitioned"
"""The spill folder of an unpartitioned step's run (:meth:`RankingStep.spill_path`)."""


@dataclass(frozen=True)
class RankingStep:
    """One ranking step as built by a factory: what downstream steps build on.

    ``spill_dir`` (None: the step ranks in memory) is where the step ranks through Parquet
    files (``output=`` of the ranking function), one folder per run (:meth:`spill_path`).

    Examples
    --------
    >>> step = RankingStep("placement", "rank_dealers", ("mm",), None, None, "marketmatch",
    ...                    None, spill_dir=Path("data/.mm_spill"))
    >>> step.spill_path("2026-06-01").as_posix()
    'data/.mm_spill/mm/placement/2026-06-01'
    >>> RankingStep("sourcing", "rank_vins", (), None, None, "marketmatch", None,
    ...             spill_dir=Path("spill"))
    Traceback (most recent call last):
    ...
    TypeError: spill_dir= needs a ranking function with output=; mm.rank_vins ranks in memory only
    """

    name: str
    kind: Kind
    key_prefix: tuple[str, ...]
    partitions_def: PartitionsDefinition | None
    group_name: str | None
    resource_key: str
    pool: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    spill_dir: Path | None = None

    def __post_init__(self) -> None:
        """Check the options against the ranking function's signature (TypeError, ...)."""
        ranker = mm.rank_dealers if self.kind == "rank_dealers" else mm.rank_vins
        validate_options(ranker, self.options)
        if self.spill_dir is None:
            return
        if not isinstance(self.spill_dir, Path):
            raise TypeError(
                f"spill_dir= takes a folder (str or Path), got {type(self.spill_dir).__name__}"
            )
        if "output" not in inspect.signature(ranker).parameters:
            raise TypeError(
                f"spill_dir= needs a ranking function with output=; mm.{self.kind} ranks in "
                "memory only"
            )

    def spill_path(self, partition_key: str | None) -> Path:
        """Return the folder of one run: ``<spill_dir>/<key path>/<partition|unpartitioned>``."""
        if self.spill_dir is None:
            raise ValueError(f"{self.ranked_key.to_user_string()} ranks in memory (no spill_dir)")
        return self.spill_dir.joinpath(*self.ranked_key.path, partition_key or UNPARTITIONED)

    @property
    def group_by(self) -> tuple[str, ...]:
        """Columns of a ranking group: the vehicle (rank_dealers) or the rooftop (rank_vins)."""
        return VEHICLE_COLUMNS if self.kind == "rank_dealers" else DEALER_COLUMNS

    @property
    def labels(self) -> tuple[str, str]:
        """What a group and a candidate are, for people."""
        return ("vehicles", "dealers") if self.kind == "rank_dealers" else ("dealers", "vehicles")

    def key(self, suffix: str = "") -> AssetKey:
        """Return the key of ``name`` (or ``name_<suffix>``) under the prefix."""
        return AssetKey([*self.key_prefix, f"{self.name}_{suffix}" if suffix else self.name])

    @property
    def ranked_key(self) -> AssetKey:
        """Key of the ranked pairs (``mm.schemas.RankedMatch``)."""
        return self.key()

    @property
    def failures_key(self) -> AssetKey:
        """Key of the pairs not ranked (``mm.schemas.FailedMatch``)."""
        return self.key("failures")
