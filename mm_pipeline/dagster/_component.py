"""A Dagster Component for one ranking step, configured in YAML (``dg`` projects).

``defs/placement/defs.yaml``::

    type: mm_pipeline.dagster.RankingComponent
    attributes:
      step: rank_dealers
      name: placement
      vehicles: my_inventory
      dealers: my_rooftops
      group_name: marketmatch
      daily_partitions: {start_date: "2026-01-01"}
      options: {mode: auto, exact_top_k: 5}
      assign: {capacity: my_rooftops, min_placed_share: 0.8}   # optional: placement_plan
      spill_dir: data/.mm_spill     # optional: rank more pairs than fit in memory

It builds exactly what :func:`rank_dealers_assets` / :func:`rank_vins_assets` build; the
resource (``marketmatch``) and the IO manager come from the project's other definitions.
"""

from typing import Any, Literal

from dagster import (
    AssetKey,
    Component,
    ComponentLoadContext,
    DailyPartitionsDefinition,
    Definitions,
    Model,
    Resolvable,
)
from pydantic import Field

from mm_pipeline.dagster._factory import rank_dealers_assets, rank_vins_assets
from mm_pipeline.dagster._plan import PlacementPlan

__all__ = ["DailyPartitions", "RankingComponent"]


class DailyPartitions(Model):
    """Daily partitions of the step: match those of its upstream assets."""

    start_date: str = Field(description="First day, YYYY-MM-DD.")
    end_offset: int = Field(default=0, description="1: up to and including today.")
    timezone: str | None = Field(default=None, description="Timezone of the days (UTC).")


class RankingComponent(Component, Model, Resolvable):
    """One MarketMatch ranking step over upstream assets named in YAML.

    Examples
    --------
    >>> import dagster as dg
    >>> component = RankingComponent.resolve_from_yaml('''
    ... step: rank_vins
    ... name: sourcing
    ... pairs: crm/buy_list
    ... options: {exact_top_k: 3}
    ... ''')
    >>> defs = dg.build_defs_for_component(component)
    >>> sorted(key.to_user_string() for assets in defs.assets or [] for key in assets.keys)
    ['sourcing', 'sourcing_failures']
    """

    step: Literal["rank_dealers", "rank_vins"] = Field(description="The ranking function.")
    name: str = Field(description="Name of the ranked asset (failures: <name>_failures).")
    pairs: str | None = Field(default=None, description="Upstream pairs asset ('a/b' keys).")
    vehicles: str | None = Field(default=None, description="Upstream vehicles (rank_dealers).")
    dealers: str | None = Field(default=None, description="Upstream dealers (rank_dealers).")
    group_name: str | None = Field(default=None, description="Asset group.")
    key_prefix: list[str] | None = Field(default=None, description="Prefix of the step's keys.")
    resource_key: str = Field(default="marketmatch", description="MarketMatchResource key.")
    pool: str | None = Field(default=None, description="Concurrency pool (None: the default).")
    daily_partitions: DailyPartitions | None = Field(
        default=None, description="Daily partitions (None: unpartitioned)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the ranking function (mode, exact_top_k...)."
    )
    assign: dict[str, Any] | None = Field(
        default=None,
        description="rank_dealers only: also a placement plan, the fields of PlacementPlan "
        "(capacity: an int or a dealers asset key; default_capacity, cost (a column), "
        "max_rank, min_placed_share, suffix).",
    )
    spill_dir: str | None = Field(
        default=None,
        description="rank_dealers only: rank more pairs than fit in memory, through Parquet "
        "files in a folder under this one (removed once stored); see rank_dealers_assets.",
    )

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        """Build the step's definitions with the factory (options are checked here)."""
        upstream: dict[str, Any] = {
            arg: AssetKey.from_user_string(value)
            for arg, value in (
                ("pairs", self.pairs), ("vehicles", self.vehicles), ("dealers", self.dealers)
            )
            if value is not None
        }  # fmt: skip
        partitions = self.daily_partitions
        common: dict[str, Any] = {
            "name": self.name,
            "group_name": self.group_name,
            "key_prefix": self.key_prefix,
            "resource_key": self.resource_key,
            "partitions_def": None
            if partitions is None
            else DailyPartitionsDefinition(**partitions.model_dump(exclude_none=True)),
            **({"pool": self.pool} if self.pool else {}),
            **({"spill_dir": self.spill_dir} if self.spill_dir else {}),
        }
        if self.assign is not None:
            if self.step != "rank_dealers":
                raise TypeError("assign: a placement plan follows a rank_dealers step only")
            plan = dict(self.assign)
            if isinstance(plan.get("capacity"), str):
                plan["capacity"] = AssetKey.from_user_string(plan["capacity"])
            common["assign"] = PlacementPlan(**plan)
        factory = rank_dealers_assets if self.step == "rank_dealers" else rank_vins_assets
        return Definitions(assets=factory(**upstream, **common, **self.options))
