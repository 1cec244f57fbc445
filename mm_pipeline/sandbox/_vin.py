"""Decode VINs: alphabet, check digit, real WMIs, model year and a model from the VDS.

A VIN decodes when, in this order:

1. it has exactly 17 characters (case-insensitive, decoded upper-cased);
2. they are all in the VIN alphabet (no ``I``, ``O``, ``Q``);
3. position 9 carries the right check digit;
4. positions 1-3 are a WMI of the catalog (:mod:`._catalog`: 55 real makes);
5. position 10 is a model-year code (``1``-``9`` -> 2001-2009, ``A``-``Y`` without ``I O Q U
   Z`` -> 2010-2030) no later than :data:`MAX_MODEL_YEAR` (the market date's year + 1);

and the model is then picked deterministically from positions 4-8 (the VDS) among the make's
models of the kinds that WMI builds (the published example VINs decode to their real models).

One numpy implementation serves both paths: :func:`decode_vin` (online, cached) and
:func:`decode_vins` (batch, one pass over the unique VINs), so they always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from mm_pipeline._vin import TRANSLITERATION, VIN_ALPHABET, VIN_LENGTH, WEIGHTS, check_digit
from mm_pipeline.sandbox._catalog import BODY_KIND, KNOWN_VDS, MAKES

__all__ = [
    "MARKET_DATE",
    "MAX_MODEL_YEAR",
    "MODELS",
    "REASON_CODES",
    "DecodeFailure",
    "DecodedVin",
    "decode_vin",
    "decode_vins",
]

MARKET_DATE: Final = date(2026, 11, 28)
"""The sandbox market's fixed "today": results never depend on the wall clock."""
MAX_MODEL_YEAR: Final = MARKET_DATE.year + 1
"""The latest model year on sale at :data:`MARKET_DATE` (next year's models)."""

I64 = npt.NDArray[np.int64]
_YEAR_CODES = "123456789ABCDEFGHJKLMNPRSTVWXY"
_YEAR_OF_CODE = dict(zip(_YEAR_CODES, range(2001, 2031), strict=True))

# -- the catalog as arrays -------------------------------------------------------------------

MODELS: Final = pl.DataFrame(
    [
        (make_id, make.name, name, body, BODY_KIND[body], price, make.luxury)
        for make_id, make in enumerate(MAKES)
        for name, body, price in make.models
    ],
    schema={
        "make_id": pl.Int32,
        "make": pl.String,
        "model": pl.String,
        "body": pl.String,
        "kind": pl.String,
        "base_price": pl.Int64,
        "luxury": pl.Boolean,
    },
    orient="row",
).with_row_index("model_id")
"""Every model of the catalog; ``model_id`` is the row number, ``make_id`` indexes ``MAKES``."""

_MODEL_ID_OF: Final = {(r["make"], r["model"]): r["model_id"] for r in MODELS.iter_rows(named=True)}


def _build_wmi_table() -> tuple[I64, npt.NDArray[np.int32], I64]:
    """Sorted WMI codes, their candidate-model counts, and the padded candidate matrix."""
    rows: list[tuple[int, list[int]]] = []
    for make_id, make in enumerate(MAKES):
        for wmi, kinds in make.wmis.items():
            wanted = set(kinds.split(",")) if kinds else set(BODY_KIND.values())
            candidates = (
                MODELS.filter((pl.col("make_id") == make_id) & pl.col("kind").is_in(wanted))[
                    "model_id"
                ]
                .cast(pl.Int64)
                .to_list()
            )
            rows.append((int.from_bytes(wmi.encode(), "big"), candidates))
    rows.sort()
    codes = np.array([code for code, _ in rows], dtype=np.int64)
    if np.unique(codes).size != codes.size:  # pragma: no cover - guarded by the catalog test
        msg = "a WMI is listed under two makes"
        raise ValueError(msg)
    counts = np.array([len(c) for _, c in rows], dtype=np.int32)
    matrix = np.zeros((len(rows), int(counts.max())), dtype=np.int64)
    for i, (_, candidates) in enumerate(rows):
        matrix[i, : len(candidates)] = candidates
    return codes, counts, matrix


_WMI_CODES, _WMI_COUNTS, _WMI_CANDIDATES = _build_wmi_table()


def _byte_table(values: dict[str, int], default: int) -> I64:
    table = np.full(256, default, dtype=np.int64)
    for char, value in values.items():
        table[ord(char)] = value
    return table


_UPPER: Final = np.arange(256, dtype=np.uint8)
_UPPER[ord("a") : ord("z") + 1] -= 32
_TRANSLIT: Final = _byte_table(TRANSLITERATION, -1)
_CHECK_VALUE: Final = _byte_table({**{d: int(d) for d in "0123456789"}, "X": 10}, -1)
_ALPHABET_INDEX: Final = _byte_table({c: i for i, c in enumerate(VIN_ALPHABET)}, 0)
_YEAR_OF_BYTE: Final = _byte_table(_YEAR_OF_CODE, 0)
_WEIGHT_ARRAY: Final = np.array(WEIGHTS, dtype=np.int64)
_MAKE_OF_WMI: Final = {wmi: make.name for make in MAKES for wmi in make.wmis}
_KNOWN = sorted(
    (int.from_bytes(prefix.encode(), "big"), _MODEL_ID_OF[(_MAKE_OF_WMI[prefix[:3]], model)])
    for prefix, model in KNOWN_VDS.items()
)
_KNOWN_KEYS: Final = np.array([key for key, _ in _KNOWN], dtype=np.uint64)
_KNOWN_MODELS: Final = np.array([model for _, model in _KNOWN], dtype=np.int64)

# Reason codes of :func:`_decode_matrix` (0 = decoded) and their names.
_OK, _LENGTH, _ALPHABET, _CHECK, _WMI, _YEAR_CODE, _FUTURE = range(7)
REASON_CODES: Final = (
    "",
    "invalid_length",
    "invalid_character",
    "check_digit_mismatch",
    "unknown_wmi",
    "invalid_model_year",
    "future_model_year",
)
"""Why a VIN fails to decode: :attr:`DecodeFailure.code` / ``decode_vins()["reason"]``."""


def _decode_matrix(raw: npt.NDArray[np.uint8], max_year: int) -> tuple[I64, I64, I64]:
    """Decode an ``(n, 17)`` byte matrix -> (reason code, model_id, model year) arrays."""
    upper = _UPPER[raw]
    n = upper.shape[0]
    reason = np.zeros(n, dtype=np.int64)

    values = _TRANSLIT[upper]
    reason[values.min(axis=1, initial=0) < 0] = _ALPHABET
    check = (values @ _WEIGHT_ARRAY) % 11
    reason[(reason == _OK) & (_CHECK_VALUE[upper[:, 8]] != check)] = _CHECK

    wmi = (upper[:, 0].astype(np.int64) << 16) | (upper[:, 1].astype(np.int64) << 8) | upper[:, 2]
    slot = np.minimum(np.searchsorted(_WMI_CODES, wmi), _WMI_CODES.size - 1)
    reason[(reason == _OK) & (_WMI_CODES[slot] != wmi)] = _WMI

    year = _YEAR_OF_BYTE[upper[:, 9]]
    reason[(reason == _OK) & (year == 0)] = _YEAR_CODE
    reason[(reason == _OK) & (year > max_year)] = _FUTURE

    # The VDS (positions 4-8) as a base-33 number, mixed, picks one of the WMI's candidates.
    vds = _ALPHABET_INDEX[upper[:, 3:8]] @ (33 ** np.arange(4, -1, -1, dtype=np.int64))
    pick = (vds * 40503) % 1_000_003 % _WMI_COUNTS[slot]
    model = _WMI_CANDIDATES[slot, pick]
    prefix = np.ascontiguousarray(upper[:, :8]).view(">u8").ravel().astype(np.uint64)
    known = np.isin(prefix, _KNOWN_KEYS)
    if known.any():
        model[known] = _KNOWN_MODELS[np.searchsorted(_KNOWN_KEYS, prefix[known])]
    return reason, model, year


def _failure(reason: int, vin: str, year: int, max_year: int) -> DecodeFailure:
    upper = vin.upper()
    if reason == _LENGTH:
        message = f"VIN must have 17 characters, got {len(vin)}"
    elif reason == _ALPHABET:
        message = "VIN has a character outside the VIN alphabet (I, O and Q are never used)"
    elif reason == _CHECK:
        message = f"VIN check digit (position 9) should be {check_digit(upper)!r}"
    elif reason == _WMI:
        message = f"unknown manufacturer code (WMI) {upper[:3]!r}"
    elif reason == _YEAR_CODE:
        message = f"position 10 ({upper[9]!r}) is not a model-year code"
    else:
        message = f"model year {year} is later than {max_year}"
    return DecodeFailure(vin, REASON_CODES[reason], message)


# -- public API --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedVin:
    """A decoded vehicle (its ``vin`` as given)."""

    vin: str
    make: str
    model: str
    year: int
    body: str
    luxury: bool
    base_price: int
    make_id: int
    model_id: int


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A VIN that does not decode: a code from :data:`REASON_CODES` and a sentence saying why."""

    vin: str
    code: str
    message: str


@lru_cache(maxsize=65_536)
def decode_vin(vin: str, *, max_year: int = MAX_MODEL_YEAR) -> DecodedVin | DecodeFailure:
    """Decode one VIN (cached).

    Parameters
    ----------
    vin
        The VIN as given (any case).
    max_year
        The latest acceptable model year.

    Returns
    -------
    DecodedVin | DecodeFailure

    Examples
    --------
    >>> porsche = decode_vin("WP1BE2AY5PDA28064")
    >>> porsche.make, porsche.model, porsche.year, porsche.body, porsche.luxury
    ('Porsche', 'Cayenne', 2023, 'SUV', True)
    >>> decode_vin("WP1BE2AY6PDA28064").message
    "VIN check digit (position 9) should be '5'"
    """
    if len(vin) != VIN_LENGTH:
        return _failure(_LENGTH, vin, 0, max_year)
    if not vin.isascii():
        return _failure(_ALPHABET, vin, 0, max_year)
    raw = vin.encode()
    matrix = np.frombuffer(raw, dtype=np.uint8).reshape(1, VIN_LENGTH)
    reasons, models, years = _decode_matrix(matrix, max_year)
    reason, model_id, year = int(reasons[0]), int(models[0]), int(years[0])
    if reason != _OK:
        return _failure(reason, vin, year, max_year)
    row = MODELS.row(model_id, named=True)
    return DecodedVin(
        vin=vin,
        make=row["make"],
        model=row["model"],
        year=year,
        body=row["body"],
        luxury=row["luxury"],
        base_price=row["base_price"],
        make_id=row["make_id"],
        model_id=model_id,
    )


def decode_vins(vins: pl.Series, *, max_year: int = MAX_MODEL_YEAR) -> pl.DataFrame:
    """Decode each unique VIN of *vins* once, vectorised.

    Parameters
    ----------
    vins
        VIN strings (duplicates and nulls allowed; nulls are dropped).
    max_year
        The latest acceptable model year.

    Returns
    -------
    pl.DataFrame
        One row per unique VIN: ``vin``, ``model_id`` (UInt32), ``year`` (Int32) and ``reason``
        (null when decoded; else the code :func:`decode_vin` gives, from :data:`REASON_CODES`).
        ``model_id`` and ``year`` are null for VINs that fail. Join ``MODELS`` on ``model_id``
        for make, model, body, luxury and base price.

    Examples
    --------
    >>> out = decode_vins(pl.Series(["4T1C11BKXNU065125", "4T1C11BKXNU065125", "nope"]))
    >>> out.sort("vin").select("vin", "year", "reason").rows()
    [('4T1C11BKXNU065125', 2022, None), ('nope', None, 'invalid_length')]
    >>> MODELS.row(out.sort("vin")["model_id"][0], named=True)["model"]
    'Camry'
    """
    unique = vins.cast(pl.String).drop_nulls().unique(maintain_order=True).rename("vin")
    codes = unique.cast(pl.Binary).bin.reinterpret(dtype=pl.Array(pl.UInt8, VIN_LENGTH))
    # 17 characters but not 17 bytes: some are not ASCII; 17 bytes but not 17 characters: short.
    has_17_chars = (unique.str.len_chars() == VIN_LENGTH).to_numpy()
    decodable = has_17_chars & codes.is_not_null().to_numpy()
    reason = np.where(has_17_chars, _ALPHABET, _LENGTH)
    model = np.zeros(len(unique), dtype=np.int64)
    year = np.zeros(len(unique), dtype=np.int64)
    if decodable.any():
        matrix = codes.filter(pl.Series(decodable)).to_numpy()
        reason[decodable], model[decodable], year[decodable] = _decode_matrix(matrix, max_year)
    return pl.DataFrame(
        {
            "vin": unique,
            "model_id": pl.Series(model, dtype=pl.UInt32),
            "year": pl.Series(year, dtype=pl.Int32),
            "reason": pl.Series(np.array(REASON_CODES)[reason], dtype=pl.String),
        }
    ).with_columns(
        pl.when(pl.col("reason") == "").then(pl.col("model_id", "year")),
        pl.col("reason").replace("", None),
    )
