"""Altair charts of a ranking and of a placement plan: what an analyst asks first.

Each ranking chart takes a :class:`~mm_pipeline.RankResult` (or its ``ranked`` frame), the plan
chart an :class:`~mm_pipeline.AssignResult`; each aggregates in polars, and hands Altair only
the few rows it draws, so a chart of a million ranked pairs embeds a few hundred values. The
charts render in Jupyter as they are, and to PNG with :func:`to_png` (vl-convert, no browser),
e.g. for Dagster metadata.

Altair and vl-convert come with the ``plot`` extra: ``pip install 'mm-pipeline[plot]'``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from mm_pipeline._assign_result import AssignResult
from mm_pipeline._plan import GROUP_KEYS
from mm_pipeline._result import RankResult

if TYPE_CHECKING:
    import altair as alt

__all__ = [
    "best_vs_runner_up",
    "dealer_concentration",
    "placement_concentration",
    "score_distribution",
    "to_png",
]

_VEHICLE: Final = list(GROUP_KEYS["dealers"])
_DEALER: Final = ["source", "zip", "mc_location_id"]
_MAX_POINTS: Final = 5_000
_BEST, _RUNNER_UP, _OTHER = "best dealer", "runner-up", "other candidates"
_COLOURS: Final = {_BEST: "#1f77b4", _RUNNER_UP: "#ff7f0e", _OTHER: "#9e9e9e"}
_FONT: Final = {"fontSize": 15, "subtitleFontSize": 12, "subtitleColor": "#555555"}


def _require_altair() -> None:
    if importlib.util.find_spec("altair") is None:
        raise ImportError(
            "mm_pipeline.charts draws with Altair, which is not installed: "
            "pip install 'mm-pipeline[plot]'"
        )


def _ranked(result: RankResult | pl.DataFrame) -> pl.DataFrame:
    if isinstance(result, RankResult):
        if result.stats.endpoint != "dealers":
            raise ValueError(
                "these charts show each vehicle's dealers: pass a rank_dealers result, "
                f"not a rank_{result.stats.endpoint} one"
            )
        return result.ranked
    if isinstance(result, pl.DataFrame):
        missing = {*_VEHICLE, "source", "dealer_ymm_score", "vin_rank"} - set(result.columns)
        if missing:
            raise ValueError(f"the ranked frame lacks column(s) {', '.join(sorted(missing))}")
        return result
    raise TypeError(f"expected a RankResult or its ranked frame, got {type(result)!r}")


def _dealer_label() -> pl.Expr:
    """``source (zip)``, or ``source #mc_location_id`` for a rooftop given by id only."""
    suffix = (
        pl.when(pl.col("zip").is_not_null())
        .then(pl.format(" ({})", "zip"))
        .when(pl.col("mc_location_id").is_not_null())
        .then(pl.format(" #{}", "mc_location_id"))
        .otherwise(pl.lit(""))
    )
    return pl.concat_str("source", suffix)


def _title(alt: Any, text: str, subtitle: str | list[str]) -> Any:
    return alt.Title(text, subtitle=subtitle, anchor="start", **_FONT)


def score_distribution(
    result: RankResult | pl.DataFrame, *, bins: int = 30, width: int = 560
) -> alt.FacetChart:
    """Histograms of ``dealer_ymm_score``: every candidate pair, and each vehicle's best dealer.

    The two rows share the score axis (one set of bins) and count on their own scale, so the
    few best placements are as readable as the many candidates.

    Parameters
    ----------
    result
        A ``rank_dealers`` result, or its ``ranked`` frame.
    bins
        Number of equal-width score bins.
    width
        Chart width in pixels.

    Examples
    --------
    >>> import polars as pl
    >>> ranked = pl.DataFrame({"vin": ["A"] * 3, "price": [1] * 3, "miles": [1] * 3,
    ...     "source": ["x.com", "y.com", "z.com"], "zip": ["00001"] * 3,
    ...     "mc_location_id": [None] * 3, "dealer_ymm_score": [900.0, 1200.0, 800.0],
    ...     "vin_rank": [1, 2, 3]})
    >>> score_distribution(ranked).to_dict()["facet"]["row"]["field"]
    'group'
    """
    _require_altair()
    import altair as alt  # noqa: PLC0415 (optional: the plot extra)

    ranked = _ranked(result)
    scores = ranked.get_column("dealer_ymm_score").drop_nulls()
    low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 1.0)  # type: ignore[arg-type]
    step = (high - low) / bins or 1.0
    binned = ranked.drop_nulls("dealer_ymm_score").select(
        start=((pl.col("dealer_ymm_score") - low) / step).floor().clip(0, bins - 1) * step + low,
        best=pl.col("vin_rank") == 1,
    )
    groups = {
        f"all {ranked.height:,} candidate pairs": binned,
        f"best dealer of each of {binned.get_column('best').sum():,} vehicles": binned.filter(
            "best"
        ),
    }
    counts = pl.concat(
        frame.group_by("start").len("pairs").with_columns(group=pl.lit(name), order=pl.lit(i))
        for i, (name, frame) in enumerate(groups.items())
    ).with_columns(end=pl.col("start") + step)
    chart = (
        alt.Chart(alt.InlineData(values=counts.to_dicts()))
        .mark_bar(binSpacing=1)
        .encode(
            x=alt.X("start:Q", title="dealer_ymm_score (dealer affinity for the vehicle's YMM)")
            .scale(domain=[low, high], nice=False, zero=False)
            .bin("binned"),
            x2="end:Q",
            y=alt.Y("pairs:Q", title="pairs"),
            color=alt.Color("order:N", legend=None).scale(
                domain=[0, 1], range=[_COLOURS[_OTHER], _COLOURS[_BEST]]
            ),
            tooltip=[
                alt.Tooltip("start:Q", title="from", format=",.0f"),
                alt.Tooltip("end:Q", title="to", format=",.0f"),
                alt.Tooltip("pairs:Q", format=","),
            ],
        )
        .properties(width=width, height=150)
    )
    faceted: alt.FacetChart = (
        chart.facet(
            row=alt.Row("group:N", title=None, sort=list(groups)).header(
                labelAngle=0,
                labelAlign="left",
                labelAnchor="start",
                labelOrient="top",
                labelFontSize=12,
                labelFontWeight="bold",
            )
        )
        .resolve_scale(y="independent")
        .properties(
            title=_title(
                alt,
                "How well do the candidate dealers fit?",
                "dealer_ymm_score of every ranked pair, and of each vehicle's rank-1 dealer",
            )
        )
    )
    return faceted


def _top_two(ranked: pl.DataFrame) -> pl.DataFrame:
    """One row per vehicle ranked against at least two dealers: its best and its runner-up."""
    pick = ["dealer_ymm_score", "_dealer"]
    top = ranked.filter(pl.col("vin_rank") <= 2).with_columns(_dealer=_dealer_label())
    best = top.filter(pl.col("vin_rank") == 1).select(
        *_VEHICLE, *(pl.col(c).alias(f"best_{c.strip('_')}") for c in pick)
    )
    second = top.filter(pl.col("vin_rank") == 2).select(
        *_VEHICLE, *(pl.col(c).alias(f"runner_up_{c.strip('_')}") for c in pick)
    )
    both = best.join(second, on=_VEHICLE, how="inner", nulls_equal=True)
    return both.with_columns(
        margin=pl.col("best_dealer_ymm_score") - pl.col("runner_up_dealer_ymm_score")
    )


def best_vs_runner_up(result: RankResult | pl.DataFrame, *, size: int = 420) -> alt.LayerChart:
    """Each vehicle's best dealer against its runner-up, by ``dealer_ymm_score``.

    One point per vehicle (ranked against two dealers or more): the runner-up's score across,
    the best dealer's up. Above the diagonal the rank-1 dealer also has the higher affinity
    score; below it the ranking preferred it for other reasons (inventory, turnover, stock).
    Far from the diagonal is a clear choice, near it a close call. At most 5,000 vehicles are
    drawn (a seeded sample beyond that, said in the subtitle).

    Examples
    --------
    >>> import polars as pl
    >>> ranked = pl.DataFrame({"vin": ["A", "A"], "price": [1, 1], "miles": [1, 1],
    ...     "source": ["x.com", "y.com"], "zip": ["00001", None], "mc_location_id": [None, "7"],
    ...     "dealer_ymm_score": [900.0, 1200.0], "vin_rank": [1, 2]})
    >>> len(best_vs_runner_up(ranked).to_dict()["layer"])
    3
    """
    _require_altair()
    import altair as alt  # noqa: PLC0415 (optional: the plot extra)

    pairs = _top_two(_ranked(result))
    shown = pairs.sample(_MAX_POINTS, seed=0) if pairs.height > _MAX_POINTS else pairs
    above = int((pairs.get_column("margin") >= 0).sum())
    sampled = f"; {shown.height:,} drawn" if shown.height < pairs.height else ""
    scores = pl.concat([pairs["best_dealer_ymm_score"], pairs["runner_up_dealer_ymm_score"]])
    low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 1.0)  # type: ignore[arg-type]
    pad = (high - low) * 0.05 or 1.0
    domain = [low - pad, high + pad]
    points = shown.with_columns(
        verdict=pl.when(pl.col("margin") >= 0)
        .then(pl.lit("best dealer also scores higher"))
        .otherwise(pl.lit("best dealer scores lower: ranked on other factors"))
    )
    ends = alt.InlineData(values=[{"s": domain[0]}, {"s": domain[1]}])
    label = alt.InlineData(values=[{"s": domain[0] + 0.9 * (domain[1] - domain[0])}])
    diagonal = alt.Chart(ends).mark_line(color="#9e9e9e", strokeDash=[4, 4]).encode(
        x="s:Q", y="s:Q"
    ) + alt.Chart(label).mark_text(
        text="equal scores", angle=315, dy=-8, color="#757575", fontSize=12
    ).encode(x="s:Q", y="s:Q")
    dots = (
        alt.Chart(alt.InlineData(values=points.to_dicts()))
        .mark_circle(size=60, opacity=0.8)
        .encode(
            x=alt.X("runner_up_dealer_ymm_score:Q", title="runner-up's dealer_ymm_score").scale(
                domain=domain, zero=False, nice=False
            ),
            y=alt.Y("best_dealer_ymm_score:Q", title="best dealer's dealer_ymm_score").scale(
                domain=domain, zero=False, nice=False
            ),
            color=alt.Color("verdict:N", title=None)
            .scale(range=[_COLOURS[_BEST], _COLOURS[_RUNNER_UP]])
            .legend(orient="bottom", direction="vertical", labelLimit=400, labelFontSize=12),
            tooltip=[
                alt.Tooltip("vin:N"),
                alt.Tooltip("best_dealer:N", title="best"),
                alt.Tooltip("best_dealer_ymm_score:Q", title="best score", format=",.0f"),
                alt.Tooltip("runner_up_dealer:N", title="runner-up"),
                alt.Tooltip("runner_up_dealer_ymm_score:Q", title="runner-up score", format=",.0f"),
            ],
        )
    )
    layered: alt.LayerChart = (diagonal + dots).properties(
        width=size,
        height=size,
        title=_title(
            alt,
            "Each vehicle's best dealer against its runner-up",
            f"{pairs.height:,} vehicles{sampled}; {above:,} above the diagonal "
            f"(best dealer also has the higher score), {pairs.height - above:,} below",
        ),
    )
    return layered


def dealer_concentration(
    result: RankResult | pl.DataFrame, *, top: int = 15, width: int = 560
) -> alt.LayerChart:
    """How concentrated the best placements are: a Pareto chart of the rank-1 dealers.

    Bars: the ``top`` dealers by the number of vehicles whose best dealer they are; line: the
    cumulative share of all best placements they take (right axis). The title says the share
    the top 5 take.

    Examples
    --------
    >>> import polars as pl
    >>> ranked = pl.DataFrame({"vin": ["A", "B"], "price": [1, 1], "miles": [1, 1],
    ...     "source": ["x.com", "x.com"], "zip": ["00001", "00001"],
    ...     "mc_location_id": [None, None], "dealer_ymm_score": [900.0, 1200.0],
    ...     "vin_rank": [1, 1]})
    >>> dealer_concentration(ranked).to_dict()["title"]["text"]
    'The top 1 of 1 dealer (100%) takes 100% of the 2 best placements'
    """
    _require_altair()
    import altair as alt  # noqa: PLC0415 (optional: the plot extra)

    best = _ranked(result).filter(pl.col("vin_rank") == 1).with_columns(dealer=_dealer_label())
    counts = (
        best.group_by("dealer")
        .len("vehicles")
        .sort(["vehicles", "dealer"], descending=[True, False])
        .with_columns(share=pl.col("vehicles").cum_sum() / max(best.height, 1))
        .with_row_index("position", offset=1)
    )
    shown = counts.head(top)
    leaders = min(5, counts.height)
    taken = float(counts.get_column("share")[leaders - 1]) if leaders else 0.0
    dealers = "dealer" if counts.height == 1 else "dealers"
    x = alt.X("dealer:N", sort=None, title=None).axis(labelAngle=-40, labelLimit=220)
    data = alt.InlineData(values=shown.to_dicts())
    bars = (
        alt.Chart(data)
        .mark_bar(color=_COLOURS[_BEST])
        .encode(
            x=x,
            y=alt.Y("vehicles:Q", title="vehicles placed (rank 1)").axis(tickMinStep=1),
            tooltip=["dealer:N", "vehicles:Q", alt.Tooltip("share:Q", format=".0%")],
        )
    )
    line = (
        alt.Chart(data)
        .mark_line(color=_COLOURS[_RUNNER_UP], point=alt.OverlayMarkDef(color=_COLOURS[_RUNNER_UP]))
        .encode(
            x=x,
            y=alt.Y("share:Q", title="cumulative share of best placements")
            .scale(domain=[0, 1])
            .axis(format="%", titleColor=_COLOURS[_RUNNER_UP]),
        )
    )
    pareto: alt.LayerChart = (
        (bars + line)
        .resolve_scale(y="independent")
        .properties(
            width=width,
            height=260,
            title=_title(
                alt,
                f"The top {leaders} of {counts.height:,} {dealers} "
                f"({leaders / max(counts.height, 1):.0%}) {'takes' if leaders == 1 else 'take'} "
                f"{taken:.0%} of the {best.height:,} best placements",
                f"best placements per dealer, the top {shown.height} of {counts.height:,} "
                "dealers; line: cumulative share",
            ),
        )
    )
    return pareto


def placement_concentration(
    plan: AssignResult, *, top: int = 15, width: int = 560
) -> alt.LayerChart:
    """Vehicles per dealer if each went to its rank-1 dealer, against the plan, with capacity.

    For the ``top`` dealers with the most first choices (``AssignResult.concentration()``): a
    bar of the vehicles whose first choice the dealer is, a bar of those the plan places there,
    and a tick at the dealer's capacity. The title says the most vehicles one dealer gets
    either way, the subtitle the largest dealer shares and how many vehicles the plan places.

    Examples
    --------
    >>> import polars as pl
    >>> import mm_pipeline as mm
    >>> ranked = pl.DataFrame({"vin": ["A", "A", "B", "B"], "price": [1] * 4,
    ...     "miles": [1] * 4, "source": ["x.com", "y.com"] * 2, "zip": ["00001"] * 4,
    ...     "mc_location_id": [None] * 4, "vin_rank": [1, 2, 1, 2], "rank_exact": [True] * 4})
    >>> plan = mm.assign(ranked, capacity=1)
    >>> placement_concentration(plan).to_dict()["title"]["text"]
    'Rank 1 would send up to 2 vehicles to one dealer; the plan sends at most 1'
    """
    if not isinstance(plan, AssignResult):
        raise TypeError(f"expected the AssignResult of mm.assign, got {type(plan)!r}")
    _require_altair()
    import altair as alt  # noqa: PLC0415 (optional: the plot extra)

    data = plan.concentration(top=top)
    s = plan.stats
    most = {
        column: int(plan.dealers.get_column(column).max() or 0)  # type: ignore[arg-type]
        for column in ("first_choice", "placed")
    }
    dealers = data.filter(pl.col("placement") == "plan").height
    highest = max(
        int(data.select(pl.max_horizontal(pl.max("vehicles", "capacity"))).item() or 0), 1
    )
    x = alt.X("dealer:N", sort=None, title=None).axis(labelAngle=-40, labelLimit=220)
    order = ["first choice", "plan"]
    tooltip = [
        "dealer:N",
        "placement:N",
        "vehicles:Q",
        alt.Tooltip("share:Q", format=".0%"),
        "capacity:Q",
    ]
    bars = (
        alt.Chart(alt.InlineData(values=data.to_dicts()))
        .mark_bar()
        .encode(
            x=x,
            xOffset=alt.XOffset("placement:N").sort(order),
            y=alt.Y("vehicles:Q", title="vehicles")
            .scale(domain=[0, highest * 1.05], nice=True)
            .axis(tickMinStep=1),
            color=alt.Color("placement:N", title=None)
            .scale(domain=order, range=[_COLOURS[_RUNNER_UP], _COLOURS[_BEST]])
            .legend(orient="top-right", labelFontSize=12),
            tooltip=tooltip,
        )
    )
    capacity = data.filter(pl.col("placement") == "plan")
    ticks = (
        alt.Chart(alt.InlineData(values=capacity.to_dicts()))
        .mark_tick(color="#212121", thickness=2)
        .encode(x=x, y="capacity:Q", tooltip=["dealer:N", "capacity:Q"])
    )
    chart: alt.LayerChart = (bars + ticks).properties(
        width=width,
        height=260,
        title=_title(
            alt,
            f"Rank 1 would send up to {most['first_choice']:,} vehicles to one dealer; "
            f"the plan sends at most {most['placed']:,}",
            [
                f"vehicles per dealer, the {dealers} of {plan.dealers.height:,} dealers with the "
                "most first choices; tick: the dealer's capacity",
                f"the plan places {s.placed:,} of {s.vehicles:,} vehicles; largest dealer share "
                f"{s.largest_share:.0%} (rank 1: {s.first_choice_largest_share:.0%})",
            ],
        ),
    )
    return chart


def to_png(chart: alt.TopLevelMixin, *, scale: float = 2.0) -> bytes:
    r"""Render a chart to PNG bytes with vl-convert (no browser).

    Examples
    --------
    >>> import altair as alt
    >>> to_png(alt.Chart(alt.InlineData(values=[{"a": 1}])).mark_point().encode(x="a:Q"))[:4]
    b'\x89PNG'
    """
    try:
        vl_convert = importlib.import_module("vl_convert")
    except ImportError:
        raise ImportError(
            "PNG export needs vl-convert-python: pip install 'mm-pipeline[plot]'"
        ) from None
    png: bytes = vl_convert.vegalite_to_png(chart.to_dict(), scale=scale)
    return png
