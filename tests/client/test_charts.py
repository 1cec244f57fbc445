"""Charts of a ranking: small embedded data, PNGs, clear errors (no network)."""

from __future__ import annotations

import json
import sys
from typing import Any

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline.charts import (
    best_vs_runner_up,
    dealer_concentration,
    placement_concentration,
    score_distribution,
    to_png,
)
from tests._support.frames import ranked

CHARTS = (score_distribution, best_vs_runner_up, dealer_concentration)


def ranked_frame(vehicles: int, dealers: int) -> pl.DataFrame:
    """A rank_dealers-shaped ranked frame: each vehicle ranked against every dealer."""
    frame = pl.DataFrame({"v": range(vehicles)}).join(
        pl.DataFrame({"d": range(dealers)}), how="cross"
    )
    return frame.select(
        vin=pl.format("VIN{}", "v"),
        price=pl.lit(20_000, pl.Int64),
        miles=pl.lit(3_000, pl.Int64),
        source=pl.format("dealer{}.com", pl.col("d") % 7),
        zip=pl.format("0{}", pl.col("d") + 1000),
        mc_location_id=pl.lit(None, pl.String),
        dealer_ymm_score=(400 + (pl.col("v") * 37 + pl.col("d") * 101) % 2600).cast(pl.Float64),
        vin_rank=((pl.col("d") + pl.col("v")) % dealers + 1).cast(pl.UInt32),
    )


@pytest.mark.parametrize("chart", CHARTS)
def test_charts_embed_aggregates_not_rows(chart: object) -> None:
    """A chart of 200,000 ranked pairs embeds at most a few thousand values."""
    spec = chart(ranked_frame(2_000, 100)).to_dict()  # type: ignore[operator]
    assert len(json.dumps(spec)) < 2_000_000
    values = json.dumps(spec).count('"vin"') + json.dumps(spec).count('"start"')
    assert values <= 5_100


def test_titles_state_the_findings() -> None:
    """The titles say the counts an analyst reads first."""
    ranked = ranked_frame(10, 4)
    concentration = dealer_concentration(ranked).to_dict()["title"]["text"]
    assert concentration.startswith("The top 4 of 4 dealers (100%) take 100% of the 10 best")
    scatter = best_vs_runner_up(ranked).to_dict()["title"]["subtitle"]
    assert scatter.startswith("10 vehicles; ")


def test_png_of_each_chart() -> None:
    """Each chart renders to a PNG without a browser."""
    for chart in CHARTS:
        png = to_png(chart(ranked_frame(20, 10)))
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(png) > 10_000


def _layer_values(spec: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The rows each layer of a chart spec draws (Altair gathers them under ``datasets``)."""
    return [spec["datasets"][layer["data"]["name"]] for layer in spec["layer"]]


def test_the_plan_chart_sets_first_choice_against_the_plan() -> None:
    """Three vehicles whose rank 1 is a.com (capacity 1 each): bars per dealer, the finding
    in the title, the capacities drawn, a PNG; anything but an AssignResult is refused."""
    frame = ranked(
        *((vin, "a.com", 1, True) for vin in "XYZ"),
        *((vin, "b.com", 2, True) for vin in "XYZ"),
    )
    plan = mm.assign(frame, capacity=1)
    spec = placement_concentration(plan).to_dict()
    assert spec["title"]["text"] == (
        "Rank 1 would send up to 3 vehicles to one dealer; the plan sends at most 1"
    )
    assert "the plan places 2 of 3 vehicles" in spec["title"]["subtitle"][1]
    bars, ticks = _layer_values(spec)
    assert sorted((b["dealer"], b["placement"], b["vehicles"]) for b in bars) == [
        ("a.com 30907", "first choice", 3),
        ("a.com 30907", "plan", 1),
        ("b.com 30907", "first choice", 0),
        ("b.com 30907", "plan", 1),
    ]
    assert [t["capacity"] for t in ticks] == [1, 1]
    assert to_png(placement_concentration(plan))[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(TypeError, match="AssignResult"):
        placement_concentration(frame)  # type: ignore[arg-type]


def test_a_top_n_plan_chart_embeds_n_dealers() -> None:
    """top= keeps the dealers with the most first choices, and says how many there are."""
    frame = ranked_frame(200, 30).with_columns(rank_exact=pl.col("vin_rank") <= 5)
    plan = mm.assign(frame, capacity=4)
    spec = placement_concentration(plan, top=5).to_dict()
    bars, _ = _layer_values(spec)
    assert len(bars) == 2 * 5
    assert spec["title"]["subtitle"][0].startswith("vehicles per dealer, the 5 of ")


def test_rank_vins_results_are_refused() -> None:
    """The charts read each vehicle's dealers: a rank_vins result gets a clear error."""
    result = mm.RankResult(
        ranked=ranked_frame(2, 2),
        failed=pl.DataFrame(),
        stats=mm.RankStats(endpoint="vins", mode="online"),
    )
    with pytest.raises(ValueError, match="pass a rank_dealers result"):
        score_distribution(result)


def test_missing_altair_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Altair the error says which extra to install."""
    monkeypatch.setitem(sys.modules, "altair", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'mm-pipeline\[plot\]'"):
        dealer_concentration(ranked_frame(2, 2))
