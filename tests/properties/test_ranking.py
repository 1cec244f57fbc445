"""Property tests: whatever frame comes in, no row is lost, duplicated or sent when invalid.

Frames mix valid rows (decodable and undecodable VINs, known, unknown and multi-location
dealers, in several spellings that normalise alike) with invalid ones (one field broken), as
text columns (a CSV read) or typed ones. Each generated row knows what must become of it, so
the checks are exact: the invalid rows, and only they, are named; every distinct valid pair is
ranked or failed with the code its vehicle and dealer call for; ranks run 1..N per group; and
the sandbox receives what the result reports (nothing, when the call refuses the input).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox
from tests._support.quota import requests_received

Endpoint = Literal["dealers", "vins"]
Fate = Literal["ranked", "dealer_not_found", "multi_location_requires_zip"]

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
GENERATE_ONLY = (Phase.explicit, Phase.generate)


@dataclass(frozen=True)
class Vehicle:
    vin: str
    decodes: bool
    spellings: tuple[str, ...]


@dataclass(frozen=True)
class Dealer:
    source: str
    zip: str | None  # as normalised; None: never given for this dealer
    fate: Fate
    spellings: tuple[str, ...]


VEHICLES = (
    Vehicle("WP1BE2AY5PDA28064", True, ("WP1BE2AY5PDA28064", " wp1be2ay5pda28064 ")),
    Vehicle("5FNYF8H54SB000197", True, ("5FNYF8H54SB000197", "5fnyf8h54sb000197")),
    Vehicle("JTJBM7FX1K5236458", True, ("JTJBM7FX1K5236458",)),
    Vehicle("00000000000000000", False, ("00000000000000000",)),  # unknown manufacturer
)
DEALERS = (
    Dealer(
        "mbofaugusta.com",
        "30907",
        "ranked",
        ("mbofaugusta.com", "MBofAugusta.com", "https://www.mbofaugusta.com/used"),
    ),
    Dealer("acceleride.mbofaugusta.com", "30907", "ranked", ("acceleride.mbofaugusta.com",)),
    Dealer("dorchestercenterram.com", "02124", "ranked", ("dorchestercenterram.com",)),
    Dealer("toyotadanbury.com", None, "ranked", ("toyotadanbury.com", "www.toyotadanbury.com")),
    Dealer("carvana.com", "91360", "ranked", ("carvana.com",)),
    Dealer("carvana.com", None, "multi_location_requires_zip", ("carvana.com",)),
    Dealer("nowhere.example", "30907", "dealer_not_found", ("nowhere.example",)),
    Dealer("mbofaugusta.com", "99999", "dealer_not_found", ("mbofaugusta.com",)),
)
PRICES = (20000, 31500)
MILES = (3000, 0)
# (column, broken value as text, broken value typed): each makes a row invalid.
BREAKAGES = (
    ("vin", "WP1BE2AY5PDA2806", "WP1BE2AY5PDA2806"),
    ("vin", "WP1BE2AY6PDA28064", "WP1BE2AY6PDA28064"),
    ("vin", None, None),
    ("price", "0", 0),
    ("price", "-1", -1),
    ("price", "abc", None),
    ("price", "1.5", None),
    ("miles", "-7", -7),
    ("miles", None, None),
    ("source", "", ""),
    ("source", "mb of augusta.com", "mb of augusta.com"),
    ("source", "a.com\x00", "a.com\x00"),
    ("source", None, None),
    ("zip", "ABCDE", None),
    ("zip", "309071234", 309071234),
)


@dataclass(frozen=True)
class Row:
    """One generated input row, and what it must become."""

    values: dict[str, Any]
    key: tuple[Any, ...] | None  # (vin, price, miles, source, zip) normalised; None: invalid
    decodes: bool = True
    dealer_fate: Fate = "ranked"


@st.composite
def rows(draw: st.DrawFn, *, typed: bool) -> Row:
    vehicle = draw(st.sampled_from(VEHICLES))
    dealer = draw(st.sampled_from(DEALERS))
    price, miles = draw(st.sampled_from(PRICES)), draw(st.sampled_from(MILES))
    zip_code: Any = dealer.zip
    if typed and zip_code is not None:
        zip_code = int(zip_code)  # a spreadsheet dropped the leading zero
    values: dict[str, Any] = {
        "vin": draw(st.sampled_from(vehicle.spellings)),
        "price": price if typed else str(price),
        "miles": miles if typed else str(miles),
        "source": draw(st.sampled_from(dealer.spellings)),
        "zip": zip_code,
    }
    if draw(st.integers(0, 3)) == 0:
        # A null zip is valid (single-location dealers), so typed nulls break other columns only.
        breakages = [b for b in BREAKAGES if not (typed and b[0] == "zip" and b[2] is None)]
        column, text, typed_value = draw(st.sampled_from(breakages))
        values[column] = typed_value if typed else text
        return Row(values, None)
    key = (vehicle.vin, price, miles, dealer.source, dealer.zip)
    return Row(values, key, vehicle.decodes, dealer.fate)


@st.composite
def frames(draw: st.DrawFn) -> tuple[pl.DataFrame, list[Row]]:
    typed = draw(st.booleans())
    drawn = draw(st.lists(rows(typed=typed), min_size=1, max_size=14))
    number = pl.Int64 if typed else pl.String
    schema = {
        "vin": pl.String,
        "price": number,
        "miles": number,
        "source": pl.String,
        "zip": number,
    }
    return pl.DataFrame([r.values for r in drawn], schema=schema, orient="row"), drawn


def expected(
    endpoint: Endpoint, drawn: list[Row], *, batch: bool = False
) -> tuple[Counter[str], set[int], int]:
    """Outcome counts by code (with "ranked"), the invalid row numbers, and duplicates.

    A vehicle that does not decode fails ``vin_decode_failed``, a dealer that cannot be
    resolved fails its pairs with its own code; when both apply, the API's 422 names both and
    the client reports the vehicle, except on ``/vins/rank`` when the dealer's request also
    holds a vehicle that decodes (the 422 then names only the dealer). ``/vins/rank`` and the
    batch API rank a VIN once per dealer: a later pair of the same VIN and dealer at another
    price or mileage is a ``duplicate_conflict`` (batch: among the pairs with a zip, which go
    through the batch file; the others go online).
    """
    invalid = {i for i, r in enumerate(drawn) if r.key is None}
    firsts: dict[tuple[Any, ...], Row] = {}
    for row in drawn:
        if row.key is not None:
            firsts.setdefault(row.key, row)
    outcome: Counter[str] = Counter(invalid_input=len(invalid))
    sent: list[Row] = []
    vins_at_dealers: set[tuple[Any, ...]] = set()
    for key, row in firsts.items():
        once = endpoint == "vins" or (batch and key[4] is not None)
        if once and (key[3], key[4], key[0]) in vins_at_dealers:
            outcome["duplicate_conflict"] += 1  # one VIN, one dealer, another price/miles
            continue
        if once:
            vins_at_dealers.add((key[3], key[4], key[0]))
        sent.append(row)
    decoding_dealers = {r.key[3:] for r in sent if r.key is not None and r.decodes}
    for row in sent:
        assert row.key is not None
        dealer_first = endpoint == "vins" and row.key[3:] in decoding_dealers
        if row.dealer_fate != "ranked" and (row.decodes or dealer_first):
            outcome[row.dealer_fate] += 1
        else:
            outcome["ranked" if row.decodes else "vin_decode_failed"] += 1
    valid_rows = len(drawn) - len(invalid)
    return +outcome, invalid, valid_rows - len(firsts)


def named_rows(result: mm.RankResult) -> set[int]:
    messages = result.failed.filter(pl.col("error_code") == "invalid_input")
    found = (re.match(r"row (\d+):", m) for m in messages.get_column("error_message"))
    return {int(m.group(1)) for m in found if m}


def assert_accounted(
    endpoint: Endpoint, result: mm.RankResult, drawn: list[Row], *, batch: bool = False
) -> None:
    outcome, invalid, duplicates = expected(endpoint, drawn, batch=batch)
    got = Counter(dict(result.failed.group_by("error_code").len().iter_rows()))
    got["ranked"] = result.ranked.height
    assert +got == outcome
    assert named_rows(result) == invalid
    assert result.stats.duplicates_removed == duplicates
    assert len(drawn) == result.ranked.height + result.failed.height + duplicates
    keys = ["vin", "price", "miles"] if endpoint == "dealers" else ["source", "zip"]
    for ranks in result.ranked.group_by(keys).agg(pl.col("vin_rank").sort()).get_column("vin_rank"):
        assert ranks.to_list() == list(range(1, ranks.len() + 1))


def rank(endpoint: Endpoint, frame: pl.DataFrame, sb: Sandbox, **options: Any) -> mm.RankResult:
    client = mm.MarketMatchClient(sb.api_key, sb.base_url)
    if endpoint == "vins":
        return mm.rank_vins(frame, client=client, progress=False, **options)
    return mm.rank_dealers(frame, client=client, progress=False, **{"mode": "online", **options})


@pytest.mark.parametrize(
    ("endpoint", "mode"), [("dealers", "online"), ("vins", "online"), ("dealers", "batch")]
)
def test_every_row_ends_in_exactly_one_place(
    endpoint: Endpoint, mode: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """With on_invalid='fail', each row is ranked, failed (with its reason) or a duplicate."""
    batch = mode == "batch"
    # A batch example waits for its job (~1 s): fewer of them, and no shrinking (it would
    # outlast the test timeout); the failing frame is printed as a note instead.
    profile = settings(SETTINGS, max_examples=8, phases=GENERATE_ONLY) if batch else SETTINGS

    @profile
    @given(frames())
    def check(example: tuple[pl.DataFrame, list[Row]]) -> None:
        frame, drawn = example
        note(f"frame:\n{frame}")
        sandbox.reset()
        options: dict[str, Any] = {"on_invalid": "fail"}
        if batch:
            options.update(mode="batch", cache_dir=tmp_path)
        result = rank(endpoint, frame, sandbox, **options)
        assert_accounted(endpoint, result, drawn, batch=batch)
        assert requests_received(sandbox) == result.stats.requests

    check()


@pytest.mark.parametrize("endpoint", ["dealers", "vins"])
def test_raise_refuses_any_invalid_row_before_sending(endpoint: Endpoint, sandbox: Sandbox) -> None:
    """With on_invalid='raise', any invalid row raises naming exactly those rows; none is sent."""

    @SETTINGS
    @given(frames())
    def check(example: tuple[pl.DataFrame, list[Row]]) -> None:
        frame, drawn = example
        note(f"frame:\n{frame}")
        invalid = {i for i, r in enumerate(drawn) if r.key is None}
        sandbox.reset()
        if not invalid:
            assert_accounted(endpoint, rank(endpoint, frame, sandbox), drawn)
            return
        with pytest.raises(mm.InvalidInputError) as info:
            rank(endpoint, frame, sandbox, on_invalid="raise")
        assert set(info.value.failure_cases.get_column("row").to_list()) == invalid
        assert requests_received(sandbox) == 0

    check()
