"""Public pandera models (polars backend) of the frames mm_pipeline reads and returns.

- :class:`PairsInput`: vehicle-dealer pairs *after* normalisation (see
  :func:`mm_pipeline.rank_dealers` for what is normalised); the ranking functions validate every
  input row against it.
- :class:`RankedMatch`: ``RankResult.ranked``.
- :class:`FailedMatch`: ``RankResult.failed``.

Validate eager frames: on a LazyFrame pandera checks only column names and dtypes. Frames as a
user has them (a ``zip`` of integers, a price of ``"20000"``, no ``mc_location_id`` column) are
normalised first with :func:`mm_pipeline.normalize`, as the ranking functions do:
``PairsInput.validate(mm.normalize(pairs))``.

Examples
--------
>>> import polars as pl
>>> from mm_pipeline.schemas import PairsInput
>>> pairs = pl.DataFrame(
...     {"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000],
...      "source": ["mbofaugusta.com"], "zip": ["30907"], "mc_location_id": [None]},
...     schema_overrides={"mc_location_id": pl.String},
... )
>>> PairsInput.validate(pairs).height
1
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from mm_pipeline._vin import VIN_ALPHABET, vin_is_valid

__all__ = ["FailedMatch", "PairsInput", "RankedMatch"]

_VIN_CHARACTERS = rf"^[{VIN_ALPHABET}]*$"
_CONTROL = r"[\x00-\x1f\x7f]"

# Column descriptions (shown, for example, in Dagster's column schemas); the API text's words.
_VIN = "Vehicle identification number (17 characters, valid check digit)."
_PRICE = "Asking price of the vehicle, in US dollars."
_MILES = "Odometer reading, in miles."
_SOURCE = "Dealer website domain, e.g. mbofaugusta.com."
_ZIP = "Five-digit ZIP code of the dealer rooftop."
_LOCATION = "MarketCheck location ID of the dealer rooftop (alternative to zip)."
_VIN_SCORE = (
    "The vehicle's market position, 400-3000: higher is newer, lower-mileage, higher-priced."
)
_DEALER_SCORE = "The dealer's historical affinity for the vehicle's year/make/model, 400-3000."
_RANK = "Rank within the group (the vehicle or the dealer), 1 = best fit."
_EXACT = "Whether vin_rank is certainly the rank one request holding the whole group would give."
_NO_SCORE = "Always null: a failed pair has no score and no rank."
_ERROR_CODE = "Why the pair was not ranked, e.g. dealer_not_found."
_ERROR_MESSAGE = "What went wrong, for people; quotes the original value."


class _Frame(pa.DataFrameModel):
    """Shared configuration: exactly the declared columns, dtypes as declared (no coercion)."""

    class Config:
        """pandera options shared by every model."""

        strict = True
        coerce = False


class PairsInput(_Frame):
    """Normalised vehicle-dealer pairs, as sent to the API.

    ``zip`` and ``mc_location_id`` are optional per row: a single-location dealer needs
    neither, a multi-location dealer one of them (the API answers 422 otherwise).
    """

    vin: str = pa.Field(
        str_length={"min_value": 17, "max_value": 17}, str_matches=_VIN_CHARACTERS, description=_VIN
    )
    price: pl.Int64 = pa.Field(gt=0, description=_PRICE)
    miles: pl.Int64 = pa.Field(ge=0, description=_MILES)
    source: str = pa.Field(
        str_matches=r"^[^\s/]+$", str_length={"max_value": 253}, description=_SOURCE
    )
    zip: str = pa.Field(
        nullable=True,
        str_matches=r"^[0-9]{5}$",  # ASCII digits, not \d
        description=_ZIP,
    )
    mc_location_id: str = pa.Field(
        nullable=True, str_length={"max_value": 255}, description=_LOCATION
    )

    @pa.check("vin", name="vin_check_digit")
    @classmethod
    def _vin_check_digit(cls, data: PolarsData) -> pl.LazyFrame:
        """Check the 9th character, the check digit (of 17 VIN-alphabet characters only)."""
        vin = pl.col(data.key)
        judged = vin.str.contains(rf"^[{VIN_ALPHABET}]{{17}}$")
        return data.lazyframe.select(~judged | vin_is_valid(vin))

    @pa.check("source", "mc_location_id", name="no_control_characters")
    @classmethod
    def _no_control_characters(cls, data: PolarsData) -> pl.LazyFrame:
        """Check that a dealer field holds no control characters (no dealer is named so)."""
        return data.lazyframe.select(~pl.col(data.key).str.contains(_CONTROL).fill_null(False))


class RankedMatch(_Frame):
    """One ranked pair (``RankResult.ranked``).

    ``vin_rank`` runs 1..N within each group (the vehicle for ``rank_dealers``, the dealer for
    ``rank_vins``), over the whole group; ``rank_exact`` says whether that rank is certain to be
    the rank the API would give in one request holding the whole group. ``zip`` and
    ``mc_location_id`` are as given, filled in from the API's answer where the input had none.
    """

    vin: str = pa.Field(description=_VIN)
    price: pl.Int64 = pa.Field(gt=0, description=_PRICE)
    miles: pl.Int64 = pa.Field(ge=0, description=_MILES)
    source: str = pa.Field(description=_SOURCE)
    zip: str = pa.Field(nullable=True, description=_ZIP)
    mc_location_id: str = pa.Field(nullable=True, description=_LOCATION)
    vin_score: pl.Float64 = pa.Field(description=_VIN_SCORE)
    dealer_ymm_score: pl.Float64 = pa.Field(description=_DEALER_SCORE)
    vin_rank: pl.UInt32 = pa.Field(ge=1, description=_RANK)
    rank_exact: pl.Boolean = pa.Field(description=_EXACT)


class FailedMatch(_Frame):
    """One pair that was not ranked (``RankResult.failed``), with the reason.

    The six pair columns hold the normalised input (null where a value could not be read, e.g. a
    price of ``"abc"``; the message quotes the original). ``error_code`` is one of
    ``invalid_input``, ``vin_decode_failed``, ``dealer_not_found``,
    ``multi_location_requires_zip``, ``duplicate_conflict``, ``batch_job_failed``,
    ``ranking_failed``, ``location_unconfirmed`` (a batch result without the rooftop id that
    would confirm a given ``mc_location_id``), or a code carried by a batch result file.
    """

    vin: str = pa.Field(nullable=True, description=_VIN)
    price: pl.Int64 = pa.Field(nullable=True, description=_PRICE)
    miles: pl.Int64 = pa.Field(nullable=True, description=_MILES)
    source: str = pa.Field(nullable=True, description=_SOURCE)
    zip: str = pa.Field(nullable=True, description=_ZIP)
    mc_location_id: str = pa.Field(nullable=True, description=_LOCATION)
    vin_score: pl.Float64 = pa.Field(nullable=True, description=_NO_SCORE)
    dealer_ymm_score: pl.Float64 = pa.Field(nullable=True, description=_NO_SCORE)
    vin_rank: pl.UInt32 = pa.Field(nullable=True, description=_NO_SCORE)
    error_code: str = pa.Field(str_matches=r"^[a-z][a-z0-9_]*$", description=_ERROR_CODE)
    error_message: str = pa.Field(description=_ERROR_MESSAGE)

    @pa.dataframe_check(name="scores_null")
    @classmethod
    def _scores_null(cls, data: PolarsData) -> pl.LazyFrame:
        """Check that a failed pair carries no score and no rank."""
        return data.lazyframe.select(
            pl.col("vin_score").is_null()
            & pl.col("dealer_ymm_score").is_null()
            & pl.col("vin_rank").is_null()
        )
