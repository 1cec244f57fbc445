"""The sandbox market model: universe, scoring, online ranking, batch ranking, sample data."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import zipcodes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mm_pipeline._vin import check_digit
from mm_pipeline.sandbox._market import (
    MARKET_SEED,
    RESULT_COLUMNS,
    DealerSpec,
    Market,
    MissingColumnsError,
    Ranked,
    Unprocessable,
    VinSpec,
)
from mm_pipeline.sandbox._universe import MULTI_LOCATION_SOURCES, build_universe
from mm_pipeline.sandbox._vin import MODELS, decode_vins
from sample_data.generate import (
    CANDIDATES,
    DEALER_COUNT,
    VEHICLE_COUNT,
    write_big_pairs,
    write_samples,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
PORSCHE: VinSpec = {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000}
PUBLISHED_DEALERS: list[DealerSpec] = [
    {"source": "mbofaugusta.com", "zip": "30907"},
    {"source": "acceleride.mbofaugusta.com", "zip": "30907"},
    {"source": "acceleride.esterobaychevrolet.com", "zip": "33928"},
]
CARVANA_VINS: list[VinSpec] = [
    {"vin": "JTMDFREV7JJ214231", "price": 25990, "miles": 34307},
    {"vin": "7YAKN4DA1SY001014", "price": 38990, "miles": 38990},
    {"vin": "KL79MPSL8SB184667", "price": 20355, "miles": 15313},
    {"vin": "1FMCU0GD0JUD56190", "price": 13790, "miles": 73592},
    {"vin": "4T1C11BKXNU065125", "price": 22590, "miles": 50947},
]
BAD_VIN = "WP1BE2AY6PDA28064"


@pytest.fixture(scope="module")
def market() -> Market:
    """The process-wide market."""
    return Market.default()


@pytest.fixture(scope="module")
def candidates(market: Market) -> list[DealerSpec]:
    """A fixed list of 100 single-location rooftops given by source and zip."""
    rows = market.dealers.filter(~pl.col("multi_location")).sample(100, seed=11)
    return [{"source": s, "zip": z} for s, z in rows.select("source", "zip").iter_rows()]


def ranked(outcome: Ranked | Unprocessable) -> list[dict[str, Any]]:
    """The ranked matches of a successful outcome."""
    assert isinstance(outcome, Ranked), outcome
    return outcome.ranked_matches


def order_of(matches: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (source, zip) of the matches in rank order."""
    return [(m["source"], m["zip"]) for m in sorted(matches, key=lambda m: m["vin_rank"])]


def vin_for(year_code: str, *, wmi: str = "4T1", vds: str = "C11BK") -> str:
    """A decodable VIN of the given model-year code."""
    draft = f"{wmi}{vds}0{year_code}U065125"
    return draft[:8] + check_digit(draft) + draft[9:]


def one_score(market: Market, vin: str, price: int, miles: int) -> float:
    """The vin_score of a vehicle (at the first published dealer)."""
    spec: VinSpec = {"vin": vin, "price": price, "miles": miles}
    score: float = ranked(market.rank_dealers(spec, PUBLISHED_DEALERS[:1]))[0]["vin_score"]
    return score


# -- the universe ------------------------------------------------------------------------------


def test_universe_is_large_unique_and_real(market: Market) -> None:
    """About 30,000 rooftops at real 5-digit ZIPs, with unique (source, zip) and location ids."""
    dealers = market.dealers
    assert 25_000 <= dealers.height <= 35_000
    assert dealers.select("source", "zip").n_unique() == dealers.height
    assert dealers["mc_location_id"].n_unique() == dealers.height
    assert dealers["zip"].str.contains(r"^\d{5}$").all()
    for zip_code in dealers.sample(25, seed=1)["zip"]:
        assert zipcodes.is_real(zip_code)  # type: ignore[no-untyped-call]
    single = dealers.filter(~pl.col("multi_location"))
    assert single["source"].n_unique() == single.height
    assert set(dealers["kind"]) == {"franchise", "subdomain", "independent", "multi_location"}
    assert dealers["group"].drop_nulls().n_unique() > 10


@pytest.mark.parametrize(
    ("source", "zip_code"),
    [
        ("mbofaugusta.com", "30907"),
        ("acceleride.mbofaugusta.com", "30907"),
        ("acceleride.esterobaychevrolet.com", "33928"),
        ("carvana.com", "95765"),
    ],
)
def test_published_dealers_exist(market: Market, source: str, zip_code: str) -> None:
    """Every dealer of the published examples is a rooftop of the universe."""
    found = market.dealers.filter(pl.col("source") == source, pl.col("zip") == zip_code)
    assert found.height == 1


def test_multi_location_sources(market: Market) -> None:
    """Each multi-location source has its rooftops at distinct ZIPs; carvana.com includes 95765."""
    multi = market.dealers.filter("multi_location")
    assert set(multi["source"]) == set(MULTI_LOCATION_SOURCES)
    for source, count, zips in (
        multi.group_by("source").agg(pl.len(), pl.col("zip").n_unique()).rows()
    ):
        assert count == zips >= MULTI_LOCATION_SOURCES[source]
    carvana = multi.filter(pl.col("source") == "carvana.com")
    assert "95765" in carvana["zip"].to_list()
    assert carvana["zip"].n_unique() == carvana.height


def test_subdomains_sit_with_their_franchise(market: Market) -> None:
    """Every acceleride.<domain> rooftop has its franchise <domain> at the same ZIP."""
    subs = market.dealers.filter(pl.col("kind") == "subdomain").select(
        pl.col("source").str.strip_prefix("acceleride."), "zip"
    )
    assert subs.height > 100
    joined = subs.join(market.dealers.select("source", "zip"), on=["source", "zip"], how="anti")
    assert joined.height == 0


def test_franchise_names_look_real(market: Market) -> None:
    """Franchise domains carry their make or a dealer-style stem, and end in .com."""
    franchise = market.dealers.filter(pl.col("kind") == "franchise")
    assert franchise["source"].str.ends_with(".com").all()
    honda = franchise.filter(pl.col("focus_make") == "Honda")["source"]
    assert honda.str.contains("honda").all()


def test_universe_is_deterministic(market: Market) -> None:
    """Building the universe again from the same seed gives the same frame."""
    assert build_universe(MARKET_SEED).equals(market.dealers)


# -- scores ------------------------------------------------------------------------------------


def test_scores_rise_with_price_and_year_and_fall_with_miles(market: Market) -> None:
    """vin_score increases with price and model year and decreases with miles."""
    base = vin_for("N")
    prices = [one_score(market, base, p, 40_000) for p in (3_000, 15_000, 40_000, 120_000)]
    miles = [one_score(market, base, 25_000, m) for m in (0, 20_000, 90_000, 250_000)]
    years = [one_score(market, vin_for(c), 25_000, 40_000) for c in ("5", "C", "L", "T")]
    assert prices == sorted(prices)
    assert len(set(prices)) == 4
    assert miles == sorted(miles, reverse=True)
    assert len(set(miles)) == 4
    assert years == sorted(years)
    assert len(set(years)) == 4


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    price=st.integers(1, 10_000_000),
    miles=st.integers(0, 5_000_000),
    bump=st.integers(1, 100_000),
    year_code=st.sampled_from("123456789ABCDEFGHJKLMNPRSTV"),
)
def test_scores_stay_in_range_and_are_monotone(
    market: Market, price: int, miles: int, bump: int, year_code: str
) -> None:
    """Scores are within 400-3000 with 2 decimals; more price never lowers vin_score."""
    vin = vin_for(year_code)
    spec: VinSpec = {"vin": vin, "price": price, "miles": miles}
    for match in ranked(market.rank_dealers(spec, PUBLISHED_DEALERS)):
        for name in ("vin_score", "dealer_ymm_score"):
            assert 400 <= match[name] <= 3000
            assert round(match[name], 2) == match[name]
    assert one_score(market, vin, price + bump, miles) >= one_score(market, vin, price, miles)
    assert one_score(market, vin, price, miles + bump) <= one_score(market, vin, price, miles)


def test_dealer_ymm_score_reflects_the_rooftop_profile(market: Market) -> None:
    """Franchise rooftops of a make score that make's vehicles above other franchises' average."""
    dealers = market.dealers.filter(pl.col("kind") == "franchise")
    toyota = dealers.filter(pl.col("focus_make") == "Toyota").head(60)
    others = dealers.filter(pl.col("focus_make") == "BMW").head(60)
    vehicle: VinSpec = {"vin": "4T1C11BKXNU065125", "price": 22590, "miles": 50947}

    def mean_score(rows: pl.DataFrame) -> float:
        specs: list[DealerSpec] = [
            {"source": s, "zip": z} for s, z in rows.select("source", "zip").iter_rows()
        ]
        return float(
            np.mean([m["dealer_ymm_score"] for m in ranked(market.rank_dealers(vehicle, specs))])
        )

    assert mean_score(toyota) > mean_score(others) + 200


# -- online ranking ----------------------------------------------------------------------------


def test_published_dealers_rank_example(market: Market) -> None:
    """The published /dealers/rank example ranks its three dealers 1..3 with echoed fields."""
    matches = ranked(market.rank_dealers(PORSCHE, PUBLISHED_DEALERS))
    assert [m["vin_rank"] for m in matches] == [1, 2, 3]
    assert {(m["source"], m["zip"]) for m in matches} == {
        (d["source"], d["zip"]) for d in PUBLISHED_DEALERS
    }
    ids = dict(market.dealers.select(pl.concat_str("source", "zip"), "mc_location_id").iter_rows())
    for match in matches:
        assert (match["vin"], match["price"], match["miles"]) == ("WP1BE2AY5PDA28064", 20000, 3000)
        assert match["mc_location_id"] == ids[match["source"] + match["zip"]]
        assert set(match) == {
            "vin", "price", "miles", "source", "zip", "mc_location_id",
            "vin_score", "dealer_ymm_score", "vin_rank",
        }  # fmt: skip


@pytest.mark.parametrize(
    ("dealer", "vins"),
    [
        ({"source": "carvana.com", "zip": "95765"}, CARVANA_VINS),
        (
            {"source": "mbofaugusta.com", "zip": "30907"},
            [
                {"vin": "5FNYF8H54SB000197", "price": 37610, "miles": 14428},
                {"vin": "JTJBM7FX1K5236458", "price": 35087, "miles": 73788},
                {"vin": "YV4L12RL4R1757085", "price": 33085, "miles": 45490},
            ],
        ),
    ],
)
def test_published_vins_rank_examples(
    market: Market, dealer: DealerSpec, vins: list[VinSpec]
) -> None:
    """The published /vins/rank examples rank every vehicle, 1..N, nothing failed."""
    outcome = market.rank_vins(dealer, vins)
    assert isinstance(outcome, Ranked)
    assert outcome.failed_items == []
    assert [m["vin_rank"] for m in outcome.ranked_matches] == list(range(1, len(vins) + 1))
    assert {m["vin"] for m in outcome.ranked_matches} == {v["vin"] for v in vins}
    assert {m["zip"] for m in outcome.ranked_matches} == {dealer["zip"]}


def test_request_order_does_not_matter(market: Market, candidates: list[DealerSpec]) -> None:
    """Ranking the same dealers in another order gives the same ranks and scores."""
    forward = ranked(market.rank_dealers(PORSCHE, candidates))
    backward = ranked(market.rank_dealers(PORSCHE, candidates[::-1]))
    assert forward == backward


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_subsets_keep_relative_order(
    market: Market, candidates: list[DealerSpec], data: st.DataObject
) -> None:
    """Any subset of candidates keeps its order in the full ranking (the fit is per pair)."""
    full = order_of(ranked(market.rank_dealers(PORSCHE, candidates)))
    subset = data.draw(
        st.lists(
            st.sampled_from(candidates), min_size=1, max_size=40, unique_by=lambda d: d["source"]
        )
    )
    part = order_of(ranked(market.rank_dealers(PORSCHE, subset)))
    assert part == [pair for pair in full if pair in set(part)]
    scores = {
        (m["source"], m["zip"]): m["vin_score"]
        for m in ranked(market.rank_dealers(PORSCHE, subset))
    }
    assert set(scores.values()) == {
        ranked(market.rank_dealers(PORSCHE, candidates))[0]["vin_score"]
    }


def test_a_rooftop_named_twice_is_ranked_once(market: Market) -> None:
    """The same rooftop twice in one request (even in another case) gives one ranked match."""
    twice: list[DealerSpec] = [*PUBLISHED_DEALERS, {"source": "MBofAugusta.com ", "zip": "30907"}]
    matches = ranked(market.rank_dealers(PORSCHE, twice))
    assert len(matches) == 3
    assert sorted(m["vin_rank"] for m in matches) == [1, 2, 3]


def test_undecodable_vin_is_unprocessable(market: Market) -> None:
    """A VIN that fails to decode makes /dealers/rank unprocessable with failed_vins."""
    outcome = market.rank_dealers({**PORSCHE, "vin": BAD_VIN}, PUBLISHED_DEALERS)
    assert isinstance(outcome, Unprocessable)
    assert outcome.failed_vins == [BAD_VIN]
    assert outcome.missing_dealers == []
    assert "check digit" in outcome.message


def test_unknown_dealers_are_listed_as_given(market: Market) -> None:
    """Dealers not in the market are returned exactly as given, with every problem at once."""
    unknown: list[DealerSpec] = [
        {"source": "nowhere-motors.com", "zip": "30907"},
        {"source": "mbofaugusta.com", "zip": "30909"},  # right source, wrong ZIP
        {"source": "mbofaugusta.com", "mc_location_id": "000000000000"},
    ]
    outcome = market.rank_dealers(
        {**PORSCHE, "vin": BAD_VIN}, [*PUBLISHED_DEALERS, *unknown, {"source": "carvana.com"}]
    )
    assert isinstance(outcome, Unprocessable)
    assert outcome.missing_dealers == unknown
    assert outcome.failed_vins == [BAD_VIN]
    assert outcome.multi_location_sources == ["carvana.com"]
    assert "Dealer not found" in outcome.message
    assert "Multi-location" in outcome.message


def test_multi_location_needs_zip_or_id(market: Market) -> None:
    """A multi-location source needs zip or mc_location_id; it is listed once however often."""
    outcome = market.rank_dealers(
        PORSCHE, [{"source": "carvana.com"}, {"source": "carvana.com", "zip": ""}]
    )
    assert isinstance(outcome, Unprocessable)
    assert outcome.multi_location_sources == ["carvana.com"]
    assert outcome.missing_dealers == []


def test_dealer_resolution_paths(market: Market) -> None:
    """By zip, by mc_location_id, by both, or (single-location) by source alone."""
    rooftop = market.dealers.filter(pl.col("source") == "carvana.com").row(3, named=True)
    by_id = ranked(
        market.rank_dealers(
            PORSCHE, [{"source": "carvana.com", "mc_location_id": rooftop["mc_location_id"]}]
        )
    )
    assert (by_id[0]["zip"], by_id[0]["mc_location_id"]) == (
        rooftop["zip"],
        rooftop["mc_location_id"],
    )
    both: DealerSpec = {
        "source": "carvana.com",
        "zip": rooftop["zip"],
        "mc_location_id": rooftop["mc_location_id"],
    }
    assert ranked(market.rank_dealers(PORSCHE, [both])) == by_id
    mismatch: DealerSpec = {**both, "zip": "95765"}
    assert isinstance(market.rank_dealers(PORSCHE, [mismatch]), Unprocessable)
    alone = ranked(market.rank_dealers(PORSCHE, [{"source": "mbofaugusta.com"}]))
    assert alone[0]["zip"] == "30907"


def test_rank_vins_puts_failed_vins_in_failed_items(market: Market) -> None:
    """Some VINs failing: the others are ranked 1..k, the failed ones echoed with null scores."""
    bad: VinSpec = {"vin": BAD_VIN, "price": 1000, "miles": 5}
    outcome = market.rank_vins({"source": "carvana.com", "zip": "95765"}, [bad, *CARVANA_VINS])
    assert isinstance(outcome, Ranked)
    assert [m["vin_rank"] for m in outcome.ranked_matches] == [1, 2, 3, 4, 5]
    (failed,) = outcome.failed_items
    assert failed["vin"] == BAD_VIN
    assert (failed["price"], failed["miles"], failed["zip"]) == (1000, 5, "95765")
    assert failed["mc_location_id"] == outcome.ranked_matches[0]["mc_location_id"]
    assert (failed["vin_score"], failed["dealer_ymm_score"], failed["vin_rank"]) == (None,) * 3


def test_rank_vins_unprocessable_cases(market: Market) -> None:
    """All VINs failing, an unknown dealer, or a bare multi-location source: unprocessable."""
    bad: list[VinSpec] = [
        {"vin": BAD_VIN, "price": 1, "miles": 1},
        {"vin": "X" * 17, "price": 1, "miles": 1},
    ]
    all_bad = market.rank_vins(PUBLISHED_DEALERS[0], bad)
    assert isinstance(all_bad, Unprocessable)
    assert all_bad.failed_vins == [BAD_VIN, "X" * 17]
    unknown: DealerSpec = {"source": "nowhere-motors.com", "zip": "30907"}
    missing = market.rank_vins(unknown, CARVANA_VINS)
    assert isinstance(missing, Unprocessable)
    assert missing.missing_dealers == [unknown]
    assert missing.failed_vins == []
    multi = market.rank_vins({"source": "carvana.com"}, CARVANA_VINS)
    assert isinstance(multi, Unprocessable)
    assert multi.multi_location_sources == ["carvana.com"]


def test_rank_vins_agrees_with_rank_dealers(market: Market) -> None:
    """A pair gets the same scores whichever endpoint ranks it."""
    dealer: DealerSpec = {"source": "carvana.com", "zip": "95765"}
    by_vins = {m["vin"]: m for m in ranked(market.rank_vins(dealer, CARVANA_VINS))}
    for vin in CARVANA_VINS:
        (match,) = ranked(market.rank_dealers(vin, [dealer]))
        assert (match["vin_score"], match["dealer_ymm_score"]) == (
            by_vins[vin["vin"]]["vin_score"],
            by_vins[vin["vin"]]["dealer_ymm_score"],
        )


# -- batch ranking -----------------------------------------------------------------------------


def read_samples(name: str) -> pl.DataFrame:
    """Read a committed sample file with every column as text."""
    return pl.read_csv(SAMPLES / name, infer_schema=False)


def test_batch_agrees_with_online(market: Market) -> None:
    """Per VIN, batch scores and ranks equal /dealers/rank over that VIN's whole dealer list."""
    pairs = read_samples("pairs.csv.gz")
    result = market.rank_batch(pairs)
    assert result["error"].null_count() == result.height
    for vin in pairs["vin"].unique(maintain_order=True).head(8):
        rows = result.filter(pl.col("vin") == vin)
        price, miles = int(rows["price"][0]), int(rows["miles"][0])
        dealers: list[DealerSpec] = [
            {"source": s, "zip": z} for s, z in rows.select("source", "zip").iter_rows()
        ]
        online = ranked(market.rank_dealers({"vin": vin, "price": price, "miles": miles}, dealers))
        expected = {
            (m["source"], m["zip"]): (
                m["mc_location_id"],
                m["vin_score"],
                m["dealer_ymm_score"],
                m["vin_rank"],
            )
            for m in online
        }
        got = {
            (s, z): (i, v, d, r)
            for s, z, i, v, d, r in rows.select(
                "source", "zip", "mc_location_id", "vin_score", "dealer_ymm_score", "vin_rank"
            ).iter_rows()
        }
        assert got == expected


def test_batch_error_codes(market: Market) -> None:
    """Each problem row of bad_pairs.csv gets its error code; good rows rank with null error."""
    result = market.rank_batch(read_samples("bad_pairs.csv"))
    assert result["error"].to_list() == [None] * 6 + [
        "vin_decode_failed",
        "vin_decode_failed",
        "invalid_row",
        "vin_decode_failed",
        "vin_decode_failed",
        "invalid_row",
        "invalid_row",
        "invalid_row",
        "invalid_row",
        "dealer_not_found",
        "multi_location_requires_zip",
        "invalid_row",
        None,
    ]
    failed = result.filter(pl.col("error").is_not_null())
    assert failed.select(RESULT_COLUMNS[:4]).null_count().row(0) == (failed.height,) * 4


def test_batch_duplicates_share_the_first_rows_values(market: Market) -> None:
    """A repeated (vin, rooftop) row copies its first row's values and takes no rank of its own."""
    frame = pl.DataFrame(
        {
            "vin": [PORSCHE["vin"]] * 5,
            "price": ["20000", "20000", "20000", "20000", "99999"],
            "miles": ["3000"] * 5,
            "source": [
                "mbofaugusta.com",
                "carvana.com",
                "mbofaugusta.com",
                "carvana.com",
                "carvana.com",
            ],
            "zip": ["30907", "95765", "30907", "95765", "95765"],
        }
    )
    result = market.rank_batch(frame)
    assert sorted(result["vin_rank"].unique().to_list()) == [1, 2]
    values = result.select(RESULT_COLUMNS[:4]).rows()
    assert values[2] == values[0]
    assert values[3] == values[1] == values[4]


def test_batch_resolves_mc_location_id_and_keeps_extra_columns(market: Market) -> None:
    """An mc_location_id column resolves rows without zip; extra columns stay, in order."""
    rooftop = market.dealers.filter(pl.col("source") == "carmax.com").row(0, named=True)
    frame = pl.DataFrame(
        {
            "stock_no": ["A1", "A2"],
            "vin": [PORSCHE["vin"], PORSCHE["vin"]],
            "price": [20000, 20000],
            "miles": [3000, 3000],
            "source": ["carmax.com", "mbofaugusta.com"],
            "zip": [None, "30907"],
            "mc_location_id": [rooftop["mc_location_id"], None],
            "error": ["stale", "stale"],
        }
    )
    result = market.rank_batch(frame)
    assert result.columns == ["stock_no", "vin", "price", "miles", "source", "zip", *RESULT_COLUMNS]
    assert result["stock_no"].to_list() == ["A1", "A2"]
    assert result["mc_location_id"][0] == rooftop["mc_location_id"]
    assert result["error"].to_list() == [None, None]
    assert result.schema["vin_rank"] == pl.UInt32
    assert result.schema["vin_score"] == pl.Float64


def test_batch_missing_columns_raise(market: Market) -> None:
    """A frame without a required column raises MissingColumnsError naming it."""
    with pytest.raises(MissingColumnsError, match="zip") as caught:
        market.rank_batch(pl.DataFrame({"vin": [], "price": [], "miles": [], "source": []}))
    assert caught.value.missing == ["zip"]


def test_batch_empty_frame_and_progress(market: Market) -> None:
    """An empty file gives an empty result; progress rises from 0 to 1."""
    seen: list[float] = []
    empty = pl.DataFrame(
        {c: [] for c in ("vin", "price", "miles", "source", "zip")},
        schema=dict.fromkeys(("vin", "price", "miles", "source", "zip"), pl.String),
    )
    result = market.rank_batch(empty, progress=seen.append)
    assert result.height == 0
    assert result.columns[-5:] == list(RESULT_COLUMNS)
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert seen == sorted(seen)


# -- sample data -------------------------------------------------------------------------------


def test_committed_samples_are_what_the_generator_writes(tmp_path: Path) -> None:
    """Regenerating the samples gives exactly the committed files, well under 2 MB in total."""
    written = write_samples(tmp_path)
    total = 0
    for path in written:
        committed = SAMPLES / path.name
        total += committed.stat().st_size
        if path.suffix == ".gz":
            assert gzip.decompress(path.read_bytes()) == gzip.decompress(committed.read_bytes())
        else:
            assert path.read_bytes() == committed.read_bytes()
    assert total < 2_000_000


def test_vehicles_sample_promises() -> None:
    """≥1,000 distinct, decodable vehicles over many makes and years; prices and miles fit age."""
    vehicles = read_samples("vehicles.csv").with_columns(pl.col("price", "miles").cast(pl.Int64))
    assert vehicles.height >= VEHICLE_COUNT
    assert vehicles["vin"].n_unique() == vehicles.height
    decoded = decode_vins(vehicles["vin"])
    assert decoded["reason"].null_count() == decoded.height
    full = vehicles.join(decoded, on="vin").join(MODELS, on="model_id")
    assert full["make"].n_unique() >= 35
    assert full["year"].n_unique() >= 15
    assert (full["price"] > 0).all()
    young = full.filter(pl.col("year") >= 2024)
    old = full.filter(pl.col("year") <= 2014)
    assert young["miles"].median() < old["miles"].median()  # type: ignore[operator]
    assert young["price"].median() > old["price"].median()  # type: ignore[operator]


def test_dealers_sample_promises(market: Market) -> None:
    """≥300 rooftops, all known to the market, incl. published, multi-location and id-only rows,
    each with a capacity: a few vehicles for most, none for some, more for others."""
    dealers = read_samples("dealers.csv")
    assert dealers.height >= DEALER_COUNT
    capacity = dealers["capacity"].cast(pl.Int64)
    assert capacity.min() == 0
    assert 0.05 < (capacity == 0).sum() / capacity.len() < 0.25
    assert 1 <= capacity.median() <= 5  # type: ignore[operator]
    assert (capacity >= 8).sum() >= 20
    specs: list[DealerSpec] = [
        {k: v for k, v in row.items() if v is not None}  # type: ignore[misc]
        for row in dealers.drop("capacity").iter_rows(named=True)
    ]
    for start in range(0, len(specs), 100):
        assert isinstance(market.rank_dealers(PORSCHE, specs[start : start + 100]), Ranked)
    assert (
        dealers.filter(pl.col("zip").is_null(), pl.col("mc_location_id").is_not_null()).height >= 10
    )
    assert dealers["mc_location_id"].null_count() > dealers.height // 2
    assert set(MULTI_LOCATION_SOURCES) <= set(dealers["source"])
    assert {
        "mbofaugusta.com",
        "acceleride.mbofaugusta.com",
        "acceleride.esterobaychevrolet.com",
    } <= set(dealers["source"])
    assert dealers.filter(pl.col("source") == "carvana.com", pl.col("zip") == "95765").height == 1


def test_pairs_sample_promises(market: Market) -> None:
    """A few thousand clean batch-shaped pairs; each vehicle has 10-150 distinct dealers."""
    pairs = read_samples("pairs.csv.gz")
    assert pairs.columns == ["vin", "price", "miles", "source", "zip"]
    assert 2_000 <= pairs.height <= 10_000
    assert pairs.select("vin", "source", "zip").n_unique() == pairs.height
    per_vin = pairs.group_by("vin").len()["len"]
    assert per_vin.min() >= CANDIDATES[0]  # type: ignore[operator]
    assert per_vin.max() <= CANDIDATES[1]  # type: ignore[operator]
    assert market.rank_batch(pairs)["error"].null_count() == pairs.height


def test_acquisitions_sample_promises(market: Market) -> None:
    """Each dealer's acquisition candidates rank through /vins/rank without any failure."""
    acquisitions = read_samples("acquisitions.csv")
    assert acquisitions.columns == ["source", "zip", "mc_location_id", "vin", "price", "miles"]
    groups = acquisitions.partition_by("source", "zip", "mc_location_id", as_dict=True)
    assert len(groups) >= 10
    for (source, zip_code, location), rows in groups.items():
        dealer: DealerSpec = {"source": source, "zip": zip_code, "mc_location_id": location}
        vins: list[VinSpec] = [
            {"vin": v, "price": int(p), "miles": int(m)}
            for v, p, m in rows.select("vin", "price", "miles").iter_rows()
        ]
        for start in range(0, len(vins), 20):
            outcome = market.rank_vins(dealer, vins[start : start + 20])
            assert isinstance(outcome, Ranked)
            assert outcome.failed_items == []


def test_big_pairs_file_has_exactly_n_rows(tmp_path: Path) -> None:
    """--pairs N writes exactly N distinct batch-shaped pairs of universe rooftops."""
    path = write_big_pairs(tmp_path, 3_000)
    pairs = pl.read_csv(path, infer_schema=False)
    assert pairs.height == 3_000
    assert pairs.select("vin", "source", "zip").n_unique() == 3_000
    per_vin = pairs.group_by("vin").len()["len"]
    assert per_vin.max() <= CANDIDATES[1]  # type: ignore[operator]
