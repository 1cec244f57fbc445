"""Scores and fit of vehicle-rooftop pairs: one numpy function for the online and batch paths.

Everything here is elementwise over equal-length (or broadcast) arrays and uses only ``+ - * /``,
``abs``, ``min``/``max`` and ``floor``, which IEEE 754 rounds exactly: the same pair gets
bit-identical numbers whether it is scored alone (online) or among a million (batch).

Per pair, from the vehicle (price, miles, model year, model) and the rooftop's traits:

- ``vin_score`` (vehicle only): rises with price and model year, falls with miles;
- the rooftop's *affinity* for the year/make/model: brand focus, luxury tilt versus the
  vehicle's class, distance from the rooftop's typical vehicle age, plus a per-(rooftop, model,
  year) hash term standing in for its sales history;
- ``dealer_ymm_score``: affinity and the rooftop's price position;
- turnover (how fast that YMM sells there) and current stock of that YMM (high stock lowers the
  appetite for one more);
- **fit** = ``dealer_ymm_score / 1000 + turnover - stock pressure - |vin_score - the vin_score the
  rooftop typically handles| / 900``.

The scores map a real number into (400, 3000) with ``x / (1 + |x|)`` and are rounded to cents.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from mm_pipeline.sandbox._vin import MARKET_DATE, MODELS

__all__ = ["KIND_CODES", "Scores", "Traits", "score_pairs"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

KIND_CODES: Final = {"franchise": 0, "subdomain": 1, "independent": 2, "multi_location": 3}
"""Rooftop kinds and their codes in :attr:`Traits.kind`."""

_MODEL_MAKE: Final = MODELS["make_id"].to_numpy().astype(np.int64)
_MODEL_LUXURY: Final = MODELS["luxury"].to_numpy().astype(np.float64)
_MIX: Final = np.uint64(0x9E3779B97F4A7C15)
_SALTS: Final = (np.uint64(0x243F6A8885A308D3), np.uint64(0x13198A2E03707344))


@dataclass(frozen=True, slots=True)
class Traits:
    """Per-rooftop traits as parallel arrays (one element per rooftop)."""

    seed: npt.NDArray[np.uint64]
    focus_make: I64
    """``make_id`` of the brand a franchise rooftop sells, -1 for none."""
    kind: I64
    luxury_tilt: F64
    typical_age: F64
    price_position: F64
    turnover: F64
    stock_units: F64

    @classmethod
    def from_frame(cls, dealers: pl.DataFrame) -> Traits:
        """Read the trait columns of the dealer universe frame."""
        kinds = dealers["kind"].replace_strict(KIND_CODES, return_dtype=pl.Int64)
        return cls(
            seed=dealers["seed"].to_numpy().astype(np.uint64),
            focus_make=dealers["focus_make_id"].to_numpy().astype(np.int64),
            kind=kinds.to_numpy(),
            luxury_tilt=dealers["luxury_tilt"].to_numpy(),
            typical_age=dealers["typical_age"].to_numpy(),
            price_position=dealers["price_position"].to_numpy(),
            turnover=dealers["turnover"].to_numpy(),
            stock_units=dealers["stock_units"].to_numpy().astype(np.float64),
        )

    def take(self, rooftops: I64) -> Traits:
        """Select the traits of the given rooftop indices, in that order."""
        return Traits(**{f.name: getattr(self, f.name)[rooftops] for f in fields(self)})


@dataclass(frozen=True, slots=True)
class Scores:
    """Scores of pairs: the published two (rounded to 2 decimals) and the unrounded fit."""

    vin_score: F64
    dealer_ymm_score: F64
    fit: F64


def _squash(x: F64) -> F64:
    """Map the reals onto (-1, 1), increasing: x / (1 + |x|)."""
    result: F64 = x / (1.0 + np.abs(x))
    return result


def _unit_hash(seed: npt.NDArray[np.uint64], key: npt.NDArray[np.uint64]) -> F64:
    """Hash (seed, key) pairs to uniform [0, 1) numbers (splitmix64 finaliser, exact integers)."""
    with np.errstate(over="ignore"):
        z = seed ^ (key * _MIX)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    unit: F64 = (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return unit


def score_pairs(*, price: F64, miles: F64, year: I64, model_id: I64, traits: Traits) -> Scores:
    """Score vehicle-rooftop pairs elementwise.

    Parameters
    ----------
    price, miles, year, model_id
        Vehicle arrays (decoded ``model_id`` and model ``year``), length n or 1.
    traits
        Rooftop traits, length n or 1.

    Returns
    -------
    Scores
        Arrays of length n.

    Examples
    --------
    >>> one = Traits(
    ...     seed=np.array([7], dtype=np.uint64), focus_make=np.array([-1]), kind=np.array([2]),
    ...     luxury_tilt=np.array([0.5]), typical_age=np.array([5.0]),
    ...     price_position=np.array([0.0]), turnover=np.array([0.6]), stock_units=np.array([80.0]),
    ... )
    >>> s = score_pairs(price=np.array([20000.0, 40000.0]), miles=np.array([30000.0, 30000.0]),
    ...                 year=np.array([2020, 2020]), model_id=np.array([3, 3]), traits=one)
    >>> bool(s.vin_score[1] > s.vin_score[0])
    True
    """
    # vin_score: the vehicle's market position.
    vin_raw = 1700.0 + 1300.0 * _squash(
        2.2 * (price / (price + 30000.0))
        + 1.2 * ((year - 2001) / 26.0)
        - 1.4 * (miles / (miles + 60000.0))
        - 1.2
    )

    # The rooftop's history for this year/make/model.
    make = _MODEL_MAKE[model_id]
    luxury = _MODEL_LUXURY[model_id]
    key = (model_id.astype(np.uint64) << np.uint64(16)) | year.astype(np.uint64)
    history = _unit_hash(traits.seed, key)
    turnover_noise = _unit_hash(traits.seed ^ _SALTS[0], key)
    stock_noise = _unit_hash(traits.seed ^ _SALTS[1], key)
    franchise = traits.kind <= KIND_CODES["subdomain"]
    brand = np.where(traits.focus_make == make, 1.4, np.where(franchise, -0.5, 0.15))
    age = np.maximum(MARKET_DATE.year - year, 0).astype(np.float64)
    affinity = (
        brand
        + 0.8 * (1.0 - 2.0 * np.abs(luxury - traits.luxury_tilt))
        - 0.15 * np.abs(age - traits.typical_age)
        + 1.2 * (history - 0.5)
    )
    ymm_raw = 1700.0 + 1300.0 * _squash(0.9 * affinity + 0.6 * traits.price_position)

    # Turnover and current stock of that YMM, and the vin_score the rooftop usually handles.
    pull = 1.0 + _squash(affinity)
    turnover = traits.turnover * (0.6 + 0.4 * turnover_noise) * (0.5 + 0.5 * pull)
    stock = np.floor(traits.stock_units * 0.008 * pull * stock_noise)
    typical_vin = 1700.0 + 1300.0 * _squash(
        0.8 * traits.price_position
        - 0.2 * (traits.typical_age - 4.0)
        + 0.8 * (traits.luxury_tilt - 0.5)
    )
    fit = (
        ymm_raw / 1000.0
        + turnover
        - 0.9 * (stock / (stock + 4.0))
        - np.abs(vin_raw - typical_vin) / 900.0
    )
    return Scores(
        vin_score=np.broadcast_to(np.round(vin_raw, 2), fit.shape).copy(),
        dealer_ymm_score=np.round(ymm_raw, 2),
        fit=fit,
    )
