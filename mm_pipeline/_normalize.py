"""Normalise pairs frames (normalize), then validate and de-duplicate them (prepare).

The rules (all vectorised polars; the checks themselves are the pandera model
:class:`mm_pipeline.schemas.PairsInput`, so the schema is the single statement of what is valid):

Normalised, because a user would expect it:

- ``vin``: trimmed and upper-cased.
- ``price`` / ``miles``: any integer dtype; floats and decimals that are whole numbers
  (``20000.0``); strings of digits (``"20000"``, ``" 20000.0 "``). Anything else (``1.5``,
  ``"20,000"``, ``"$20000"``, booleans, dates) is *not a whole number*.
- ``source``: trimmed, lower-cased; a scheme (``https://``), user info, ``www.``, a port and any
  path, query or fragment are removed: ``"https://www.MBofAugusta.com/inventory"`` ->
  ``"mbofaugusta.com"``.
- ``zip``: integers and strings of 1-4 digits are zero-padded to 5 (``2134`` and ``"2134"`` ->
  ``"02134"``, since spreadsheets drop leading zeros); whole-number floats likewise. ZIP+4
  (``"02134-1234"``) and 9-digit ZIPs (also integers of 6-9 digits, which are 9-digit ZIPs that
  lost their leading zeros) are rejected with a message saying so: the API takes the 5-digit
  ZIP, and silently truncating would hide a data problem.
- ``zip`` and ``mc_location_id``: optional columns; empty or blank strings mean "not given".
  Pairs giving neither are valid (single-location dealers).

What is rejected, and how messages name it: :mod:`mm_pipeline._validate`.

After validation, exact duplicate pairs (all six columns equal after normalisation) are kept
once, and for ``/vins/rank`` a VIN given twice for the same dealer with different price/miles
keeps its first row; the others go to ``failed`` as ``duplicate_conflict`` (the endpoint ranks
a VIN once per dealer, and its response could not tell the two apart). For ``/dealers/rank``
such rows are simply different vehicles (groups are ``vin, price, miles``) and need nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import polars as pl

from mm_pipeline._exceptions import InvalidInputError
from mm_pipeline._frames import FAILED_WITH_ROW, PAIR_COLUMNS, ROW
from mm_pipeline._rows import row_name_expr
from mm_pipeline._validate import NON_ASCII, raise_invalid, row_messages, validate

__all__ = ["OnInvalid", "Prepared", "normalize", "prepare"]

OnInvalid = Literal["raise", "fail"]

_REQUIRED = ("vin", "price", "miles", "source")
# ASCII digits only: a regex \d (and str.isdigit) also matches fullwidth or Arabic-Indic digits.
_WHOLE_STRING = r"^-?[0-9]+(\.0*)?$"
_NESTED = (pl.List, pl.Array, pl.Struct, pl.Object)


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """Validated, distinct pairs ready to plan and send, and the rows that will not be sent.

    ``pairs`` has the six pair columns plus ``_row`` (first input row of the pair); ``failed``
    follows ``FAILED_SCHEMA`` plus ``_row``.
    """

    pairs: pl.DataFrame
    failed: pl.DataFrame
    rows: int
    invalid_rows: int
    duplicates_removed: int
    conflicts: int


def _text(name: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, _NESTED):
        return pl.lit(None, pl.String)
    return pl.col(name).cast(pl.String, strict=False).str.strip_chars()


def _ascii_upper(text: pl.Expr) -> pl.Expr:
    """Upper-case ASCII text; leave other text as given.

    Unicode case mapping turns a long s (U+017F) into ``"S"`` and the ligature U+FB00 into
    ``"FF"``, which would make a non-ASCII VIN pass.
    """
    return pl.when(text.str.contains(NON_ASCII)).then(text).otherwise(text.str.to_uppercase())


def _whole_number(name: str, dtype: pl.DataType) -> pl.Expr:
    """Int64 for whole numbers of any sensible dtype, null for anything else."""
    col = pl.col(name)
    if dtype.is_integer():
        return col.cast(pl.Int64, strict=False)
    if dtype.is_float() or dtype.is_decimal():
        as_float = col.cast(pl.Float64)
        whole = as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < 2.0**62)
        return pl.when(whole).then(as_float.cast(pl.Int64, strict=False))
    if dtype == pl.String:
        text = col.str.strip_chars()
        digits = text.str.replace(r"\.0*$", "")
        return pl.when(text.str.contains(_WHOLE_STRING)).then(digits.cast(pl.Int64, strict=False))
    return pl.lit(None, pl.Int64)


def _zip(dtype: pl.DataType) -> pl.Expr:
    text = _text("zip", dtype)
    if dtype.is_integer() or dtype.is_float() or dtype.is_decimal():
        # Numbers lost their leading zeros: 2134 -> "02134"; 21341234 -> "021341234" (a ZIP+4,
        # refused by the validator). Unreadable numbers (1.5) stay visible as given.
        digits = _whole_number("zip", dtype).cast(pl.String)
        padded = pl.when(digits.str.len_chars() > 5).then(digits.str.zfill(9))
        return padded.otherwise(digits.str.zfill(5)).fill_null(text)
    text = pl.when(text == "").then(None).otherwise(text)
    return pl.when(text.str.contains(r"^[0-9]{1,4}$")).then(text.str.zfill(5)).otherwise(text)


def _unchanged(values: pl.Series) -> pl.Series:
    return values


def _per_value(
    column: pl.Series, expr: pl.Expr, then: Callable[[pl.Series], pl.Series]
) -> tuple[pl.Series, pl.Series | None]:
    """Evaluate an elementwise expression of a text column once per distinct value.

    Pairs repeat their values (a vehicle's VIN on each of its dealers, a dealer on many
    vehicles), so normalising the distinct values and mapping them back is several times
    cheaper than normalising every row -- and free when every value is already normal.
    Returns the normalised column and, when computed that way, its values (each at least once).
    """
    values = column.unique() if column.dtype == pl.String else column
    if 2 * len(values) >= len(column):  # mostly distinct (or not text, or empty): no gain
        return then(column.to_frame().with_columns(expr).to_series()), None
    normal = then(values.to_frame().with_columns(expr).to_series())
    if normal.dtype == values.dtype and normal.eq_missing(values).all():
        return column, values
    return column.replace_strict(values, normal, return_dtype=normal.dtype), normal


def _is_pandas(value: object) -> bool:
    return type(value).__module__.split(".")[0] == "pandas"


def _strip_url(source: pl.Series) -> pl.Series:
    """Reduce URLs to their host: scheme, user info, ``www.``, port, path, query go."""
    if not source.str.contains(r"[/:@?#]|^www\.|\.$").any():
        return source  # the common case, and 10x cheaper than the regexes below
    return (
        source.str.replace(r"^[a-z][a-z0-9+.\-]*://", "")  # scheme
        .str.replace(r"[/?#].*$", "")  # path, query, fragment
        .str.replace(r"^[^@]*@", "")  # user info
        .str.replace(r":[0-9]*$", "")  # port
        .str.replace(r"^www\.", "")
        .str.strip_chars_end(".")
    )


#: Series-level steps after a column's expression (the URL check pays only on a whole series).
_FINISH = {"source": _strip_url}


def normalize(pairs: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Return ``pairs`` normalised as the ranking functions normalise them, not yet validated.

    The result has exactly the six columns of :class:`mm_pipeline.schemas.PairsInput` in its
    dtypes (``vin``, ``source``, ``zip``, ``mc_location_id`` text; ``price``, ``miles`` Int64),
    in input order, one row per input row; extra columns are dropped. Values that cannot be
    read (a price of ``"abc"``) become null, which the schema then reports. So pandera users can
    normalise and validate themselves: ``PairsInput.validate(mm.normalize(pairs))``.

    Parameters
    ----------
    pairs
        Vehicle-dealer pairs: ``vin``, ``price``, ``miles``, ``source``, optional ``zip`` and
        ``mc_location_id``, in any sensible dtypes (a LazyFrame is collected).

    Returns
    -------
    pl.DataFrame
        The normalised pairs (see :mod:`mm_pipeline._normalize` for every rule).

    Raises
    ------
    InvalidInputError
        When a required column is missing (listing all missing and all present columns).
    TypeError
        When ``pairs`` is not a polars DataFrame or LazyFrame.

    Examples
    --------
    >>> import polars as pl
    >>> import mm_pipeline as mm
    >>> from mm_pipeline.schemas import PairsInput
    >>> pairs = pl.DataFrame({
    ...     "vin": [" wp1be2ay5pda28064 "], "price": [20000.0], "miles": ["3000"],
    ...     "source": ["https://www.MBofAugusta.com/used"], "zip": [2134]})
    >>> mm.normalize(pairs).row(0)
    ('WP1BE2AY5PDA28064', 20000, 3000, 'mbofaugusta.com', '02134', None)
    >>> PairsInput.validate(mm.normalize(pairs)).height
    1
    """
    normalised, _raw, _distinct = _normalized(pairs)
    return normalised.drop(ROW)


def _normalized(
    pairs: pl.DataFrame | pl.LazyFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, pl.Series]]:
    """Collect ``pairs``; return ``(normalised, raw, distinct)``, the first two with ``_row``.

    ``normalised`` is :func:`normalize`'s frame plus ``_row``; ``raw`` holds the user's original
    values of the same columns, for messages; ``distinct`` the normalised values of the
    columns that were read per distinct value.
    """
    if isinstance(pairs, pl.LazyFrame):
        pairs = pairs.collect()
    if not isinstance(pairs, pl.DataFrame):
        raise TypeError(
            f"pairs must be a polars DataFrame or LazyFrame, got {type(pairs)!r}"
            + (" (convert it with pl.from_pandas(df))" if _is_pandas(pairs) else "")
        )
    missing = [name for name in _REQUIRED if name not in pairs.columns]
    if missing:
        raise InvalidInputError(
            f"pairs is missing required column(s) {', '.join(missing)}; it needs vin, price, "
            f"miles, source (and optionally zip, mc_location_id), got columns "
            f"{', '.join(pairs.columns) or '(none)'}"
        )
    present = [name for name in PAIR_COLUMNS if name in pairs.columns]
    raw = pairs.select(present).with_columns(
        pl.lit(None, pl.String).alias(name) for name in PAIR_COLUMNS if name not in present
    )
    raw = raw.select(PAIR_COLUMNS).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    schema = raw.schema
    mc_id = _text("mc_location_id", schema["mc_location_id"])
    rules = {
        "vin": _ascii_upper(_text("vin", schema["vin"])),
        "price": _whole_number("price", schema["price"]),
        "miles": _whole_number("miles", schema["miles"]),
        "source": _text("source", schema["source"]).str.to_lowercase(),
        "zip": _zip(schema["zip"]),
        "mc_location_id": pl.when(mc_id == "").then(None).otherwise(mc_id),
    }
    columns: list[pl.Series] = []
    distinct: dict[str, pl.Series] = {}
    for name, rule in rules.items():
        column, values = _per_value(
            raw.get_column(name), rule.alias(name), _FINISH.get(name, _unchanged)
        )
        columns.append(column)
        if values is not None:
            distinct[name] = values
    return pl.DataFrame(columns).with_columns(raw.get_column(ROW)), raw, distinct


def _as_failed(frame: pl.DataFrame, code: str, message: pl.Expr) -> pl.DataFrame:
    """Rows of ``frame`` in the ``failed`` layout (plus ``_row``) with one code and a message."""
    return frame.select(
        *PAIR_COLUMNS,
        pl.lit(None, pl.Float64).alias("vin_score"),
        pl.lit(None, pl.Float64).alias("dealer_ymm_score"),
        pl.lit(None, pl.UInt32).alias("vin_rank"),
        pl.lit(code, pl.String).alias("error_code"),
        message.cast(pl.String).alias("error_message"),
        pl.col(ROW),
    )


def _first_occurrences(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep the first row of every distinct pair, in order.

    Rows whose pair hash is unique are distinct for sure; only rows sharing a hash (true
    duplicates, or the rare collision) are compared value by value. Hashing a pair is about
    twice as fast as comparing it, and most frames have few duplicates or none.
    """
    pair = pl.struct(PAIR_COLUMNS)
    shared = frame.select(pair.hash().is_duplicated()).to_series()
    if not shared.any():
        return frame
    candidates = frame.filter(shared)
    firsts = candidates.filter(pair.is_first_distinct())
    if firsts.height == candidates.height:  # collisions only
        return frame
    return pl.concat([frame.filter(~shared), firsts]).sort(ROW)


def prepare(
    pairs: pl.DataFrame | pl.LazyFrame,
    *,
    endpoint: Literal["dealers", "vins"],
    on_invalid: OnInvalid,
) -> Prepared:
    """Normalise, validate and de-duplicate ``pairs`` for one endpoint.

    Raises
    ------
    InvalidInputError
        For missing columns always; for invalid rows when ``on_invalid="raise"`` (the message
        lists the first rows, ``failure_cases`` holds them all).

    Examples
    --------
    >>> import polars as pl
    >>> good = {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000, "source": "a.com"}
    >>> frame = pl.DataFrame([good, good, {**good, "price": -1}])
    >>> prepared = prepare(frame, endpoint="dealers", on_invalid="fail")
    >>> prepared.pairs.height, prepared.duplicates_removed, prepared.invalid_rows
    (1, 1, 1)
    >>> prepared.failed.get_column("error_message").to_list()
    ['row 2: price must be a positive whole number (got -1)']
    """
    if on_invalid not in ("raise", "fail"):
        raise ValueError(f"on_invalid must be 'raise' or 'fail', got {on_invalid!r}")
    normalised, raw, values = _normalized(pairs)
    cases = validate(normalised, raw, distinct=values)
    messages = row_messages(cases)
    if messages.height and on_invalid == "raise":
        raise_invalid(cases, messages, normalised.height)
    valid = normalised
    failed: list[pl.DataFrame] = []
    if messages.height:
        bad = normalised.join(messages, on=ROW, how="inner", maintain_order="left")
        failed.append(_as_failed(bad, "invalid_input", pl.col("error_message")))
        valid = normalised.join(messages, on=ROW, how="anti", maintain_order="left")
    distinct = _first_occurrences(valid)
    duplicates_removed = valid.height - distinct.height
    conflicts = 0
    if endpoint == "vins":
        dealer_vin = ["source", "zip", "mc_location_id", "vin"]
        first = distinct.select(pl.struct(dealer_vin).is_first_distinct()).to_series()
        clashing = distinct.filter(~first).join(
            distinct.filter(first).select(*dealer_vin, pl.col(ROW).alias("_first")),
            on=dealer_vin,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
        conflicts = clashing.height
        failed.append(
            _as_failed(
                clashing,
                "duplicate_conflict",
                pl.format(
                    "{}: same vin and dealer as {} with a different price/miles; "
                    "/vins/rank ranks a VIN once per dealer, so only {} was sent",
                    row_name_expr(ROW),
                    row_name_expr("_first"),
                    row_name_expr("_first"),
                ),
            )
        )
        distinct = distinct.filter(first)
    return Prepared(
        pairs=distinct,
        failed=pl.concat([pl.DataFrame(schema=FAILED_WITH_ROW), *failed]).sort(ROW),
        rows=normalised.height,
        invalid_rows=messages.height,
        duplicates_removed=duplicates_removed,
        conflicts=conflicts,
    )
