"""``df.marketmatch``: the ranking functions as a polars namespace (DataFrame and LazyFrame).

Registered when ``mm_pipeline`` is imported.

Examples
--------
>>> import polars as pl
>>> import mm_pipeline  # registers the namespace
>>> pairs = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000],
...                       "source": ["mbofaugusta.com"], "zip": ["30907"]})
>>> pairs.marketmatch.plan().requests
1
>>> pairs.lazy().marketmatch.plan(endpoint="vins").groups
1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import polars as pl

from mm_pipeline._assign import assign
from mm_pipeline._assign_result import AssignResult
from mm_pipeline._plan import plan
from mm_pipeline._rank import rank_dealers, rank_vins
from mm_pipeline._result import RankResult

__all__ = ["MarketMatchNamespace"]

P = ParamSpec("P")
T = TypeVar("T")
Frame = pl.DataFrame | pl.LazyFrame


def _on_frame(
    function: Callable[Concatenate[Frame, P], T], doc: str
) -> Callable[Concatenate[MarketMatchNamespace, P], T]:
    """Make a namespace method calling ``function`` on the frame (its options spelled there)."""

    def method(self: MarketMatchNamespace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return function(self._frame, *args, **kwargs)

    method.__name__ = method.__qualname__ = function.__name__
    method.__doc__ = doc
    return method


@pl.api.register_dataframe_namespace("marketmatch")
@pl.api.register_lazyframe_namespace("marketmatch")
class MarketMatchNamespace:
    """MarketMatch on a frame: ``pairs.marketmatch.rank_dealers(...)``, ``ranked...assign(...)``."""

    def __init__(self, frame: pl.DataFrame | pl.LazyFrame) -> None:
        self._frame = frame

    rank_dealers = _on_frame(
        # overloaded on output= (in-memory or lazy frames), which a ParamSpec cannot carry
        cast("Callable[Concatenate[Frame, ...], RankResult[Any]]", rank_dealers),
        "Rank the dealers of every vehicle: :func:`mm_pipeline.rank_dealers` on this frame.",
    )
    rank_vins = _on_frame(
        rank_vins,
        "Rank the vehicles of every dealer: :func:`mm_pipeline.rank_vins` on this frame.",
    )

    plan = _on_frame(
        plan,
        "Price a ranking on the route its mode takes: :func:`mm_pipeline.plan` on this frame.",
    )

    def assign(
        self,
        *,
        capacity: int | pl.DataFrame,
        default_capacity: int = 0,
        cost: str | pl.Expr = "vin_rank",
        max_rank: int | None = None,
    ) -> AssignResult:
        """Place each vehicle of this ranked frame under capacity: :func:`mm_pipeline.assign`."""
        return assign(
            self._frame,
            capacity=capacity,
            default_capacity=default_capacity,
            cost=cost,
            max_rank=max_rank,
        )
