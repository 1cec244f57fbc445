"""Parquet working files of the batch routes: result parts, appended outputs, VIN buckets.

- :func:`write_result_parquet` parses a result file straight into Parquet parts (ranked and
  failed rows apart), keeping about one part in memory;
- :class:`ParquetAppender` writes one Parquet file a frame at a time (the outputs of
  ``rank_dealers(output=...)``), :func:`parquet_rows` counts rows from the footers;
- :func:`spill_by_vin` streams a frame into Parquet buckets by a hash of its VIN, so that
  everything done per VIN can be done one bucket at a time.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import polars as pl
import pyarrow.parquet as pq

from mm_pipeline._batch._results import result_blocks

__all__ = [
    "BUCKET",
    "BUCKET_ROWS",
    "INPUT_ROW",
    "Buckets",
    "ParquetAppender",
    "ResultParquet",
    "bucket_expr",
    "parquet_rows",
    "spill_by_vin",
    "write_result_parquet",
]

BUCKET: Final = "_bucket"
"""The column holding a row's VIN bucket."""
BUCKET_ROWS: Final = 250_000
"""Input rows per VIN bucket (about): what the bucketed route holds in memory at a time."""
INPUT_ROW: Final = "_mm_input_row"
"""The spilled input's column holding each row's input number (0-based)."""

_PARQUET_COMPRESSION: Final = "lz4"  # fast to write and read; the files are working data
_PART_ROWS: Final = 250_000
_SORTED_ROW_GROUP: Final = 16_384
_SPILL_BATCH: Final = 16_384
"""Rows per streamed batch: the streaming engine reads ahead by several batches, so small ones
keep its memory flat in the input size (131,072-row batches grew it with the file)."""


@dataclass(frozen=True, kw_only=True)
class ResultParquet:
    """Where :func:`write_result_parquet` put a result file's rows, and how many."""

    ranked: tuple[Path, ...]
    failed: tuple[Path, ...]
    ranked_rows: int
    failed_rows: int


class _ParquetParts:
    """Frames written as Parquet part files of about ``_PART_ROWS`` rows (polars' writer).

    Polars writes a typed frame about twice as fast as converting it for a ``pyarrow``
    writer; the few frames gathered before each part are all that is held.
    """

    def __init__(self, directory: Path, stem: str, *, sort_by: str | None = None) -> None:
        self._directory = directory
        self._stem = stem
        self._sort_by = sort_by
        self._part_rows = _PART_ROWS
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self.paths: list[Path] = []
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height:
            self._pending.append(frame)
            self._pending_rows += frame.height
            self.rows += frame.height
            if self._pending_rows >= self._part_rows:
                self.flush()

    def flush(self) -> None:
        if self._pending:
            path = self._directory / f"{self._stem}-{len(self.paths) + 1:04d}.parquet"
            part = pl.concat(self._pending)
            if self._sort_by is None:
                part.write_parquet(path, compression=_PARQUET_COMPRESSION)
            else:  # small row groups whose statistics let a filter on the column skip most
                part.sort(self._sort_by, maintain_order=True).write_parquet(
                    path, compression=_PARQUET_COMPRESSION, row_group_size=_SORTED_ROW_GROUP
                )
            self.paths.append(path)
            self._pending, self._pending_rows = [], 0

    def remove(self) -> None:
        self._pending = []
        for path in self.paths:
            path.unlink(missing_ok=True)


def write_result_parquet(
    path: Path,
    directory: Path,
    *,
    stem: str = "result",
    extra: Mapping[str, pl.Expr] | None = None,
    sort_by: str | None = None,
    block_bytes: int | None = None,
) -> ResultParquet:
    r"""Parse a batch result ``.csv.gz`` straight into Parquet files, ranked and failed apart.

    The same parse as :func:`read_result_file`, but the typed blocks are written out as
    they come, in part files of about 250,000 rows, so memory holds about one part whatever
    the file's size.

    Parameters
    ----------
    path
        The (verified) result file.
    directory
        Where to write ``<stem>-ranked-NNNN.parquet`` and ``<stem>-failed-NNNN.parquet``
        (created if missing; none when there is no such row).
    stem
        The file name prefix.
    extra
        Columns to add to every row (name -> expression over the parsed block, such as
        ``{"_job": pl.lit(job_id)}``).
    sort_by
        A column to sort each part by (stably), written in small row groups: a scan that
        filters on one of its values then reads little more than those rows.
    block_bytes
        About how many decompressed bytes to parse at a time (default: as
        :func:`~mm_pipeline._batch._results.read_result_file`).

    Returns
    -------
    ResultParquet
        The part files and their row counts: a row is ranked when it has no ``error_code``.

    Raises
    ------
    ValueError, EOFError
        As :func:`read_result_file`; the part files written are then removed.

    Examples
    --------
    >>> import gzip, tempfile
    >>> text = "vin,source,zip,price,miles,vin_score,dealer_ymm_score,vin_rank,error\n"
    >>> text += "WP1BE2AY5PDA28064,a.com,30907,20000,3000,1500.5,900,1,\n"
    >>> text += "WP1BE2AY5PDA28064,b.com,30907,20000,3000,,,,dealer_not_found\n"
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "result.csv.gz"
    ...     _ = path.write_bytes(gzip.compress(text.encode()))
    ...     out = write_result_parquet(path, Path(tmp))
    ...     failed = pl.read_parquet(out.failed)
    >>> out.ranked_rows, failed["error_code"].to_list()
    (1, ['dealer_not_found'])
    """
    columns = dict(extra or {})
    directory.mkdir(parents=True, exist_ok=True)
    ranked = _ParquetParts(directory, f"{stem}-ranked", sort_by=sort_by)
    failed = _ParquetParts(directory, f"{stem}-failed", sort_by=sort_by)
    try:
        blocks = result_blocks(path) if block_bytes is None else result_blocks(path, block_bytes)
        for block in blocks:
            typed = block.with_columns(**columns)
            is_failed = typed.get_column("error_code").is_not_null()
            if is_failed.any():
                ranked.write(typed.filter(~is_failed))
                failed.write(typed.filter(is_failed))
            else:
                ranked.write(typed)
        ranked.flush()
        failed.flush()
    except BaseException:
        ranked.remove()
        failed.remove()
        raise
    return ResultParquet(
        ranked=tuple(ranked.paths),
        failed=tuple(failed.paths),
        ranked_rows=ranked.rows,
        failed_rows=failed.rows,
    )


def parquet_rows(*paths: Path) -> int:
    """Return the rows in Parquet files, from their footers (no data is read).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "x.parquet"
    ...     pl.DataFrame({"a": [1, 2, 3]}).write_parquet(path)
    ...     parquet_rows(path, path)
    6
    """
    return sum(pq.ParquetFile(path).metadata.num_rows for path in paths)


class ParquetAppender:
    """A Parquet file written a frame at a time, in a fixed schema (also when left empty)."""

    def __init__(self, path: Path, schema: pl.Schema) -> None:
        self.path = path
        self._arrow = pl.DataFrame(schema=schema).to_arrow().schema
        self._schema = schema
        self._writer = pq.ParquetWriter(path, self._arrow, compression=_PARQUET_COMPRESSION)
        self._open = True
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        """Append ``frame`` (its columns are selected and cast to the schema)."""
        if frame.height:
            typed = frame.select(self._schema.names()).cast(self._schema)
            self._writer.write_table(typed.to_arrow().cast(self._arrow))
            self.rows += frame.height

    def close(self) -> None:
        """Finish the file (its footer); closing twice is harmless."""
        if self._open:
            self._open = False
            self._writer.close()


def bucket_expr(vin: pl.Expr, buckets: int) -> pl.Expr:
    """Return the bucket of a VIN: a hash of its trimmed, upper-cased text, modulo ``buckets``.

    Coarser than the normaliser's rules (any two VINs it makes equal share a bucket), and
    the same for an input VIN and the parsed result's VIN.
    """
    key = vin.cast(pl.String, strict=False).str.strip_chars().str.to_uppercase()
    return (key.hash(seed=0) % buckets).cast(pl.UInt32).alias(BUCKET)


@dataclass(frozen=True, kw_only=True)
class Buckets:
    """The spilled input: ``count`` Parquet files under ``directory``, one per bucket."""

    directory: Path
    count: int
    rows: int

    def path(self, index: int) -> Path:
        """Return the Parquet file of bucket ``index`` (empty when no VIN hashed there)."""
        return _bucket_path(self.directory, index)


def _bucket_path(directory: Path, index: int) -> Path:
    return directory / f"bucket-{index:05d}.parquet"


def _partition(lazy: pl.LazyFrame, directory: Path, key: pl.Expr, count: int) -> None:
    """Stream ``lazy`` into ``count`` Parquet files, each row to the file ``key`` names.

    Each batch is cut by bucket and each piece appended to its file at once (a row group of
    its own), so memory holds one batch whatever the number of buckets; a partitioned sink
    would buffer a row group per bucket.
    """
    directory.mkdir(parents=True, exist_ok=True)
    schema = pl.Schema({n: t for n, t in lazy.collect_schema().items() if n != BUCKET})
    outs = [ParquetAppender(_bucket_path(directory, index), schema) for index in range(count)]
    try:
        batches = lazy.with_columns(key.alias(BUCKET)).collect_batches(
            chunk_size=_SPILL_BATCH, engine="streaming"
        )
        for batch in batches:
            for (index,), piece in batch.partition_by(BUCKET, as_dict=True).items():
                outs[cast("int", index)].write(piece)
    finally:
        for out in outs:
            out.close()


def _row_count(lazy: pl.LazyFrame) -> int:
    count: int = lazy.select(pl.len()).collect(engine="streaming").item()
    return count


def spill_by_vin(
    pairs: pl.DataFrame | pl.LazyFrame,
    directory: Path,
    *,
    bucket_rows: int = BUCKET_ROWS,
    rows: int | None = None,
) -> Buckets:
    """Stream ``pairs`` to Parquet in VIN buckets of about ``bucket_rows`` rows (one pass).

    Each row keeps its input number (0-based), so messages and the ``_row`` order refer to
    the input.
    """
    lazy = pairs.lazy()
    names = lazy.collect_schema().names()
    if "vin" not in names:
        return Buckets(directory=directory, count=0, rows=0)  # prepare names what is missing
    rows = _row_count(lazy) if rows is None else rows
    count = max(1, math.ceil(rows / bucket_rows))
    shutil.rmtree(directory, ignore_errors=True)
    _partition(lazy.with_row_index(INPUT_ROW), directory, bucket_expr(pl.col("vin"), count), count)
    return Buckets(directory=directory, count=count, rows=rows)
