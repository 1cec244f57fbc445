"""How messages name an input row: its 0-based position in the frame, or its line in a file.

The library names ``row n`` (``df.row(n)``). The command line reads a file, where a person looks
for a line: inside :func:`numbered_as_lines` the same messages say ``line n + first`` instead
(``first=2`` for a CSV file with a header line). The choice is a context variable, so it follows
the call into its event loop and worker thread, and ends with the block.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import polars as pl

__all__ = ["numbered_as_lines", "row_name", "row_name_expr"]

_FIRST_LINE: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "mm_pipeline_first_line", default=None
)


@contextlib.contextmanager
def numbered_as_lines(first: int = 2) -> Iterator[None]:
    """Name rows by file line inside the block: row 0 is line ``first``.

    Examples
    --------
    >>> with numbered_as_lines():
    ...     row_name(0)
    'line 2'
    >>> row_name(0)
    'row 0'
    """
    token = _FIRST_LINE.set(first)
    try:
        yield
    finally:
        _FIRST_LINE.reset(token)


def row_name(row: int) -> str:
    """Return how messages name input row ``row`` (0-based).

    Examples
    --------
    >>> row_name(3)
    'row 3'
    """
    first = _FIRST_LINE.get()
    return f"row {row}" if first is None else f"line {row + first}"


def row_name_expr(row: str | pl.Expr) -> pl.Expr:
    """:func:`row_name` for a column of 0-based row numbers.

    Examples
    --------
    >>> pl.select(row_name_expr(pl.lit(3))).item()
    'row 3'
    """
    expr = pl.col(row) if isinstance(row, str) else row
    first = _FIRST_LINE.get()
    return pl.format("row {}", expr) if first is None else pl.format("line {}", expr + first)
