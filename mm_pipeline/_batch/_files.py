"""The batch upload format: write frames as ``.csv.gz`` files (split under the cap), hash them.

Result files are parsed by :mod:`mm_pipeline._batch._results`.

Writing streams: the frame is serialised in slices (polars' CSV writer, minimal quoting, the
published header ``vin,price,miles,source,zip``) into one zlib gzip stream that hashes (SHA-256)
and writes each compressed block as it is produced; no second full copy of the data is made.
gzip level 1 keeps a million pairs around half a second (pyarrow's ``CompressedOutputStream``
offers no level and compresses at level 9, twenty times slower). The output is deterministic
(gzip header without a timestamp), so the same frame always gives the same bytes and hash, which
is what makes batch submissions idempotent across reruns.

When the compressed file would exceed a cap, the frame is split into several files by VIN (a
VIN's rows are never divided, since the API ranks the dealers of each VIN across its rows): the
size per row is estimated from a first slice, VINs are packed into files in the order of a hash
of the VIN (so a row finds its file by a binary search of its VIN's hash among the files' first
hashes, with no lookup table to join), and every file is checked against the cap after writing
(with a smaller target and a rewrite when one is over).

A frame or a lazy frame over files larger than memory is written the same way and never
collected: one streaming pass over ``vin`` counts each VIN's rows (memory: one row per VIN),
a second streams the rows in batches into every file at once (each batch is cut by file and
each piece compressed into its file), so memory holds one batch whatever the size.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, cast

import polars as pl

from mm_pipeline._exceptions import InvalidInputError

__all__ = [
    "BATCH_COLUMNS",
    "DEFAULT_MAX_FILE_BYTES",
    "BatchFile",
    "check_upload_header",
    "column_key",
    "estimated_file_count",
    "sha256_file",
    "write_batch_files",
]

BATCH_COLUMNS: Final = ("vin", "price", "miles", "source", "zip")
"""The columns of an uploaded batch file, in order (the published input format)."""

DEFAULT_MAX_FILE_BYTES: Final = 100 * 1024 * 1024
"""The API's upload cap (100 MB); larger work is split into several jobs."""

_SLICE_ROWS: Final = 131_072
_SAMPLE_ROWS: Final = 20_000
_FILL: Final = 0.92  # target fraction of the cap when splitting (the estimate is not exact)
_HASH: Final = "_vin_hash"
_GZIP_LEVEL: Final = 1
_READ_BLOCK: Final = 1 << 20


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


def _compressed_bytes_per_row(sample: pl.DataFrame) -> float:
    text = sample.write_csv(include_header=False).encode()
    packed = zlib.compress(text, _GZIP_LEVEL)
    return max(len(packed), 1) / max(sample.height, 1)


def _batch_lazy(pairs: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Return the published columns, typed, as a lazy query (nothing is read yet)."""
    lazy = pairs.lazy()
    names = lazy.collect_schema().names()
    missing = [c for c in BATCH_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"a batch file needs the columns {', '.join(BATCH_COLUMNS)}; missing: "
            f"{', '.join(missing)}"
        )
    return lazy.select(
        pl.col("vin").cast(pl.String),
        pl.col("price").cast(pl.Int64),
        pl.col("miles").cast(pl.Int64),
        pl.col("source").cast(pl.String),
        pl.col("zip").cast(pl.String),
    )


def _vin_hash() -> pl.Expr:
    """Return the hash VINs are packed by (deterministic for a given polars version)."""
    return pl.col("vin").hash(seed=0).alias(_HASH)


def _vin_counts(lazy: pl.LazyFrame) -> pl.DataFrame:
    """Rows per VIN with its hash, in hash order (one streaming pass over ``vin``)."""
    return (
        lazy.select("vin")
        .group_by("vin")
        .agg(pl.len())
        .with_columns(_vin_hash())
        .sort(_HASH, "vin")
        .collect(engine="streaming")
    )


def _first_hashes(assignment: pl.DataFrame) -> pl.Series:
    """Return each file's smallest VIN hash but the first's (a row's file: how many are <= its)."""
    return (
        assignment.group_by("part").agg(pl.col(_HASH).min()).sort("part").get_column(_HASH).slice(1)
    )


def _stream_parts(
    lazy: pl.LazyFrame, paths: list[Path], assignment: pl.DataFrame | None
) -> list[BatchFile]:
    """Write the rows of ``lazy`` into one file per path in one streaming pass.

    ``assignment`` maps each ``vin`` (and its hash) to its file's index (``part``), the files
    holding consecutive runs of hashes; ``None``: one file. Rows keep their order within a
    file; nulls are counted as the batches pass and refused at the end (the files are then
    removed).
    """
    sinks = [_GzipHashSink(path) for path in paths]
    bounds = None if assignment is None else _first_hashes(assignment)
    rows = [0] * len(paths)
    nulls = dict.fromkeys(BATCH_COLUMNS, 0)
    try:
        for batch in lazy.collect_batches(chunk_size=_SLICE_ROWS, engine="streaming"):
            for name, count in batch.null_count().row(0, named=True).items():
                nulls[name] += count
            if bounds is None:
                pieces = {0: batch}
            else:
                vin_hash = batch.select(_vin_hash()).to_series()
                parts = bounds.search_sorted(vin_hash, side="right").alias("part")
                pieces = {
                    int(key[0]): piece
                    for key, piece in batch.with_columns(parts)
                    .partition_by("part", maintain_order=True, include_key=False, as_dict=True)
                    .items()
                }
            for index, piece in pieces.items():
                target = cast("IO[bytes]", sinks[index])  # polars needs only write()
                piece.write_csv(target, include_header=rows[index] == 0)
                rows[index] += piece.height
        empty = lazy.clear().collect()
        for index, sink in enumerate(sinks):
            if rows[index] == 0:
                empty.write_csv(cast("IO[bytes]", sink))
        described = ", ".join(f"{name} ({count} rows)" for name, count in nulls.items() if count)
        if described:
            raise ValueError(f"a batch file cannot hold empty values; nulls in {described}")
        digests = [sink.finish() for sink in sinks]
    except BaseException:
        for sink, path in zip(sinks, paths, strict=True):
            sink.abort()
            path.unlink(missing_ok=True)
        raise
    return [
        BatchFile(
            path=path,
            sha256=digest,
            size=sink.size,
            rows=count,
            vins=None if assignment is None else assignment.filter(pl.col("part") == index)["vin"],
        )
        for index, (path, sink, digest, count) in enumerate(
            zip(paths, sinks, digests, rows, strict=True)
        )
    ]


def write_batch_files(
    pairs: pl.DataFrame | pl.LazyFrame,
    directory: Path,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    stem: str = "batch",
) -> list[BatchFile]:
    """Write pairs as one or more gzip CSV upload files, split by VIN under a size cap.

    A lazy frame is streamed, never collected: one pass over its ``vin`` column counts the
    rows of each VIN, a second writes every file at once (each batch of rows goes to its
    VIN's file), so memory holds the per-VIN counts and one batch of rows whatever the size.

    Parameters
    ----------
    pairs
        A frame, or a lazy frame (such as ``pl.scan_parquet``), with at least ``vin``,
        ``price``, ``miles``, ``source`` and ``zip`` (no nulls); other columns are not written.
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
    ...     [f.rows for f in write_batch_files(pairs.lazy(), Path(tmp))]
    [1]
    """
    if max_file_bytes <= 0:
        raise ValueError("max_file_bytes must be positive")
    lazy = _batch_lazy(pairs)
    directory.mkdir(parents=True, exist_ok=True)
    per_row = _compressed_bytes_per_row(lazy.head(_SAMPLE_ROWS).collect())
    counts = _vin_counts(lazy)
    total = int(counts.get_column("len").sum())
    if per_row * total <= max_file_bytes * _FILL:
        (single,) = _stream_parts(lazy, [directory / f"{stem}-1.csv.gz"], None)
        if single.size <= max_file_bytes:
            return [single]
        single.path.unlink()
        per_row = single.size / max(single.rows, 1)
    for _ in range(4):
        assignment = _assign(counts, target_rows=_target_rows(per_row, max_file_bytes))
        parts = assignment.get_column("part").n_unique()
        paths = [directory / f"{stem}-{index + 1}.csv.gz" for index in range(parts)]
        files = _stream_parts(lazy, paths, assignment)
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


def estimated_file_count(
    pairs: pl.DataFrame, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> int:
    """Estimate how many files :func:`write_batch_files` writes for ``pairs`` (writing none).

    From the compressed size of a sample of the rows and the rows per VIN, as the writer itself
    first splits (a VIN's rows stay in one file).

    Examples
    --------
    >>> pairs = pl.DataFrame({"vin": ["WP1BE2AY5PDA28064"], "price": [20000], "miles": [3000],
    ...                       "source": ["mbofaugusta.com"], "zip": ["30907"]})
    >>> estimated_file_count(pairs), estimated_file_count(pairs.clear())
    (1, 0)
    """
    if not pairs.height:
        return 0
    lazy = _batch_lazy(pairs)
    per_row = _compressed_bytes_per_row(lazy.head(_SAMPLE_ROWS).collect())
    if per_row * pairs.height <= max_file_bytes * _FILL:
        return 1
    assignment = _assign(_vin_counts(lazy), target_rows=_target_rows(per_row, max_file_bytes))
    return assignment.get_column("part").n_unique()


def _target_rows(per_row: float, max_file_bytes: int) -> int:
    return max(1, math.floor(max_file_bytes * _FILL / per_row))


def _assign(counts: pl.DataFrame, *, target_rows: int) -> pl.DataFrame:
    """Pack VINs (in hash order) into files of about ``target_rows`` rows.

    A file starts only where the hash changes, so VINs sharing a hash share a file.
    """
    part: list[int] = []
    current, filled, previous = 0, 0, None
    for count, vin_hash in counts.select("len", _HASH).iter_rows():
        if filled and filled + count > target_rows and vin_hash != previous:
            current, filled = current + 1, 0
        part.append(current)
        filled += count
        previous = vin_hash
    return counts.select("vin", _HASH, pl.Series("part", part, dtype=pl.UInt32))


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


def column_key(name: str) -> str:
    """Compare CSV column names as the API does: no BOM, quotes or spaces, lower case.

    >>> column_key('\ufeff"VIN" ')
    'vin'
    """
    return name.replace("\ufeff", "").strip().strip('"').lower()


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
    present = [column_key(name) for name in header]
    missing = [name for name in BATCH_COLUMNS if name not in present]
    if missing:
        raise InvalidInputError(
            f"{path.name} lacks the batch column(s) {', '.join(missing)}: its header has "
            f"{', '.join(header) or '(nothing)'}; the batch API needs {', '.join(BATCH_COLUMNS)}. "
            "Nothing was uploaded."
        )
