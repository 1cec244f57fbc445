"""VIN alphabet and check digit (ISO 3779 / 49 CFR 565), shared by the client and the sandbox.

A VIN is 17 characters from ``0-9`` and ``A-Z`` without ``I``, ``O`` and ``Q``. Each character
transliterates to a digit (letters by :data:`TRANSLITERATION`), the digits are multiplied by
:data:`WEIGHTS` and summed; the sum modulo 11 is the check digit at position 9 (``X`` for 10).

Validation here is case-insensitive (``"wp1..."`` is valid when ``"WP1..."`` is): decoders accept
lower case, and the sandbox decodes the upper-cased VIN.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "TRANSLITERATION",
    "VIN_ALPHABET",
    "VIN_LENGTH",
    "WEIGHTS",
    "check_digit",
    "is_valid_vin",
    "vin_is_valid",
]

VIN_LENGTH = 17
VIN_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
"""The 33 characters a VIN may use (no ``I``, ``O``, ``Q``)."""

TRANSLITERATION: dict[str, int] = {
    **{d: int(d) for d in "0123456789"},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
"""Character -> digit used by the check-digit sum."""

WEIGHTS: tuple[int, ...] = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
"""Per-position weights; position 9 (the check digit itself) weighs 0."""


def check_digit(vin: str) -> str:
    """Return the check digit (``"0"``-``"9"`` or ``"X"``) that *vin* should carry at position 9.

    Parameters
    ----------
    vin
        A 17-character VIN (any case); its own position 9 is ignored.

    Returns
    -------
    str
        The expected check character.

    Raises
    ------
    ValueError
        When *vin* is not 17 characters of the VIN alphabet.

    Examples
    --------
    >>> check_digit("WP1BE2AY5PDA28064")
    '5'
    >>> check_digit("4T1C11BKXNU065125")
    'X'
    """
    # ASCII first: Unicode case mapping turns a long s (U+017F) into "S", U+FB00 into "FF".
    upper = vin.upper() if vin.isascii() else vin
    if len(upper) != VIN_LENGTH or any(c not in TRANSLITERATION for c in upper):
        msg = f"not a 17-character VIN of the VIN alphabet (no I, O, Q): {vin!r}"
        raise ValueError(msg)
    remainder = sum(TRANSLITERATION[c] * w for c, w in zip(upper, WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


def is_valid_vin(vin: str) -> bool:
    """Tell whether *vin* has 17 characters of the VIN alphabet and a correct check digit.

    Examples
    --------
    >>> is_valid_vin("WP1BE2AY5PDA28064")
    True
    >>> is_valid_vin("WP1BE2AY6PDA28064")  # wrong check digit
    False
    >>> is_valid_vin("WP1BE2AY5PDO28064")  # 'O' is not a VIN character
    False
    >>> is_valid_vin("5fnyf8h54\u017fb000197")  # a long s, upper-cased "S" by Unicode: not ASCII
    False
    """
    try:
        return vin[8].upper() == check_digit(vin)
    except (ValueError, IndexError):
        return False


def vin_is_valid(vin: str | pl.Expr) -> pl.Expr:
    """Build a vectorised polars expression telling whether each VIN is valid.

    Valid means 17 characters of the VIN alphabet with a correct check digit: the same answer
    as :func:`is_valid_vin` for every string; null gives ``False``. It runs on the VINs' bytes
    with numpy (no Python per row): about 0.2 s for a million VINs.

    Parameters
    ----------
    vin
        A column name or a string expression.

    Returns
    -------
    pl.Expr
        A Boolean expression without nulls.

    Examples
    --------
    >>> df = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064", "WP1BE2AY6PDA28064", "short", None]})
    >>> df.select(vin_is_valid("vin"))["vin"].to_list()
    [True, False, False, False]
    """
    expr = pl.col(vin) if isinstance(vin, str) else vin
    return expr.map_batches(_valid_series, return_dtype=pl.Boolean, is_elementwise=True)


def _byte_table(values: dict[str, int], default: int) -> npt.NDArray[np.int16]:
    table = np.full(256, default, dtype=np.int16)
    for char, value in values.items():
        table[ord(char)] = table[ord(char.lower())] = value
    return table


_VALUE_OF_BYTE = _byte_table(TRANSLITERATION, -1)
"""Byte -> transliterated digit (either case); -1 for a byte outside the VIN alphabet."""
_CHECK_CODE_OF_BYTE = _byte_table({**{d: int(d) for d in "0123456789"}, "X": 10}, -1)
_WEIGHT_ARRAY = np.array(WEIGHTS, dtype=np.int16)


def _valid_series(series: pl.Series) -> pl.Series:
    """Validate a string Series: 17 bytes, all of the alphabet, correct check digit."""
    codes = (
        series.cast(pl.String)
        .cast(pl.Binary)
        .bin.reinterpret(dtype=pl.Array(pl.UInt8, VIN_LENGTH))  # null unless exactly 17 bytes
    )
    has_17 = codes.is_not_null().to_numpy()
    valid = np.zeros(len(series), dtype=bool)
    if has_17.any():
        matrix = codes.drop_nulls().to_numpy()
        values = _VALUE_OF_BYTE[matrix]
        in_alphabet = values.min(axis=1) >= 0
        remainder = (values @ _WEIGHT_ARRAY) % 11
        check_ok = _CHECK_CODE_OF_BYTE[matrix[:, 8]] == remainder
        valid[has_17] = in_alphabet & check_ok
    return pl.Series(series.name, valid, dtype=pl.Boolean)
