"""``mm-pipeline rank dealers|vins IN OUT``: rank a CSV or Parquet file of pairs."""

from __future__ import annotations

import contextlib
import csv
import gzip
from pathlib import Path
from typing import Any

import click
import polars as pl

from mm_pipeline.cli._batch import api_options, fail_cleanly, make_client

__all__ = ["failed_path", "rank", "read_pairs", "write_frame"]

# Identifier-like columns stay text even when they look like numbers ("02134" keeps its zero).
_TEXT_COLUMNS = ("vin", "source", "zip", "mc_location_id")
_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def _kind(path: Path) -> str:
    name = path.name.lower()
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise click.BadParameter(
        f"{path.name}: expected a file ending in {', '.join(_SUFFIXES)}", param_hint="IN/OUT"
    )


def read_pairs(path: Path) -> pl.DataFrame:
    """Read pairs from CSV (optionally gzip) or Parquet, keeping identifiers as text.

    Raises
    ------
    InvalidInputError
        When the file cannot be read as its kind (not UTF-8, ragged rows, empty, corrupt
        gzip or Parquet), naming the file and, for ragged rows, the first bad line.
    """
    from mm_pipeline import InvalidInputError  # noqa: PLC0415 (keeps --help fast)

    kind = _kind(path)
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


def write_frame(frame: pl.DataFrame, path: Path) -> None:
    """Write a frame as CSV, gzip CSV or Parquet according to the file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = _kind(path)
    if kind == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path, compression="gzip" if kind == ".csv.gz" else "uncompressed")


def failed_path(out: Path) -> Path:
    """``ranked.csv`` -> ``ranked.failed.csv`` (same format as OUT).

    Examples
    --------
    >>> failed_path(Path("out/ranked.csv.gz")).as_posix()
    'out/ranked.failed.csv.gz'
    """
    kind = _kind(out)
    return out.with_name(out.name[: -len(kind)] + ".failed" + kind)


def _run(
    endpoint: str,
    source: Path,
    out: Path,
    failed_out: Path | None,
    options: dict[str, Any],
) -> None:
    import mm_pipeline as mm  # noqa: PLC0415 (keeps --help fast)
    from mm_pipeline._rows import numbered_as_lines  # noqa: PLC0415

    _kind(out)
    pairs = read_pairs(source)
    client = make_client(options.pop("api"))
    rank_function = mm.rank_dealers if endpoint == "dealers" else mm.rank_vins
    # Messages name the rows of a CSV file by line (the header is line 1); Parquet has no lines.
    numbering = numbered_as_lines() if _kind(source) != ".parquet" else contextlib.nullcontext()
    with numbering:
        result = rank_function(pairs, client=client, **options)
    failed_target = failed_out or failed_path(out)
    write_frame(result.ranked, out)
    write_frame(result.failed, failed_target)
    click.echo(
        f"ranked {result.ranked.height:,} pairs -> {out}; "
        f"{result.failed.height:,} failed -> {failed_target}"
    )
    if result.stats.batch_job_ids:
        click.echo(f"batch jobs: {', '.join(result.stats.batch_job_ids)}")


_in = click.argument(
    "source", metavar="IN", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
_out = click.argument("out", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
_failed = click.option(
    "--failed",
    "failed_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the failed pairs go (default: OUT with '.failed' before the extension).",
)
_on_invalid = click.option(
    "--on-invalid",
    type=click.Choice(["raise", "fail"]),
    default="raise",
    show_default=True,
    help="'raise': stop on invalid rows (listing them); 'fail': put them in the failed file.",
)
_on_request_failed = click.option(
    "--on-request-failed",
    type=click.Choice(["raise", "fail"]),
    default="raise",
    show_default=True,
    help="'raise': stop when a request fails after retries; 'fail': put its pairs in the "
    "failed file and rank the rest.",
)
_progress = click.option(
    "--progress/--no-progress", default=None, help="Show a progress bar (default: on a terminal)."
)


@click.group(short_help="Rank pairs from a CSV, .csv.gz or Parquet file.")
def rank() -> None:
    """Rank pairs from IN (CSV, .csv.gz or Parquet) into OUT (same formats)."""


@rank.command(short_help="Rank the dealers of each vehicle.")
@_in
@_out
@click.option(
    "--mode",
    type=click.Choice(["auto", "online", "batch"]),
    default="auto",
    show_default=True,
    help="Online requests, batch jobs, or chosen by size.",
)
@click.option("--reference", "client_reference", default=None, help="Batch client_reference.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where verified batch result files are cached.",
)
@_failed
@_on_invalid
@_on_request_failed
@_progress
@api_options
@fail_cleanly
def dealers(source: Path, out: Path, failed_out: Path | None, **options: Any) -> None:
    """Rank the dealers of each vehicle (columns vin, price, miles, source, zip/mc_location_id)."""
    _run("dealers", source, out, failed_out, options)


@rank.command(short_help="Rank the vehicles of each dealer.")
@_in
@_out
@_failed
@_on_invalid
@_on_request_failed
@_progress
@api_options
@fail_cleanly
def vins(source: Path, out: Path, failed_out: Path | None, **options: Any) -> None:
    """Rank the vehicles of each dealer (always online: the batch API ranks dealers)."""
    _run("vins", source, out, failed_out, options)
