"""Rank a batch upload in bounded memory: VIN buckets spilled to Parquet, ranked one at a time.

The published text does not say that a file lists a VIN's rows together, and ranks run over
each VIN's rows across the whole file, so a file cannot simply be ranked block by block. A file
small enough (at most ``bucket_bytes`` of CSV text) is ranked whole, its result rows in input
order. A larger one takes two passes:

1. the CSV streams (polars' streaming engine) into ``ceil(size / bucket_bytes)`` Parquet
   buckets by a hash of the ``vin`` text, so every row of a VIN lands in one bucket and each
   bucket holds about ``bucket_bytes`` of text;
2. each bucket is read, ranked whole (``rank``) and appended to the gzip result file (one gzip
   member per bucket, a valid gzip file), then dropped.

Memory then holds one bucket and its result, whatever the size of the file; result rows come
bucket by bucket (input order within a bucket; the published text fixes no row order).
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import polars as pl

__all__ = ["DEFAULT_BUCKET_BYTES", "ERROR_COLUMN", "CsvReadError", "RankedFile", "rank_csv_file"]

DEFAULT_BUCKET_BYTES: Final = 64 * 1024 * 1024
"""CSV bytes ranked at a time (about a million rows of the published columns)."""

ERROR_COLUMN: Final = "error"
"""The result column that holds why a row could not be ranked (empty when it was)."""

_BUCKET: Final = "_mm_bucket"
_SPILL_ROW_GROUP: Final = 16_384  # the sink buffers one per bucket: small keeps memory flat

RankFrame = Callable[[pl.DataFrame, Callable[[float], None]], pl.DataFrame]


class CsvReadError(ValueError):
    """The file could not be read as CSV (its cause is the reader's error)."""


@dataclass(frozen=True, slots=True)
class RankedFile:
    """What ranking a file produced: the published counts and how it was cut."""

    successful_count: int
    """Distinct ``vin`` values among ranked rows."""
    failed_count: int
    """Rows with an error."""
    buckets: int
    """1 when the file was ranked whole."""


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    try:
        yield
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise CsvReadError(str(exc)) from exc


def _spill(csv_path: Path, directory: Path, buckets: int) -> list[Path]:
    """Stream *csv_path* into *buckets* Parquet buckets by VIN hash; return the bucket folders."""
    bucket = (pl.col("vin").hash() % buckets).cast(pl.UInt32).alias(_BUCKET)
    with _reading():
        pl.scan_csv(csv_path, infer_schema=False).with_columns(bucket).sink_parquet(
            pl.PartitionBy(directory, key=_BUCKET, include_key=False),
            mkdir=True,
            engine="streaming",
            row_group_size=_SPILL_ROW_GROUP,
        )
    return [directory / f"{_BUCKET}={index}" for index in range(buckets)]


def _write_result(result: pl.DataFrame, sink: IO[bytes], *, header: bool) -> tuple[int, int]:
    errors = result.get_column(ERROR_COLUMN).is_not_null()
    failed = int(errors.sum())
    successful = result.filter(~errors).get_column("vin").n_unique()
    result.write_csv(sink, include_header=header, compression="gzip", compression_level=1)
    return successful, failed


def rank_csv_file(
    csv_path: Path,
    target: Path,
    *,
    rank: RankFrame,
    progress: Callable[[float], None],
    columns: tuple[str, ...],
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> RankedFile:
    """Rank the plain CSV *csv_path* (every column text) into the gzip CSV *target*.

    Parameters
    ----------
    csv_path
        The decompressed upload (its header already checked).
    target
        The result file to write (``.csv.gz``).
    rank
        Ranks a frame of whole VINs (``Market.rank_batch``); its result has an ``error`` column.
    progress
        Called with the fraction done (0..1); it may raise to cancel.
    columns
        The file's columns, in order (every bucket's frame is given these).
    bucket_bytes
        Most CSV bytes ranked at once (about; the hash spreads VINs evenly).

    Returns
    -------
    RankedFile
        The counts of the published status and the number of buckets.

    Raises
    ------
    CsvReadError
        When the text does not read as CSV.
    """
    buckets = max(1, math.ceil(csv_path.stat().st_size / bucket_bytes))
    if buckets == 1:
        with _reading():
            frame = pl.read_csv(csv_path, infer_schema=False)
        result = rank(frame, progress)
        with target.open("wb") as sink:
            successful, failed = _write_result(result, sink, header=True)
        return RankedFile(successful_count=successful, failed_count=failed, buckets=1)
    spill = target.with_name(target.name + ".buckets")
    successful = failed = 0
    header = True
    try:
        folders = _spill(csv_path, spill, buckets)
        with target.open("wb") as sink:
            for index, folder in enumerate(folders):
                paths = sorted(folder.glob("*.parquet"))
                if not paths:  # no VIN hashed here
                    continue

                def step(fraction: float, index: int = index) -> None:
                    progress((index + fraction) / buckets)

                result = rank(pl.read_parquet(paths).select(*columns), step)
                counts = _write_result(result, sink, header=header)
                header = False
                successful, failed = successful + counts[0], failed + counts[1]
                del result
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return RankedFile(successful_count=successful, failed_count=failed, buckets=buckets)
