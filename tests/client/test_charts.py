"""Charts of a ranking: small embedded data, PNGs, clear errors (no network)."""

from __future__ import annotations

import json
import sys

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline.charts import (
    best_vs_runner_up,
    dealer_concentration,
    score_distribution,
    to_png,
)

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
