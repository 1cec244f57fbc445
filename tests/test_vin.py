"""The client-side VIN alphabet and check digit: scalar functions and the vectorised expression."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_pipeline._vin import (
    TRANSLITERATION,
    VIN_ALPHABET,
    WEIGHTS,
    check_digit,
    is_valid_vin,
    vin_is_valid,
)
from tests.conftest import PUBLISHED_VINS


def with_check_digit(draft: str) -> str:
    """Return *draft* with its position 9 set to the right check digit."""
    return draft[:8] + check_digit(draft) + draft[9:]


@pytest.mark.parametrize("vin", PUBLISHED_VINS)
def test_published_vins_are_valid(vin: str) -> None:
    """Every VIN of the published API examples carries a correct check digit."""
    assert check_digit(vin) == vin[8]
    assert is_valid_vin(vin)


def test_alphabet_excludes_i_o_q() -> None:
    """The alphabet has 33 characters, never I, O or Q, and each transliterates to one digit."""
    assert len(VIN_ALPHABET) == 33
    assert not set("IOQ") & set(VIN_ALPHABET)
    assert set(TRANSLITERATION) == set(VIN_ALPHABET)
    assert set(TRANSLITERATION.values()) <= set(range(10))
    assert len(WEIGHTS) == 17
    assert WEIGHTS[8] == 0


def test_known_check_digits() -> None:
    """The check digit follows the standard table, including X for a remainder of 10."""
    assert check_digit("11111111111111111") == "1"
    assert check_digit("1M8GDM9AXKP042788") == "X"  # the textbook example
    assert check_digit("4T1C11BK0NU065125") == "X"


@pytest.mark.parametrize("letter", ["I", "O", "Q"])
def test_forbidden_letters_are_invalid(letter: str) -> None:
    """A VIN with I, O or Q is invalid, and has no check digit."""
    vin = PUBLISHED_VINS[0][:12] + letter + PUBLISHED_VINS[0][13:]
    assert not is_valid_vin(vin)
    with pytest.raises(ValueError, match="VIN alphabet"):
        check_digit(vin)


@pytest.mark.parametrize(
    "vin",
    [
        "",
        "WP1BE2AY5PDA2806",
        "WP1BE2AY5PDA280644",
        "WP1BE2AY5PDA2806é",
        "WP1BE2AY5PDA2806\uff14",  # a fullwidth 4
        "5fnyf8h54\u017fb000197",  # a long s: "S" once upper-cased by Unicode rules
        "5FNYF8H54\ufb00000197",  # the "ff" ligature: 16 characters, 17 once upper-cased
    ],
)
def test_wrong_length_or_non_ascii_is_invalid(vin: str) -> None:
    """Anything but 17 ASCII characters of the alphabet is invalid, by both checks."""
    assert not is_valid_vin(vin)
    assert not pl.select(vin_is_valid(pl.lit(vin))).item()


def test_wrong_check_digit_is_invalid() -> None:
    """Changing position 9 of a valid VIN makes it invalid."""
    vin = PUBLISHED_VINS[0]
    assert not is_valid_vin(vin[:8] + "6" + vin[9:])


def test_lower_case_is_accepted() -> None:
    """Validation is case-insensitive, scalar and vectorised."""
    vin = PUBLISHED_VINS[-1].lower()
    assert is_valid_vin(vin)
    assert pl.select(vin_is_valid(pl.lit(vin))).item()


def test_expression_marks_each_row() -> None:
    """The expression answers per row: valid, wrong check digit, short, null, non-ASCII."""
    vins = [PUBLISHED_VINS[0], PUBLISHED_VINS[0][:8] + "0" + PUBLISHED_VINS[0][9:], "short", None]
    frame = pl.DataFrame({"vin": [*vins, "WP1BE2AY5PDA2806é"], "n": range(5)})
    out = frame.select(vin_is_valid("vin").alias("ok"), "n")
    assert out["ok"].to_list() == [True, False, False, False, False]
    assert out["ok"].null_count() == 0


def test_expression_works_lazily_and_on_expressions() -> None:
    """The expression composes in a lazy query and over a derived string expression."""
    lazy = pl.LazyFrame({"raw": [f" {v} " for v in PUBLISHED_VINS]})
    out = lazy.select(vin_is_valid(pl.col("raw").str.strip_chars())).collect()
    assert out.to_series().all()


vin_like = st.text(alphabet=VIN_ALPHABET + "IOQxo-", min_size=15, max_size=18)
valid_vins = st.text(alphabet=VIN_ALPHABET, min_size=17, max_size=17).map(with_check_digit)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(vin_like, valid_vins), min_size=1, max_size=40))
def test_expression_agrees_with_scalar(vins: list[str]) -> None:
    """The vectorised expression gives exactly what is_valid_vin gives, row by row."""
    vectorised = pl.DataFrame({"vin": vins}).select(vin_is_valid("vin")).to_series().to_list()
    assert vectorised == [is_valid_vin(v) for v in vins]
