"""Batch files: write frames as ``.csv.gz`` for upload, and parse result files.

Writing streams: the frame is serialised in slices (polars' CSV writer, minimal quoting, the
published header ``vin,price,miles,source,zip``) into one zlib gzip stream that hashes (SHA-256)
and writes each compressed block as it is produced; no second full copy of the data is made.
gzip level 1 keeps a million pairs around half a second (pyarrow's ``CompressedOutputStream``
offers no level and compresses at level 9, twenty times slower). The output is deterministic
(gzip header without a timestamp), so the same frame always gives the same bytes and hash, which
is what makes batch submissions idempotent across reruns.

When the compressed file would exceed a cap, the frame is split into several files by VIN (a
VIN's rows are never divided, since the API ranks the dealers of each VIN across its rows): the
size per row is estimated from a first slice, VINs are assigned to files in order of first
appearance, and every file is checked against the cap after writing (with a smaller target and
a rewrite when one is over).

Parsing streams too: polars and pyarrow inflate a whole gzip file before parsing it, which for a
million rows peaks at several times the typed result. :func:`read_result_file` instead inflates
the file in a worker thread (zlib releases the GIL) and regroups the text into blocks of about
2 MB of whole records (quote-aware, each led by the header line); each block is parsed as text
and typed at once, so memory holds the typed frame plus about one block. Every rule applies to
each value alone, so any block size gives the same frame.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import hashlib
import math
import re
import zlib
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Final, Literal, cast

import polars as pl

from mm_pipeline._exceptions import InvalidInputError
from mm_pipeline._frames import FAILED_SCHEMA
from mm_pipeline._redact import redact_series

__all__ = [
    "BATCH_COLUMNS",
    "DEFAULT_MAX_FILE_BYTES",
    "RESULT_SCHEMA",
    "BatchFile",
    "check_upload_header",
    "error_code_text",
    "read_result_file",
    "sha256_file",
    "write_batch_files",
]

BATCH_COLUMNS: Final = ("vin", "price", "miles", "source", "zip")
"""The columns of an uploaded batch file, in order (the published input format)."""

DEFAULT_MAX_FILE_BYTES: Final = 100 * 1024 * 1024
"""The API's upload cap (100 MB); larger work is split into several jobs."""

RESULT_SCHEMA: Final = FAILED_SCHEMA
"""The columns of :func:`read_result_file`'s frame (the failed schema; scores set when ranked)."""

_SLICE_ROWS: Final = 131_072
_SAMPLE_ROWS: Final = 20_000
_FILL: Final = 0.92  # target fraction of the cap when splitting (the estimate is not exact)
_GZIP_LEVEL: Final = 1
_READ_BLOCK: Final = 1 << 20
_PIECE_BYTES: Final = 1 << 19  # most decompressed bytes per zlib call
_PARSE_BLOCK: Final = 2 << 20  # decompressed bytes parsed at a time
_GZIP_MAGIC: Final = b"\x1f\x8b"

_MIN_RUN: Final = 4  # rows per VIN run, on average, from which _vins shares the text
_Case = Literal["upper", "lower"] | None


@dataclass(frozen=True, kw_only=True)
class BatchFile:
    """One written upload file.

    Parameters
    ----------
    path
        Where the ``.csv.gz`` file is.
    sha256
        Hex SHA-256 of the file's bytes (computed while writing).
    size
        The file's size in bytes.
    rows
        Data rows in the file.
    vins
        The distinct VINs in this file when the frame was split; ``None`` when the file holds
        every row of the frame.
    """

    path: Path
    sha256: str
    size: int
    rows: int
    vins: pl.Series | None = None


class _GzipHashSink:
    """A binary file-like sink: gzip-compress, hash and write what it is given."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self._zip = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip, mtime 0
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._emit(self._zip.compress(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to do: blocks are written as zlib emits them."""

    def _emit(self, block: bytes) -> None:
        if block:
            self._hash.update(block)
            self.size += len(block)
            self._file.write(block)

    def finish(self) -> str:
        self._emit(self._zip.flush())
        self._file.close()
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._file.close()


def _write_one(frame: pl.DataFrame, path: Path, *, vins: pl.Series | None) -> BatchFile:
    sink = _GzipHashSink(path)
    target = cast("IO[bytes]", sink)  # polars needs only write()
    try:
        if frame.height == 0:
            frame.write_csv(target)
        for offset in range(0, frame.height, _SLICE_ROWS):
            frame.slice(offset, _SLICE_ROWS).write_csv(target, include_header=offset == 0)
        digest = sink.finish()
    except BaseException:
        sink.abort()
        path.unlink(missing_ok=True)
        raise
    return BatchFile(path=path, sha256=digest, size=sink.size, rows=frame.height, vins=vins)


def _compressed_bytes_per_row(frame: pl.DataFrame) -> float:
    sample = frame.head(_SAMPLE_ROWS)
    text = sample.write_csv(include_header=False).encode()
    packed = zlib.compress(text, _GZIP_LEVEL)
    return max(len(packed), 1) / max(sample.height, 1)


def _batch_frame(pairs: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in BATCH_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(
            f"a batch file needs the columns {', '.join(BATCH_COLUMNS)}; missing: "
            f"{', '.join(missing)}"
        )
    frame = pairs.select(
        pl.col("vin").cast(pl.String),
        pl.col("price").cast(pl.Int64),
        pl.col("miles").cast(pl.Int64),
        pl.col("source").cast(pl.String),
        pl.col("zip").cast(pl.String),
    )
    null_counts = frame.null_count().row(0, named=True)
    nulls = {name: count for name, count in null_counts.items() if count}
    if nulls:
        described = ", ".join(f"{name} ({count} rows)" for name, count in nulls.items())
        raise ValueError(f"a batch file cannot hold empty values; nulls in {described}")
    return frame


def write_batch_files(
    pairs: pl.DataFrame,
    directory: Path,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    stem: str = "batch",
) -> list[BatchFile]:
    """Write pairs as one or more gzip CSV upload files, split by VIN under a size cap.

    Parameters
    ----------
    pairs
        A frame with at least ``vin``, ``price``, ``miles``, ``source`` and ``zip`` (no nulls);
        other columns are not written.
    directory
        Where to write ``<stem>-<n>.csv.gz`` (created if missing).
    max_file_bytes
        The largest compressed file allowed; more rows are split into several files, keeping
        every VIN's rows in one file.
    stem
        The file name prefix.

    Returns
    -------
    list[BatchFile]
        The files, in order, with their hashes.

    Raises
    ------
    ValueError
        When columns are missing or hold nulls, or one VIN's rows alone exceed the cap.

    Examples
    --------
    >>> import tempfile
    >>> pairs = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000],
    ...                       "source": ["mbofaugusta.com"], "zip": ["30907"]})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     [f.rows for f in write_batch_files(pairs, Path(tmp))]
    [1]
    """
    if max_file_bytes <= 0:
        raise ValueError("max_file_bytes must be positive")
    frame = _batch_frame(pairs)
    directory.mkdir(parents=True, exist_ok=True)
    per_row = _compressed_bytes_per_row(frame)
    if per_row * frame.height <= max_file_bytes * _FILL:
        single = _write_one(frame, directory / f"{stem}-1.csv.gz", vins=None)
        if single.size <= max_file_bytes:
            return [single]
        single.path.unlink()
        per_row = single.size / max(single.rows, 1)
    for _ in range(4):
        files = _write_split(
            frame, directory, stem, target_rows=_target_rows(per_row, max_file_bytes)
        )
        over = [f for f in files if f.size > max_file_bytes]
        if not over:
            return files
        for f in files:
            f.path.unlink()
        if any(f.vins is not None and f.vins.len() == 1 for f in over):
            raise ValueError(
                f"the rows of one VIN alone exceed the file cap of {max_file_bytes} bytes; "
                "a VIN's dealers cannot be divided between jobs"
            )
        per_row = max(per_row * 1.25, *(f.size / max(f.rows, 1) for f in over))
    raise ValueError(f"could not split the frame into files under {max_file_bytes} bytes")


def _target_rows(per_row: float, max_file_bytes: int) -> int:
    return max(1, math.floor(max_file_bytes * _FILL / per_row))


def _write_split(
    frame: pl.DataFrame, directory: Path, stem: str, *, target_rows: int
) -> list[BatchFile]:
    """Assign VINs (in order of first appearance) to files of about ``target_rows`` rows."""
    counts = frame.group_by("vin", maintain_order=True).len()
    part: list[int] = []
    current, filled = 0, 0
    for count in counts["len"]:
        if filled and filled + count > target_rows:
            current, filled = current + 1, 0
        part.append(current)
        filled += count
    assignment = counts.select("vin", pl.Series("part", part, dtype=pl.UInt32))
    parts = frame.select("vin").join(assignment, on="vin", how="left", maintain_order="left")[
        "part"
    ]
    files = []
    for index in range(current + 1):
        chosen = frame.filter(parts == index)
        vins = assignment.filter(pl.col("part") == index)["vin"]
        files.append(_write_one(chosen, directory / f"{stem}-{index + 1}.csv.gz", vins=vins))
    return files


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes, read in blocks.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     sha256_file(Path(f.name))[:12]
    'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


_ALIASES: Final = {
    "error": "error",
    "error_code": "error_code",
    "error_message": "error_message",
    "errors": "error",
    "error_reason": "error_message",
}


def check_upload_header(path: Path) -> None:
    """Check, before any upload, that ``path`` is a gzip CSV whose header has the batch columns.

    The API accepts any ``.csv.gz`` and fails the job later when columns are missing (and a
    resubmission of the same file makes a second failed job), so this reads the first line only.

    Raises
    ------
    InvalidInputError
        When the file is not gzip-compressed CSV text, or its header lacks a column of
        :data:`BATCH_COLUMNS` (naming the missing and the present columns).
    """
    try:
        with gzip.open(path, "rb") as handle:
            first = handle.readline(1 << 16).decode("utf-8-sig")
        header = next(csv.reader([first]), [])
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(
            f"{path.name} is not gzip-compressed CSV text ({exc}); the batch API takes "
            f".csv.gz files with the columns {', '.join(BATCH_COLUMNS)}"
        ) from None
    present = [_column_key(name) for name in header]
    missing = [name for name in BATCH_COLUMNS if name not in present]
    if missing:
        raise InvalidInputError(
            f"{path.name} lacks the batch column(s) {', '.join(missing)}: its header has "
            f"{', '.join(header) or '(nothing)'}; the batch API needs {', '.join(BATCH_COLUMNS)}. "
            "Nothing was uploaded."
        )


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


def _column_key(name: str) -> str:
    return name.replace("\ufeff", "").strip().strip('"').lower()


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


def _result_columns(raw: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Rename a raw block's columns to their canonical names; refuse a file lacking some."""
    raw = raw.rename({name: _column_key(name) for name in raw.columns})
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
    if block_bytes <= 0:
        raise ValueError("block_bytes must be positive")
    piece_bytes = min(block_bytes, _PIECE_BYTES)
    with path.open("rb") as handle:
        gzipped = handle.read(2) == _GZIP_MAGIC
        handle.seek(0)
        pieces = (
            _gunzip(handle, piece_bytes)
            if gzipped
            else iter(functools.partial(handle.read, piece_bytes), b"")
        )
        with contextlib.closing(_read_ahead(_csv_blocks(pieces, block_bytes))) as blocks:
            typed = [
                _typed(_result_columns(pl.read_csv(block, infer_schema=False), path))
                for block in blocks
            ]
    if not typed:
        raise ValueError(f"{path.name} is not a MarketMatch result file: it is empty")
    return pl.concat(typed, rechunk=False)
