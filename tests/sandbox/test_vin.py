"""Sandbox VIN decoding: real WMIs, model year, model from the VDS, and every failure reason."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_pipeline._vin import VIN_ALPHABET, check_digit
from mm_pipeline.sandbox._catalog import BODY_KIND, KNOWN_VDS, MAKES
from mm_pipeline.sandbox._vin import (
    MAX_MODEL_YEAR,
    MODELS,
    REASON_CODES,
    DecodedVin,
    DecodeFailure,
    decode_vin,
    decode_vins,
)

PUBLISHED = [
    ("WP1BE2AY5PDA28064", "Porsche", "Cayenne", 2023),
    ("5FNYF8H54SB000197", "Honda", "Pilot", 2025),
    ("JTJBM7FX1K5236458", "Lexus", "GX", 2019),
    ("YV4L12RL4R1757085", "Volvo", "XC60", 2024),
    ("JTMDFREV7JJ214231", "Toyota", "RAV4", 2018),
    ("7YAKN4DA1SY001014", "Hyundai", "Ioniq 5", 2025),
    ("KL79MPSL8SB184667", "Chevrolet", "Trailblazer", 2025),
    ("1FMCU0GD0JUD56190", "Ford", "Escape", 2018),
    ("4T1C11BKXNU065125", "Toyota", "Camry", 2022),
]
ALL_WMIS = sorted(wmi for make in MAKES for wmi in make.wmis)


def vin_of(wmi: str, vds: str = "ABC12", year_code: str = "N", serial: str = "A123456") -> str:
    """Build a VIN from its parts with a correct check digit."""
    draft = f"{wmi}{vds}0{year_code}{serial}"
    assert len(draft) == 17
    return draft[:8] + check_digit(draft) + draft[9:]


def failure(vin: str, **kwargs: int) -> DecodeFailure:
    """Decode *vin*, asserting that it fails."""
    outcome = decode_vin(vin, **kwargs)
    assert isinstance(outcome, DecodeFailure), outcome
    return outcome


@pytest.mark.parametrize(("vin", "make", "model", "year"), PUBLISHED)
def test_published_vins_decode_to_their_real_vehicle(
    vin: str, make: str, model: str, year: int
) -> None:
    """Each published VIN decodes to its real make, model and model year."""
    decoded = decode_vin(vin)
    assert isinstance(decoded, DecodedVin)
    assert (decoded.make, decoded.model, decoded.year) == (make, model, year)
    assert decoded.vin == vin
    assert decoded.base_price > 0
    assert decoded.body in BODY_KIND


def test_catalog_has_at_least_50_makes_and_consistent_wmis() -> None:
    """At least 50 makes; no WMI under two makes; every WMI builds at least one listed model."""
    assert len({m.name for m in MAKES}) >= 50
    assert len(ALL_WMIS) == len(set(ALL_WMIS))
    for make in MAKES:
        kinds_built = {BODY_KIND[body] for _, body, _ in make.models}
        for wmi, kinds in make.wmis.items():
            wanted = set(kinds.split(",")) if kinds else kinds_built
            assert wanted & kinds_built, (make.name, wmi)
    assert set(KNOWN_VDS.values()) <= set(MODELS["model"])


@pytest.mark.parametrize("wmi", ALL_WMIS)
def test_every_wmi_decodes_to_its_make(wmi: str) -> None:
    """A well-formed VIN of each catalog WMI decodes, to that WMI's make."""
    decoded = decode_vin(vin_of(wmi))
    assert isinstance(decoded, DecodedVin)
    assert wmi in MAKES[decoded.make_id].wmis
    assert decoded.make == MAKES[decoded.make_id].name


def test_model_comes_from_the_vds_and_fits_the_wmi_kind() -> None:
    """Different VDS give different models of the make, each of a kind its WMI builds."""
    models = set()
    for vds in ["AAAAA", "BC123", "ZZZZZ", "12345", "K9P2R", "HGT4D", "XW2V1", "M3N4P"]:
        decoded = decode_vin(vin_of("1FM", vds))
        assert isinstance(decoded, DecodedVin)
        assert BODY_KIND[decoded.body] == "suv"  # 1FM is Ford's SUV WMI
        models.add(decoded.model)
    assert len(models) >= 3


@pytest.mark.parametrize(("code", "year"), [("1", 2001), ("9", 2009), ("A", 2010), ("Y", 2030)])
def test_model_year_codes(code: str, year: int) -> None:
    """Digits 1-9 are 2001-2009 and letters A..Y (skipping I O Q U Z) 2010-2030."""
    outcome = decode_vin(vin_of("4T1", year_code=code), max_year=2030)
    assert isinstance(outcome, DecodedVin)
    assert outcome.year == year


def test_next_model_year_is_accepted_and_later_is_not() -> None:
    """The market date's next year (2027) decodes; 2028 fails unless max_year allows it."""
    assert MAX_MODEL_YEAR == 2027
    assert isinstance(decode_vin(vin_of("4T1", year_code="V")), DecodedVin)
    late = vin_of("4T1", year_code="W")
    rejected = failure(late)
    assert rejected.code == "future_model_year"
    assert "2028" in rejected.message
    assert isinstance(decode_vin(late, max_year=2028), DecodedVin)


@pytest.mark.parametrize(
    ("vin", "code"),
    [
        ("WP1BE2AY5PDA2806", "invalid_length"),
        ("WP1BE2AY5PDA280644", "invalid_length"),
        ("WP1BE2AY5PDA2806é", "invalid_character"),
        ("WP1BE2AY5PDA28O64", "invalid_character"),
        ("WP1BE2AY5PDI28064", "invalid_character"),
        ("QP1BE2AY5PDA28064", "invalid_character"),
        ("WP1BE2AY6PDA28064", "check_digit_mismatch"),
        (vin_of("9BW"), "unknown_wmi"),
        (vin_of("AAA"), "unknown_wmi"),
        (vin_of("4T1", year_code="0"), "invalid_model_year"),
        (vin_of("4T1", year_code="U"), "invalid_model_year"),
        (vin_of("4T1", year_code="Z"), "invalid_model_year"),
        (vin_of("4T1", year_code="X"), "future_model_year"),
    ],
)
def test_rejections_name_their_reason(vin: str, code: str) -> None:
    """Each way a VIN can fail gives its own reason code and a sentence."""
    rejected = failure(vin)
    assert rejected.code == code
    assert rejected.code in REASON_CODES
    assert rejected.message
    assert rejected.vin == vin


def test_check_digit_message_names_the_expected_digit() -> None:
    """A wrong check digit says which digit was expected."""
    assert "'5'" in failure("WP1BE2AY6PDA28064").message


def test_lower_case_decodes_like_upper_case() -> None:
    """Decoding is case-insensitive; the VIN is echoed as given."""
    lower = decode_vin(PUBLISHED[0][0].lower())
    upper = decode_vin(PUBLISHED[0][0])
    assert isinstance(lower, DecodedVin)
    assert isinstance(upper, DecodedVin)
    assert lower.vin == PUBLISHED[0][0].lower()
    assert (lower.model_id, lower.year) == (upper.model_id, upper.year)


def test_decode_vins_returns_each_unique_vin_once() -> None:
    """The batch path drops nulls, decodes each distinct VIN once and keeps first-seen order."""
    vins = pl.Series([PUBLISHED[1][0], None, PUBLISHED[0][0], PUBLISHED[1][0], "short"])
    out = decode_vins(vins)
    assert out["vin"].to_list() == [PUBLISHED[1][0], PUBLISHED[0][0], "short"]
    assert out["reason"].to_list() == [None, None, "invalid_length"]
    assert out["year"].to_list() == [2025, 2023, None]
    assert out.schema["model_id"] == pl.UInt32


def _as_tuple(outcome: DecodedVin | DecodeFailure) -> tuple[object, ...]:
    if isinstance(outcome, DecodedVin):
        return (outcome.vin, outcome.model_id, outcome.year, None)
    return (outcome.vin, None, None, outcome.code)


catalog_vins = st.builds(
    vin_of,
    st.sampled_from(ALL_WMIS),
    st.text(alphabet=VIN_ALPHABET, min_size=5, max_size=5),
    st.sampled_from("123456789ABCDEFGHJKLMNPRSTVWXY0UZ"),
    st.text(alphabet=VIN_ALPHABET, min_size=7, max_size=7),
)
noise = st.text(alphabet=VIN_ALPHABET + "IOQaz é", min_size=15, max_size=18)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(catalog_vins, noise), min_size=1, max_size=30, unique=True))
def test_batch_and_online_decoding_agree(vins: list[str]) -> None:
    """decode_vins and decode_vin give the same model, year or failure code for every VIN."""
    batch = decode_vins(pl.Series(vins))
    assert batch.rows() == [_as_tuple(decode_vin(v)) for v in vins]


@settings(deadline=None)
@given(catalog_vins)
def test_decoding_is_deterministic(vin: str) -> None:
    """The same VIN always decodes the same way (no cache, fresh call)."""
    assert _as_tuple(decode_vin.__wrapped__(vin)) == _as_tuple(decode_vin(vin))
