"""Read pairs from CSV, gzip CSV or Parquet files, keeping identifiers as text.

Shared by the command line (``mm-pipeline rank``) and the Dagster source resource.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import polars as pl

from mm_pipeline._exceptions import InvalidInputError

__all__ = ["SOURCE_FORMATS", "file_format", "read_file", "read_table", "scan_file"]

SOURCE_FORMATS = (".csv", ".csv.gz", ".parquet")
"""File name endings the readers understand."""

# Identifier-like columns stay text even when they look like numbers ("02134" keeps its zero).
_TEXT_COLUMNS = ("vin", "source", "zip", "mc_location_id")


def file_format(path: Path) -> str | None:
    """Return the :data:`SOURCE_FORMATS` ending of ``path`` (case-insensitive), or None.

    Examples
    --------
    >>> file_format(Path("in/Pairs.CSV.gz")), file_format(Path("notes.txt"))
    ('.csv.gz', None)
    """
    name = path.name.lower()
    return next((suffix for suffix in SOURCE_FORMATS if name.endswith(suffix)), None)


def read_file(path: Path) -> pl.DataFrame:
    """Read one CSV (optionally gzip) or Parquet file, keeping identifiers as text.

    Raises
    ------
    ValueError
        When the file name has none of the :data:`SOURCE_FORMATS` endings.
    InvalidInputError
        When the file cannot be read as its kind (not UTF-8, ragged rows, empty, corrupt
        gzip or Parquet), naming the file and, for ragged rows, the first bad line.
    """
    kind = file_format(path)
    if kind is None:
        raise ValueError(f"{path}: unsupported input format (expected {', '.join(SOURCE_FORMATS)})")
    try:
        if kind == ".parquet":
            return pl.read_parquet(path)
        header = pl.read_csv(path, n_rows=0).columns
        overrides = {name: pl.String for name in _TEXT_COLUMNS if name in header}
        return pl.read_csv(path, schema_overrides=overrides)
    except (pl.exceptions.PolarsError, OSError, EOFError) as exc:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        reason = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
        if kind != ".parquet":
            reason = _ragged_line(path, gzipped=gzipped) or reason
        if kind == ".csv.gz" and not gzipped:
            reason = f"it is not gzip-compressed, nor plain CSV ({reason})"
        raise InvalidInputError(f"{path.name} cannot be read as {kind[1:]}: {reason}") from exc


def scan_file(path: Path) -> pl.LazyFrame:
    r"""Scan one Parquet or plain CSV file lazily, keeping identifiers as text.

    Nothing is read but the CSV header or the Parquet footer (a gzip file cannot be scanned in
    pieces: it is refused).

    Raises
    ------
    ValueError
        When the file is not ``.parquet`` or ``.csv``.
    InvalidInputError
        When a CSV file's header or a Parquet file's footer cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "pairs.csv"
    ...     _ = path.write_text("vin,zip\nWP1BE2AY5PDA28064,02134\n")
    ...     scan_file(path).collect()["zip"].to_list()
    ['02134']
    """
    kind = file_format(path)
    if kind not in (".csv", ".parquet"):
        raise ValueError(
            f"{path.name}: only Parquet or plain CSV can be read in pieces (gzip cannot): "
            "decompress it, or convert it to Parquet"
        )
    try:
        if kind == ".parquet":
            pl.read_parquet_schema(path)  # a file that is not Parquet fails here, clearly
            return pl.scan_parquet(path)
        header = pl.read_csv(path, n_rows=0).columns
    except (pl.exceptions.PolarsError, OSError) as exc:
        reason = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
        raise InvalidInputError(f"{path.name} cannot be read as {kind[1:]}: {reason}") from exc
    overrides = {name: pl.String for name in _TEXT_COLUMNS if name in header}
    return pl.scan_csv(path, schema_overrides=overrides)


def _ragged_line(path: Path, *, gzipped: bool) -> str | None:
    """Describe the first CSV line whose field count differs from the header's, if any."""
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            for row in reader:
                if len(row) != len(header):
                    return f"line {reader.line_num} has {len(row)} fields, the header {len(header)}"
    except (OSError, EOFError, UnicodeDecodeError, csv.Error):
        return None
    return None


def read_table(path: Path) -> pl.DataFrame:
    r"""Read a CSV / gzip CSV / Parquet file, or every such file in a folder, as one frame.

    Identifier columns (``vin``, ``source``, ``zip``, ``mc_location_id``) are read from CSV as
    text, so ZIP codes keep their leading zeros.

    Parameters
    ----------
    path
        A file, or a folder whose matching files (sorted by name) are concatenated.

    Returns
    -------
    pl.DataFrame
        The rows of every file, columns unified by name.

    Raises
    ------
    FileNotFoundError
        When the file, or every input file of the folder, is missing.
    ValueError
        When the file name has none of the :data:`SOURCE_FORMATS` endings.
    mm_pipeline.InvalidInputError
        When a file cannot be read as its format; the message names the file and why.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = Path(folder, "a.csv").write_text("vin,zip\nV1,02134\n")
    ...     pl.DataFrame({"vin": ["V2"]}).write_parquet(Path(folder, "b.parquet"))
    ...     read_table(Path(folder)).to_dicts()
    [{'vin': 'V1', 'zip': '02134'}, {'vin': 'V2', 'zip': None}]
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if file_format(p))
        if not files:
            raise FileNotFoundError(f"{path}: no {', '.join(SOURCE_FORMATS)} files in this folder")
        return pl.concat([read_file(p) for p in files], how="diagonal_relaxed")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: input file not found")
    return read_file(path)
