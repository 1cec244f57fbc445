"""Normalisation and validation of input pairs (no network)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._normalize import normalize, prepare

GOOD: dict[str, Any] = {
    "vin": "WP1BE2AY5PDA28064",
    "price": 20000,
    "miles": 3000,
    "source": "mbofaugusta.com",
    "zip": "30907",
}


def one(**changes: Any) -> pl.DataFrame:
    """A one-row pairs frame: the published example with some values changed."""
    return pl.DataFrame([{**GOOD, **changes}])


@pytest.mark.parametrize(
    ("column", "given", "expected"),
    [
        ("vin", "  wp1be2ay5pda28064 ", "WP1BE2AY5PDA28064"),
        ("source", "https://www.MBofAugusta.com/used?x=1", "mbofaugusta.com"),
        ("source", "HTTP://user@Dealer.com:8080/", "dealer.com"),
        ("source", "www.dealer.com.", "dealer.com"),
        ("zip", 2134, "02134"),
        ("zip", "2134", "02134"),
        ("zip", 501.0, "00501"),
        ("zip", "  ", None),
        ("price", 20000.0, 20000),
        ("price", " 20000 ", 20000),
        ("price", "20000.00", 20000),
        ("miles", 0, 0),
        ("mc_location_id", 12345, "12345"),
        ("mc_location_id", "", None),
    ],
)
def test_values_are_normalised(column: str, given: Any, expected: Any) -> None:
    """What a user would expect normalised is normalised."""
    frame = normalize(one(**{column: given}))
    assert frame.item(0, column) == expected
    assert prepare(one(**{column: given}), endpoint="dealers", on_invalid="raise").pairs.height == 1


@pytest.mark.parametrize(
    ("column", "given", "message"),
    [
        ("vin", "WP1BE2AY5PDA2806", 'vin must be exactly 17 characters (got "WP1BE2AY5PDA2806")'),
        ("vin", "WP1BE2AY5PDA2806I", "vin may only contain 0-9 and A-Z except I, O and Q"),
        ("vin", "WP1BE2AY6PDA28064", "vin has a wrong check digit (9th character)"),
        ("vin", None, "vin is missing"),
        ("price", 0, "price must be a positive whole number (got 0)"),
        ("price", 19999.5, "price is not a whole number (got 19999.5)"),
        ("price", "20,000", 'price is not a whole number (got "20,000")'),
        ("price", True, "price is not a whole number (got true)"),
        ("miles", -1, "miles must be a non-negative whole number (got -1)"),
        ("miles", 1.25, "miles is not a whole number (got 1.25)"),
        ("source", "a dealer.com", "source must be a dealer website domain without spaces"),
        (
            "source",
            "https://",
            'source must be a dealer website domain without spaces (got "https://")',
        ),
        ("source", None, "source is missing"),
        ("zip", "02134-1234", "zip is a ZIP+4 or 9-digit ZIP; give the 5-digit ZIP code"),
        ("zip", 21341234, "zip is a ZIP+4 or 9-digit ZIP"),
        ("zip", "3090A", 'zip must be a 5-digit ZIP code (got "3090A")'),
        ("zip", 1234567890, "zip must be a 5-digit ZIP code (got 1234567890)"),
        ("zip", -1, "zip must be a 5-digit ZIP code (got -1)"),
        ("zip", 1.5, "zip must be a 5-digit ZIP code (got 1.5)"),
    ],
)
def test_invalid_values_are_named(column: str, given: Any, message: str) -> None:
    """Each rule's failure names the row, the column, what is wrong and the value given."""
    with pytest.raises(mm.InvalidInputError) as info:
        prepare(one(**{column: given}), endpoint="dealers", on_invalid="raise")
    assert f"row 0: {message}" in str(info.value)
    assert info.value.failure_cases.get_column("column").to_list() == [column]


def test_pairs_without_zip_or_location_are_valid() -> None:
    """zip and mc_location_id are optional columns and optional per row."""
    frame = pl.DataFrame([{k: v for k, v in GOOD.items() if k != "zip"}])
    prepared = prepare(frame, endpoint="dealers", on_invalid="raise")
    assert prepared.pairs.select("zip", "mc_location_id").row(0) == (None, None)


def test_missing_columns_always_raise() -> None:
    """A missing required column raises in both modes, listing what is missing and present."""
    frame = pl.DataFrame({"vin": [GOOD["vin"]], "cost": [1]})
    for mode in ("raise", "fail"):
        with pytest.raises(mm.InvalidInputError) as info:
            prepare(frame, endpoint="dealers", on_invalid=mode)
        assert "missing required column(s) price, miles, source" in str(info.value)
        assert "got columns vin, cost" in str(info.value)


def test_raise_lists_the_first_rows_and_counts_the_rest() -> None:
    """The error shows ten offending rows and says how many more there are."""
    frame = pl.concat([one(price=-i) for i in range(25)])
    with pytest.raises(mm.InvalidInputError) as info:
        prepare(frame, endpoint="dealers", on_invalid="raise")
    text = str(info.value)
    assert text.startswith("25 of 25 input rows are invalid")
    assert "row 9: price" in text
    assert "row 10: price" not in text
    assert "... and 15 more rows" in text
    assert info.value.failure_cases.height == 25


def test_fail_mode_keeps_every_invalid_row_with_its_reasons() -> None:
    """on_invalid='fail' returns one failed row per invalid input row, all problems named."""
    frame = pl.concat([one(), one(price=-1, zip="1234567"), one(vin="SHORT")])
    prepared = prepare(frame, endpoint="dealers", on_invalid="fail")
    assert prepared.pairs.height == 1
    messages = prepared.failed.get_column("error_message").to_list()
    assert messages[0].startswith("row 1: price must be a positive whole number (got -1); zip ")
    assert messages[1].startswith("row 2: vin ")
    assert prepared.failed.get_column("error_code").unique().to_list() == ["invalid_input"]
    assert prepared.invalid_rows == 2


def test_lazy_frames_are_accepted() -> None:
    """A LazyFrame is collected and validated like a DataFrame."""
    prepared = prepare(one().lazy(), endpoint="dealers", on_invalid="raise")
    assert prepared.pairs.height == 1


def test_non_frames_are_refused() -> None:
    """Anything but a polars frame is a TypeError."""
    with pytest.raises(TypeError, match="polars DataFrame or LazyFrame"):
        prepare([GOOD], endpoint="dealers", on_invalid="raise")  # type: ignore[arg-type]


def test_same_vin_and_dealer_with_other_price_is_a_conflict_for_vins_only() -> None:
    """For /vins/rank the second spec of a VIN at one dealer is duplicate_conflict."""
    frame = pl.concat([one(), one(price=21000), one(price=21000)])
    for_vins = prepare(frame, endpoint="vins", on_invalid="raise")
    assert (for_vins.pairs.height, for_vins.conflicts, for_vins.duplicates_removed) == (1, 1, 1)
    assert for_vins.failed.get_column("error_code").to_list() == ["duplicate_conflict"]
    assert "same vin and dealer as row 0" in for_vins.failed.item(0, "error_message")
    for_dealers = prepare(frame, endpoint="dealers", on_invalid="raise")
    assert (for_dealers.pairs.height, for_dealers.conflicts) == (2, 0)


def test_a_million_rows_validate_quickly() -> None:
    """1M rows normalise, validate and de-duplicate; the time is printed, not asserted."""
    n = 1_000_000
    frame = pl.DataFrame(
        {
            "vin": ["WP1BE2AY5PDA28064", "5FNYF8H54SB000197"] * (n // 2),
            "price": pl.int_range(20_000, 20_000 + n, eager=True),
            "miles": [3000] * n,
            "source": ["dealer.com"] * n,
            "zip": ["30907"] * n,
        }
    )
    started = time.perf_counter()
    prepared = prepare(frame, endpoint="dealers", on_invalid="raise")
    print(f"prepare: 1M rows in {time.perf_counter() - started:.2f} s")
    assert prepared.pairs.height == n


REPO = Path(__file__).resolve().parents[2]
README_SAMPLE = 'pairs = pl.read_csv("sample_data/pairs.csv.gz", schema_overrides={"zip": pl.Utf8})'


def test_readme_sample_validates_after_normalize() -> None:
    """The README's own sample fails PairsInput as read, and passes once normalised."""
    import pandera.errors  # noqa: PLC0415

    from mm_pipeline.schemas import PairsInput  # noqa: PLC0415

    assert README_SAMPLE in (REPO / "README.md").read_text().splitlines()
    pairs = pl.read_csv(REPO / "sample_data" / "pairs.csv.gz", schema_overrides={"zip": pl.Utf8})
    with pytest.raises(pandera.errors.SchemaError, match="mc_location_id"):
        PairsInput.validate(pairs)
    normalised = mm.normalize(pairs)
    assert PairsInput.validate(normalised).height == pairs.height
    assert normalised.columns == ["vin", "price", "miles", "source", "zip", "mc_location_id"]


def test_normalize_is_public_and_leaves_invalid_values_to_the_schema() -> None:
    """mm.normalize is exported; unreadable values become nulls that the schema reports."""
    import pandera.errors  # noqa: PLC0415

    from mm_pipeline.schemas import PairsInput  # noqa: PLC0415

    assert "normalize" in mm.__all__
    frame = mm.normalize(one(price="abc", zip=2134).lazy())
    assert frame.row(0)[1:5] == (None, 3000, "mbofaugusta.com", "02134")
    with pytest.raises(pandera.errors.SchemaError, match="price"):
        PairsInput.validate(frame)
    with pytest.raises(mm.InvalidInputError, match="missing required column"):
        mm.normalize(pl.DataFrame({"vin": ["x"]}))
