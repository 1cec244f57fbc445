"""The public pandera models in mm_pipeline.schemas."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pandera.errors
import polars as pl
import pytest

from mm_pipeline.schemas import FailedMatch, PairsInput, RankedMatch

PAIR = {
    "vin": "WP1BE2AY5PDA28064",
    "price": 20000,
    "miles": 3000,
    "source": "mbofaugusta.com",
    "zip": "30907",
    "mc_location_id": None,
}
PAIR_SCHEMA = {
    "vin": pl.String,
    "price": pl.Int64,
    "miles": pl.Int64,
    "source": pl.String,
    "zip": pl.String,
    "mc_location_id": pl.String,
}
SCORES = {"vin_score": pl.Float64, "dealer_ymm_score": pl.Float64, "vin_rank": pl.UInt32}


def ranked(**changes: Any) -> pl.DataFrame:
    """One valid ranked row, with changes."""
    row = {**PAIR, "vin_score": 2201.83, "dealer_ymm_score": 1578.17, "vin_rank": 1}
    row |= {"rank_exact": True, **changes}
    return pl.DataFrame([row], schema={**PAIR_SCHEMA, **SCORES, "rank_exact": pl.Boolean})


def failed(**changes: Any) -> pl.DataFrame:
    """One valid failed row, with changes."""
    row = {**PAIR, "vin_score": None, "dealer_ymm_score": None, "vin_rank": None}
    row |= {"error_code": "dealer_not_found", "error_message": "not found", **changes}
    schema = {**PAIR_SCHEMA, **SCORES, "error_code": pl.String, "error_message": pl.String}
    return pl.DataFrame([row], schema=schema)


def test_valid_frames_pass() -> None:
    """A normalised pair, a ranked row and a failed row validate."""
    PairsInput.validate(pl.DataFrame([PAIR], schema=PAIR_SCHEMA))
    RankedMatch.validate(ranked())
    FailedMatch.validate(failed())


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"vin": "WP1BE2AY6PDA28064"}, "vin_check_digit"),
        ({"vin": "WP1BE2AY5PDA2806"}, "str_length"),
        ({"price": 0}, "greater_than"),
        ({"miles": -1}, "greater_than_or_equal_to"),
        ({"zip": "3090"}, "str_matches"),
        ({"zip": "3090\uff17"}, "str_matches"),  # a fullwidth 7: ASCII digits only
        ({"zip": "\u0663\u0660\u0669\u0660\u0667"}, "str_matches"),  # Arabic-Indic digits
        ({"source": None}, "not_nullable"),
    ],
)
def test_pairs_input_rejects_invalid_values(changes: dict[str, Any], check: str) -> None:
    """Each published constraint is a pandera check with a recognisable name."""
    frame = pl.DataFrame([{**PAIR, **changes}], schema=PAIR_SCHEMA)
    with pytest.raises(pandera.errors.SchemaErrors) as info:
        PairsInput.validate(frame, lazy=True)
    checks = info.value.failure_cases["check"].to_list()
    assert any(str(name).startswith(check) for name in checks), checks


def test_models_are_strict_about_columns_and_dtypes() -> None:
    """Extra columns and wrong dtypes are errors (no silent coercion)."""
    with pytest.raises(pandera.errors.SchemaError):
        RankedMatch.validate(ranked().with_columns(extra=pl.lit(1)))
    with pytest.raises(pandera.errors.SchemaError):
        RankedMatch.validate(ranked().with_columns(pl.col("vin_rank").cast(pl.Int64)))


def test_ranks_start_at_one() -> None:
    """A ranked row's vin_rank is at least 1."""
    with pytest.raises(pandera.errors.SchemaError):
        RankedMatch.validate(ranked(vin_rank=0))


def test_failed_rows_carry_no_scores_and_a_code() -> None:
    """A failed row with a score, or without an error code, is rejected."""
    with pytest.raises(pandera.errors.SchemaError):
        FailedMatch.validate(failed(vin_score=1.0))
    with pytest.raises(pandera.errors.SchemaError):
        FailedMatch.validate(failed(error_code=None))


def test_pandera_loads_on_first_use_not_with_the_package() -> None:
    """`import mm_pipeline` leaves pandera (and pandas) unloaded; mm.schemas and a plan load it."""
    script = (
        "import sys, polars as pl, mm_pipeline as mm\n"
        "print('pandera' in sys.modules, 'schemas' in dir(mm))\n"
        "pairs = pl.DataFrame({'vin': ['WP1BE2AY5PDA28064'], 'price': [1], 'miles': [0],"
        " 'source': ['a.com']})\n"
        "print(mm.plan(pairs).requests, 'pandera' in sys.modules, mm.schemas.PairsInput.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "True", "1", "True", "PairsInput"]
