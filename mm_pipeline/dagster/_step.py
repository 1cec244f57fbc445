"""RankingStep: one ranking step as a factory built it, what downstream steps build on.

A step downstream of a ranking (the placement plan, ``_plan``) takes a :class:`RankingStep`,
reads ``step.ranked_key`` and names its assets ``step.key("<suffix>")``; the factories
(``_factory``) build the step and append the downstream ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dagster import AssetKey, PartitionsDefinition

import mm_pipeline as mm
from mm_pipeline.dagster._options import validate_options

__all__ = ["DEALER_COLUMNS", "VEHICLE_COLUMNS", "Kind", "RankingStep"]

VEHICLE_COLUMNS = ("vin", "price", "miles")
DEALER_COLUMNS = ("source", "zip", "mc_location_id")

Kind = Literal["rank_dealers", "rank_vins"]


@dataclass(frozen=True)
class RankingStep:
    """One ranking step as built by a factory: what downstream steps build on."""

    name: str
    kind: Kind
    key_prefix: tuple[str, ...]
    partitions_def: PartitionsDefinition | None
    group_name: str | None
    resource_key: str
    pool: str | None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the options against the ranking function's signature (TypeError, ...)."""
        ranker = mm.rank_dealers if self.kind == "rank_dealers" else mm.rank_vins
        validate_options(ranker, self.options)

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
