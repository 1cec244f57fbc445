"""Validate normalised pairs against :class:`mm_pipeline.schemas.PairsInput`; say why in words.

Rejected: missing required columns (raised while normalising, whatever ``on_invalid`` says),
nulls in ``vin``/``price``/``miles``/``source``, a VIN that is not 17 characters of the VIN
alphabet or whose check digit is wrong, a price that is not a positive whole number, miles that
are negative or fractional, a ZIP that is not 5 digits, a source that is empty, contains spaces
or is longer than a domain name can be (253 characters), an ``mc_location_id`` over 255
characters, and control characters in ``source`` or ``mc_location_id`` (no dealer is named so,
and such values would only spend requests, or overflow the API's 1 MiB body limit, to learn
that).

Row numbers in messages are 0-based positions in the input frame (``df.row(n)``; the command
line says file lines instead, see :mod:`mm_pipeline._rows`). Extra columns are ignored.

The pandera model is the single statement of what is valid; this module runs it once per
distinct value of each column (:func:`validate`), traces each failing value back to the input
rows that hold it, and turns pandera's check names into reasons (``price must be a positive whole
number (got -1)``): one message per invalid row (:func:`row_messages`), or one
:class:`~mm_pipeline.InvalidInputError` listing the first rows (:func:`raise_invalid`).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from mm_pipeline._exceptions import Hint, InvalidInputError
from mm_pipeline._frames import PAIR_COLUMNS, ROW
from mm_pipeline._rows import row_name_expr

__all__ = ["NON_ASCII", "raise_invalid", "row_messages", "validate"]

NON_ASCII = r"[^\x00-\x7F]"
"""Text beyond ASCII (a fullwidth or Arabic-Indic digit, a long s, a ligature)."""
_FAIL_INVALID = Hint(argument="on_invalid='fail'", flag="--on-invalid fail")
_SHOWN_IN_MESSAGE = 10
_SHOWN_CHARS = 60  # of a value quoted in a message
_CONTROL_CHARS = [chr(c) for c in (*range(0x20), 0x7F)]
_CONTROL_ESCAPES = [f"\\x{ord(c):02x}" for c in _CONTROL_CHARS]
_ZIP_PLUS_FOUR = r"^[0-9]{5}-?[0-9]{4}$"

# (column, pandera check name up to "(") -> what the rule says, for humans.
_REASONS: dict[tuple[str, str], str] = {
    ("vin", "str_length"): "must be exactly 17 characters",
    ("vin", "str_matches"): "may only contain 0-9 and A-Z except I, O and Q",
    ("vin", "vin_check_digit"): "has a wrong check digit (9th character)",
    ("price", "greater_than"): "must be a positive whole number",
    ("miles", "greater_than_or_equal_to"): "must be a non-negative whole number",
    ("source", "str_matches"): "must be a dealer website domain without spaces",
    ("source", "str_length"): "is longer than 253 characters, the limit of a domain name",
    ("source", "no_control_characters"): "must not contain control characters",
    ("mc_location_id", "str_length"): "must be at most 255 characters",
    ("mc_location_id", "no_control_characters"): "must not contain control characters",
    ("zip", "str_matches"): "must be a 5-digit ZIP code",
}
_UNREADABLE = {
    "vin": "is not text",
    "price": "is not a whole number",
    "miles": "is not a whole number",
    "source": "is not text",
}


def _display(values: pl.Series) -> pl.Series:
    r"""Render the user's original values for messages: strings quoted, null as ``null``.

    Values longer than ``_SHOWN_CHARS`` are cut (saying how long they were) and control
    characters are escaped (``\x00``), so that a message stays one readable line.
    """
    quote = '"' if values.dtype == pl.String else ""
    try:
        text = values.cast(pl.String)
    except pl.exceptions.PolarsError:
        text = pl.Series([repr(value) for value in values.to_list()], dtype=pl.String)
    value, length = pl.col("v"), pl.col("v").str.len_chars()
    head = value.str.slice(0, _SHOWN_CHARS).str.replace_many(_CONTROL_CHARS, _CONTROL_ESCAPES)
    shown = pl.format(f"{quote}{{}}{quote}", head)
    cut = pl.format(f"{quote}{{}}…{quote} ({{}} characters)", head, length)
    rendered = pl.when(length > _SHOWN_CHARS).then(cut).otherwise(shown)
    return text.to_frame("v").select(rendered.fill_null("null")).to_series()


def _failed_checks(
    normalised: pl.DataFrame, known: Mapping[str, pl.Series] | None = None
) -> pl.DataFrame:
    """Run :class:`PairsInput` once per distinct value of each column; return failing rows.

    Every check of the model is per value, so the model validates a frame whose columns hold
    each column's distinct values (padded to one height by repeating the first), and each
    failing value is traced back to the input rows that hold it: ``row``, ``column``,
    ``check``. ``known``: each column's values already at hand (repeats allowed).
    """
    known = known or {}
    distinct = {
        name: known[name] if name in known else normalised.get_column(name).unique()
        for name in PAIR_COLUMNS
    }
    height = max(len(values) for values in distinct.values())
    frame = pl.DataFrame(
        [
            values.extend_constant(values[0], height - len(values)) if height else values
            for values in distinct.values()
        ]
    )
    # pandera loads here, on the first validation, not with the package (about 0.7 s).
    import pandera.errors  # noqa: PLC0415

    from mm_pipeline.schemas import PairsInput  # noqa: PLC0415

    columns = {"row": pl.Int64, "column": pl.String, "check": pl.String}
    try:
        PairsInput.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        failures = pl.DataFrame(exc.failure_cases)
    else:
        return pl.DataFrame(schema=columns)
    if failures.get_column("index").is_null().any():
        # A whole-column (dtype) failure cannot happen after normalisation: it is a bug here.
        raise AssertionError(f"pandera reported a column-level failure: {failures}")
    parts: list[pl.DataFrame] = []
    failures = failures.with_row_index("_order")  # pandera's order: columns, then checks
    for (name,), group in failures.group_by("column", maintain_order=True):
        column = str(name)
        values = distinct[column]
        index = pl.col("index").cast(pl.Int64)
        padding = index >= len(values)  # holds the first value again
        bad = group.select(
            "_order",
            _value=values.gather(group.select(pl.when(padding).then(0).otherwise(index))[:, 0]),
            check=pl.col("check").cast(pl.String),
        ).unique(["_value", "check"], keep="first", maintain_order=True)
        parts.append(
            normalised.select(pl.col(ROW).alias("row"), pl.col(column).alias("_value"))
            .join(bad, on="_value", nulls_equal=True)
            .select("row", pl.lit(column).alias("column"), "check", "_order")
        )
    cases = pl.concat(parts).sort("_order", "row").drop("_order")
    return cases.cast(columns)  # type: ignore[arg-type]


def validate(
    normalised: pl.DataFrame,
    raw: pl.DataFrame,
    *,
    distinct: Mapping[str, pl.Series] | None = None,
) -> pl.DataFrame:
    """Check the normalised frame against :class:`~mm_pipeline.schemas.PairsInput`.

    Returns
    -------
    pl.DataFrame
        One row per failed check: ``row`` (input row number), ``column``, ``check`` (pandera's
        check name), ``value`` (the original value as given) and ``reason`` (in words); empty
        when every row is valid. ``distinct``: columns' normalised values already known.
    """
    cases = _failed_checks(normalised, distinct)
    parts: list[pl.DataFrame] = []
    for (column,), group in cases.group_by("column", maintain_order=True):
        name = str(column)
        rows = group.get_column("row")
        original = raw.get_column(name).gather(rows)
        given = normalised.get_column(name).gather(rows).cast(pl.String)
        check = pl.col("check")
        missing = (
            pl.when(pl.col("_given").is_null() & pl.col("_original"))
            .then(pl.lit(_UNREADABLE.get(name, "could not be read")))
            .otherwise(pl.lit("is missing"))
        )
        rule = check.str.extract(r"^([^(]*)").replace_strict(
            {check_name: text for (col, check_name), text in _REASONS.items() if col == name},
            default=pl.format("fails {}", check),
            return_dtype=pl.String,
        )
        zip_plus_four = pl.lit(name == "zip") & pl.col("_given").str.contains(_ZIP_PLUS_FOUR)
        reason = (
            pl.when(pl.col("_non_ascii"))
            .then(pl.lit("must be written with the ASCII digits 0-9"))
            .when(check == "not_nullable")
            .then(missing)
            .when(zip_plus_four)
            .then(pl.lit("is a ZIP+4 or 9-digit ZIP; give the 5-digit ZIP code"))
            .otherwise(rule)
        )
        parts.append(
            group.with_columns(
                _original=original.is_not_null(),
                _given=given,
                _non_ascii=_non_ascii_digits(name, original),
                value=_display(original),
            )
            .with_columns(reason=reason)
            .drop("_original", "_given", "_non_ascii")
        )
    if not parts:
        return cases.with_columns(value=pl.lit(None, pl.String), reason=pl.lit(None, pl.String))
    return pl.concat(parts).sort("row", maintain_order=True)


def _non_ascii_digits(name: str, original: pl.Series) -> pl.Series:
    """Flag a ZIP, price or miles given as text beyond ASCII (a fullwidth or Arabic-Indic digit)."""
    if name not in ("zip", "price", "miles") or original.dtype != pl.String:
        return pl.repeat(False, original.len(), eager=True)
    return original.str.contains(NON_ASCII).fill_null(False)


def row_messages(cases: pl.DataFrame) -> pl.DataFrame:
    """One ``row: column reason (got value); ...`` message per invalid row."""
    return (
        cases.with_columns(
            part=pl.when(pl.col("reason") == "is missing")
            .then(pl.format("{} is missing", "column"))
            .otherwise(pl.format("{} {} (got {})", "column", "reason", "value")),
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("part").str.join("; "))
        .select(
            pl.col("row").alias(ROW),
            pl.format("{}: {}", row_name_expr("row"), "part").alias("error_message"),
        )
    )


def raise_invalid(cases: pl.DataFrame, messages: pl.DataFrame, rows: int) -> None:
    bad = messages.height
    shown = messages.get_column("error_message").head(_SHOWN_IN_MESSAGE).to_list()
    more = bad - len(shown)
    lines = [
        f"{bad:,} of {rows:,} input rows are invalid (pass {_FAIL_INVALID.argument} to list "
        f"them with the failed pairs, error_code 'invalid_input', and rank the rest):",
        *(f"  {line}" for line in shown),
    ]
    if more:
        lines.append(f"  ... and {more:,} more row{'s' if more > 1 else ''}")
    raise InvalidInputError("\n".join(lines), failure_cases=cases, hints=(_FAIL_INVALID,))
