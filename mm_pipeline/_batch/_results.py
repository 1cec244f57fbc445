"""The batch result format: parse a result file (``.csv.gz``) into a typed frame, streaming.

Parsing streams too: polars and pyarrow inflate a whole gzip file before parsing it, which for a
million rows peaks at several times the typed result. :func:`read_result_file` instead inflates
the file in a worker thread (zlib releases the GIL) and regroups the text into blocks of about
2 MB of whole records (quote-aware, each led by the header line); each block is parsed as text
and typed at once, so memory holds the typed frame plus about one block. Every rule applies to
each value alone, so any block size gives the same frame. :func:`result_blocks` yields the
typed blocks one at a time, for writers that keep none of them (``_parquet``).

Server text (error codes and messages, rooftop ids) is scrubbed of the API key here, where it
enters.
"""

from __future__ import annotations

import contextlib
import functools
import re
import zlib
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Final, Literal

import polars as pl

from mm_pipeline._batch._files import column_key
from mm_pipeline._frames import FAILED_SCHEMA
from mm_pipeline._redact import redact_series

__all__ = ["RESULT_SCHEMA", "error_code_text", "read_result_file", "result_blocks"]

RESULT_SCHEMA: Final = FAILED_SCHEMA
"""The columns of :func:`read_result_file`'s frame (the failed schema; scores set when ranked)."""

_READ_BLOCK: Final = 1 << 20
_PIECE_BYTES: Final = 1 << 19  # most decompressed bytes per zlib call
_PARSE_BLOCK: Final = 2 << 20  # decompressed bytes parsed at a time
_GZIP_MAGIC: Final = b"\x1f\x8b"

_NUMBERS: Final[dict[str, pl.DataType]] = {
    "price": pl.Int64(),
    "miles": pl.Int64(),
    "vin_score": pl.Float64(),
    "dealer_ymm_score": pl.Float64(),
    "vin_rank": pl.UInt32(),
}
"""The number columns of a result file (canonical names) and their types."""
_MIN_RUN: Final = 4  # rows per VIN run, on average, from which _vins shares the text
_Case = Literal["upper", "lower"] | None


_ALIASES: Final = {
    "error": "error",
    "error_code": "error_code",
    "error_message": "error_message",
    "errors": "error",
    "error_reason": "error_message",
}


def error_code_text(code: str | None, *, default: str = "ranking_failed") -> str:
    """Return ``code`` as a lower-case snake_case error code (``default`` when empty).

    Examples
    --------
    >>> error_code_text("VIN-Decode Failed"), error_code_text(None)
    ('vin_decode_failed', 'ranking_failed')
    """
    cleaned = re.sub(r"[^a-z0-9]+", "_", (code or "").strip().lower()).strip("_")
    if not cleaned or not cleaned[0].isalpha():
        return default
    return cleaned


def _error_code_expr(expr: pl.Expr) -> pl.Expr:
    cleaned = expr.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "_").str.strip_chars("_")
    return pl.when(cleaned.str.contains(r"^[a-z]")).then(cleaned)


def _clean(column: pl.Series, case: _Case = None) -> pl.Series:
    """Strip surrounding blanks, make empty text null and apply ``case``, to every value.

    Every value is treated alike (no shortcut decided by its neighbours), so a file parsed in
    blocks gives what it gives whole.
    """
    cleaned = column.str.strip_chars()
    if case == "upper":
        cleaned = cleaned.str.to_uppercase()
    elif case == "lower":
        cleaned = cleaned.str.to_lowercase()
    if (cleaned.str.len_bytes() == 0).any():
        cleaned = cleaned.replace("", None)
    return cleaned


def _text(raw: pl.DataFrame, name: str, *, case: _Case = None) -> pl.Series:
    """Return a column :func:`_clean`-ed; all null when the file has no such column."""
    if name not in raw.columns:
        return pl.repeat(None, raw.height, dtype=pl.String, eager=True).alias(name)
    return _clean(raw.get_column(name), case)


def _vins(raw: pl.DataFrame) -> pl.Series:
    """Return the VIN column upper-cased, each run of one VIN stored once (when runs are long).

    A result file lists a VIN's rows together: a view of one copy per run takes 16 bytes a row
    instead of 16 plus the 17 characters, and only one value per run needs cleaning.
    """
    column = raw.get_column("vin")
    runs = column.rle_id()
    if column.is_empty() or runs[-1] * _MIN_RUN >= column.len():
        return _clean(column, "upper")
    values = _clean(column.rle().struct.field("value"), "upper").to_list()
    return pl.Series("vin", values, dtype=pl.String).gather(runs)


def _number(raw: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Series:
    """Return a column as numbers (whole-number types also accept ``"20000.0"``), else null."""
    if name not in raw.columns:
        return pl.repeat(None, raw.height, dtype=dtype, eager=True).alias(name)
    column = raw.get_column(name)
    fast = column.cast(dtype, strict=False)
    if fast.null_count() == column.null_count():
        return fast
    text = _text(raw, name)
    as_float = text.cast(pl.Float64, strict=False)
    if dtype == pl.Float64:
        return as_float
    whole = as_float.to_frame().select(
        pl.when(pl.col(name) == pl.col(name).floor()).then(pl.col(name))
    )
    return text.cast(dtype, strict=False).fill_null(whole.to_series().cast(dtype, strict=False))


def _gunzip(handle: BinaryIO, piece_bytes: int) -> Iterator[bytes]:
    """Yield the decompressed bytes of a gzip file (every member) in pieces of ``piece_bytes``.

    Raises
    ------
    EOFError
        When the file ends inside a gzip member.
    """
    inflate = zlib.decompressobj(31)
    pending = b""
    while True:
        if not pending:
            pending = handle.read(_READ_BLOCK)
            if not pending:
                if inflate.eof:
                    return
                raise EOFError("the gzip file is cut off before its end")
        if inflate.eof:  # another member follows
            inflate = zlib.decompressobj(31)
        piece = inflate.decompress(pending, piece_bytes)
        pending = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
        if piece:
            yield piece


def _read_ahead(items: Iterator[bytes]) -> Generator[bytes]:
    """Yield ``items`` while a worker thread produces the next one.

    Decompression (zlib releases the GIL) then runs beside the parse of the block before.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mm-gunzip") as pool:
        following = pool.submit(next, items, b"")
        while item := following.result():
            following = pool.submit(next, items, b"")
            yield item


def _header_end(text: bytes) -> int:
    """Index just past the newline that ends the first record of ``text`` (0: none yet)."""
    end = text.find(b"\n")
    while end >= 0 and text.count(b'"', 0, end) % 2 == 1:
        end = text.find(b"\n", end + 1)
    return end + 1


def _records_end(text: bytes, *, quoted: bool) -> int:
    """Index just past the last newline of ``text`` that ends a record (0: none).

    A newline ends a record when the quotes before it are balanced (a doubled quote inside a
    quoted value counts twice); ``quoted`` says that a quoted value is open where ``text``
    starts.
    """
    end = text.rfind(b"\n")
    odd = end >= 0 and (text.count(b'"', 0, end) % 2 == 1) != quoted
    while odd:
        previous = text.rfind(b"\n", 0, end)
        if previous < 0:
            return 0
        odd ^= text.count(b'"', previous, end) % 2 == 1
        end = previous
    return end + 1


def _csv_blocks(pieces: Iterable[bytes], block_bytes: int) -> Iterator[bytes]:
    """Regroup the pieces of a CSV text into blocks of whole records, each led by the header.

    A block holds ``block_bytes`` of records or a little more (up to the end of the record
    running on in the piece that reaches that size), so the text is never held whole; each
    block is copied once, and parses on its own as its rows would within the whole text.
    """
    header = b""
    parts: list[bytes] = []
    size = 0
    quoted = False  # a quoted value is open at the end of parts
    yielded = False
    for piece in pieces:
        text = piece
        if not header:  # until the header line is whole
            text = b"".join((*parts, piece))
            cut = _header_end(text)
            parts = [text] if not cut else []
            if not cut:
                continue
            header, text = text[:cut], text[cut:]
        parts.append(text)
        size += len(text)
        cut = _records_end(text, quoted=quoted) if size >= block_bytes else 0
        quoted ^= text.count(b'"') % 2 == 1
        if cut:
            block = b"".join((header, *parts[:-1], memoryview(text)[:cut]))
            rest = text[cut:]
            parts, size, quoted = [rest], len(rest), rest.count(b'"') % 2 == 1
            yield block
            yielded = True
    rest = b"".join(parts)
    if rest or not yielded:
        yield header + rest


def _number_columns(block: bytes) -> dict[str, pl.DataType]:
    """Map the header's number columns (as the file spells them) to their types."""
    header = pl.read_csv(block[: _header_end(block) or len(block)], infer_schema=False, n_rows=0)
    return {
        name: _NUMBERS[column_key(name)] for name in header.columns if column_key(name) in _NUMBERS
    }


def _read_block(block: bytes, numbers: dict[str, pl.DataType]) -> pl.DataFrame:
    """Read a block: number columns typed by the CSV reader when every value is a plain number.

    Otherwise (``"20000.0"`` for a whole number, blanks around a value, a negative rank) the
    block is read as text and :func:`_number` applies the tolerant rules; both readings give
    the same values, since a value the CSV reader takes is one the text rules take alike.
    """
    if numbers:
        try:
            return pl.read_csv(block, infer_schema=False, schema_overrides=numbers)
        except pl.exceptions.ComputeError:
            pass
    return pl.read_csv(block, infer_schema=False)


def _result_columns(raw: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Rename a raw block's columns to their canonical names; refuse a file lacking some."""
    raw = raw.rename({name: column_key(name) for name in raw.columns})
    raw = raw.rename({name: _ALIASES[name] for name in raw.columns if name in _ALIASES})
    lacking = [name for name in ("vin", "source", "vin_rank") if name not in raw.columns]
    if lacking:
        raise ValueError(
            f"{path.name} is not a MarketMatch result file: no {', '.join(lacking)} column "
            f"(columns: {', '.join(raw.columns)})"
        )
    return raw


def _typed(raw: pl.DataFrame) -> pl.DataFrame:
    """Turn a block of raw text columns into typed result rows (the row rules of the parse)."""
    zip_code = _text(raw, "zip")
    if (zip_code.str.len_bytes() < 5).any():
        zip_code = zip_code.str.zfill(5)
    typed = pl.DataFrame(
        [
            _vins(raw),
            _number(raw, "price", pl.Int64()),
            _number(raw, "miles", pl.Int64()),
            _text(raw, "source", case="lower"),
            zip_code,
            redact_series(_text(raw, "mc_location_id")),
            _number(raw, "vin_score", pl.Float64()),
            _number(raw, "dealer_ymm_score", pl.Float64()),
            _number(raw, "vin_rank", pl.UInt32()),
        ]
    )
    scored = ("vin_score", "dealer_ymm_score", "vin_rank")
    if not any(typed.get_column(name).has_nulls() for name in scored):  # every row ranked
        return typed.with_columns(
            pl.lit(None, pl.String).alias("error_code"),
            pl.lit(None, pl.String).alias("error_message"),
        )
    error_text = pl.col("error")
    split_code = error_text.str.extract(r"^([A-Za-z][A-Za-z0-9_.\-]*)\s*(?::|$)", 1)
    errors = typed.with_columns(
        redact_series(_text(raw, "error_code"), replacement="redacted"),
        *(redact_series(_text(raw, name)) for name in ("error_message", "error")),
    ).with_columns(
        pl.coalesce("error_code", split_code).alias("error_code"),
        pl.coalesce(
            "error_message",
            pl.when(split_code.is_not_null())
            .then(error_text.str.replace(r"^[^:]*:?\s*", "").replace("", None))
            .otherwise(error_text),
        ).alias("error_message"),
    )
    ranked = pl.all_horizontal(pl.col(name).is_not_null() for name in scored)
    return (
        errors.with_columns(
            pl.when(ranked)
            .then(None)
            .otherwise(_error_code_expr(pl.col("error_code")).fill_null("ranking_failed"))
            .alias("error_code"),
            pl.when(ranked)
            .then(None)
            .otherwise(
                pl.col("error_message").fill_null(
                    pl.concat_str(
                        pl.lit("the batch result has no rank or score for this row: "),
                        pl.col("error_code").fill_null("no error given"),
                    )
                )
            )
            .alias("error_message"),
            *(pl.when(ranked).then(pl.col(name)).otherwise(None).alias(name) for name in scored),
        )
        .select(RESULT_SCHEMA.names())
        .cast(RESULT_SCHEMA)
    )


def read_result_file(path: Path, *, block_bytes: int = _PARSE_BLOCK) -> pl.DataFrame:
    r"""Parse a batch result ``.csv.gz`` into a typed frame.

    Tolerant of column order, header case, a BOM, quoting and extra columns. A row has failed
    when its ``vin_rank`` is empty (or does not parse), whatever else it carries; its
    ``error_code``/``error_message`` come from ``error_code``/``error_message`` columns, or from
    an ``error`` column (``"code"``, ``"code: message"`` or free text). Empty or blank text is
    null.

    The file streams: it is decompressed and parsed in blocks of whole records, each turned
    into typed columns at once, so memory holds the typed frame plus about one block (a plain,
    uncompressed CSV file is read the same way).

    Parameters
    ----------
    path
        The (verified) result file.
    block_bytes
        About how many decompressed bytes to parse at a time.

    Returns
    -------
    pl.DataFrame
        The columns :data:`RESULT_SCHEMA`: ``vin``/``source``/``zip``/``mc_location_id``/
        ``error_code``/``error_message`` String, ``price``/``miles`` Int64,
        ``vin_score``/``dealer_ymm_score`` Float64, ``vin_rank`` UInt32. Ranked rows have a
        rank and both scores and no error code; every other row has an error code. The rows
        are in file order.

    Raises
    ------
    ValueError
        When the file is empty or lacks the identifying columns (``vin``, ``source``,
        ``vin_rank``).
    EOFError
        When a gzip file is cut off before its end.

    Examples
    --------
    >>> import gzip, tempfile
    >>> text = "vin,source,zip,price,miles,vin_score,dealer_ymm_score,vin_rank,error\n"
    >>> text += "WP1BE2AY5PDA28064,a.com,30907,20000,3000,1500.5,900,1,\n"
    >>> text += "WP1BE2AY5PDA28064,b.com,30907,20000,3000,,,,dealer_not_found: unknown\n"
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "result.csv.gz"
    ...     _ = path.write_bytes(gzip.compress(text.encode()))
    ...     frame = read_result_file(path)
    >>> frame.select("source", "vin_rank", "error_code", "error_message").rows()
    [('a.com', 1, None, None), ('b.com', None, 'dealer_not_found', 'unknown')]
    """
    typed = list(result_blocks(path, block_bytes))
    return pl.concat(typed, rechunk=False)


def result_blocks(path: Path, block_bytes: int = _PARSE_BLOCK) -> Generator[pl.DataFrame]:
    """Yield the typed blocks of a result file, in file order (see :func:`read_result_file`)."""
    if block_bytes <= 0:
        raise ValueError("block_bytes must be positive")
    piece_bytes = min(block_bytes, _PIECE_BYTES)
    empty = True
    with path.open("rb") as handle:
        gzipped = handle.read(2) == _GZIP_MAGIC
        handle.seek(0)
        pieces = (
            _gunzip(handle, piece_bytes)
            if gzipped
            else iter(functools.partial(handle.read, piece_bytes), b"")
        )
        with contextlib.closing(_read_ahead(_csv_blocks(pieces, block_bytes))) as blocks:
            numbers: dict[str, pl.DataType] | None = None
            for block in blocks:
                empty = False
                if numbers is None:
                    numbers = _number_columns(block)
                yield _typed(_result_columns(_read_block(block, numbers), path))
    if empty:
        raise ValueError(f"{path.name} is not a MarketMatch result file: it is empty")
