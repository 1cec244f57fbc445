"""The committed sample data, ranked online against the sandbox and checked against its truth."""

from __future__ import annotations

from pathlib import Path

import polars as pl

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from mm_pipeline.schemas import FailedMatch, RankedMatch
from tests.client.conftest import assert_accounted, assert_contiguous, client_for

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
TEXT = {"zip": pl.String, "mc_location_id": pl.String}


def test_sample_pairs_rank_exactly(sandbox: Sandbox) -> None:
    """pairs.csv.gz (60 vehicles, 10-150 dealers each): top-10 exact for every vehicle."""
    pairs = pl.read_csv(SAMPLES / "pairs.csv.gz", schema_overrides=TEXT)
    assert pairs.height > 1_000
    result = mm.rank_dealers(pairs, client=client_for(sandbox), mode="online", progress=False)
    RankedMatch.validate(result.ranked)
    assert result.failed.is_empty()
    assert_accounted(pairs, result)
    assert_contiguous(result.ranked, ["vin", "price", "miles"])
    assert result.stats.requests == mm.plan(pairs).requests
    assert result.stats.rerank_rounds == 1  # some vehicles have more than 100 candidates
    market = Market.default()
    for (vin, price, miles), group in result.ranked.group_by(
        ["vin", "price", "miles"], maintain_order=True
    ):
        vehicle = {"vin": vin, "price": price, "miles": miles}
        candidates = pairs.filter(pl.col("vin") == vin).select("source", "zip").to_dicts()
        outcome = market.rank_dealers(vehicle, candidates)  # type: ignore[arg-type]
        truth = [(m["source"], m["zip"]) for m in outcome.ranked_matches]  # type: ignore[union-attr]
        got = list(group.select("source", "zip").iter_rows())
        exact = int(group.get_column("rank_exact").sum())
        assert exact == len(truth) if len(truth) <= 100 else exact >= 10
        assert got[:exact] == truth[:exact]


def test_sample_acquisitions_rank_by_dealer(sandbox: Sandbox) -> None:
    """acquisitions.csv (12 dealers, 20-60 vehicles each) through rank_vins: exact top ranks."""
    pairs = pl.read_csv(SAMPLES / "acquisitions.csv", schema_overrides=TEXT)
    result = mm.rank_vins(pairs, client=client_for(sandbox), progress=False)
    assert result.failed.is_empty()
    assert_accounted(pairs, result)
    market = Market.default()
    for dealer, group in pairs.group_by(["source", "zip", "mc_location_id"], maintain_order=True):
        names = ("source", "zip", "mc_location_id")
        spec = {k: v for k, v in zip(names, dealer, strict=True) if v is not None}
        vins = group.select("vin", "price", "miles").to_dicts()
        outcome = market.rank_vins(spec, vins)  # type: ignore[arg-type]
        truth = [m["vin"] for m in outcome.ranked_matches]  # type: ignore[union-attr]
        source_rows = result.ranked.filter(pl.col("source") == spec["source"])
        if "zip" in spec:
            source_rows = source_rows.filter(pl.col("zip") == spec["zip"])
        exact = int(source_rows.get_column("rank_exact").sum())
        assert exact >= min(3, len(truth))  # rank_vins' default exact_top_k
        assert source_rows.get_column("vin").head(exact).to_list() == truth[:exact]


def test_bad_sample_pairs_each_get_their_reason(sandbox: Sandbox) -> None:
    """bad_pairs.csv: client-side problems are invalid_input, API-side ones carry the API's code."""
    pairs = pl.read_csv(SAMPLES / "bad_pairs.csv", schema_overrides=TEXT)
    result = mm.rank_dealers(pairs, client=client_for(sandbox), on_invalid="fail", progress=False)
    FailedMatch.validate(result.failed)
    codes = [code for code, _message in result.failed.select("error_code", "error_message").rows()]
    assert codes == [
        "invalid_input",  # row 6: letter O in the VIN
        "invalid_input",  # row 7: swapped characters, check digit wrong
        "invalid_input",  # row 8: 16 characters
        "vin_decode_failed",  # row 9: unknown manufacturer
        "vin_decode_failed",  # row 10: model year 2029
        "invalid_input",  # row 11: price 0
        "invalid_input",  # row 12: price "$25,990"
        "invalid_input",  # row 13: miles -120
        "dealer_not_found",  # row 15
        "multi_location_requires_zip",  # row 16: carvana.com without zip
        "invalid_input",  # row 17: empty source
    ]
    messages = result.failed.get_column("error_message").to_list()
    assert messages[0].startswith("row 6: vin may only contain 0-9 and A-Z except I, O and Q")
    assert messages[6] == 'row 12: price is not a whole number (got "$25,990")'
    # row 14's 4-digit ZIP is zero-padded ("7076" -> "07076") and ranks; row 18 repeats row 1
    assert result.ranked.filter(pl.col("source") == "acuraofscotchplains.com").get_column(
        "zip"
    ).to_list() == ["07076"]
    assert (result.ranked.height, result.stats.duplicates_removed) == (7, 1)
    assert result.stats.invalid_rows == 7
