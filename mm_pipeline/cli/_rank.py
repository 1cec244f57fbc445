"""``mm-pipeline rank dealers|vins IN OUT``: rank a CSV or Parquet file of pairs."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import polars as pl

from mm_pipeline._files import SOURCE_FORMATS, file_format, read_file, scan_file
from mm_pipeline.cli._batch import api_options, fail_cleanly, make_client

if TYPE_CHECKING:
    from mm_pipeline._result import RankStats

__all__ = ["failed_path", "rank", "read_pairs", "write_frame"]


def _scan_pairs(path: Path) -> pl.LazyFrame:
    """Scan IN for ``--stream``; refuse a gzip CSV with the way out."""
    if _kind(path) == ".csv.gz":
        raise click.UsageError(
            f"--stream reads Parquet or plain CSV; {path.name} is gzip, which cannot be read in "
            "pieces: decompress it (gunzip -k) or convert it to Parquet"
        )
    return scan_file(path)


def _kind(path: Path) -> str:
    kind = file_format(path)
    if kind is None:
        raise click.BadParameter(
            f"{path.name}: expected a file ending in {', '.join(SOURCE_FORMATS)}",
            param_hint="IN/OUT",
        )
    return kind


def read_pairs(path: Path) -> pl.DataFrame:
    """Read pairs from CSV (optionally gzip) or Parquet, keeping identifiers as text.

    Raises
    ------
    InvalidInputError
        When the file cannot be read as its kind (not UTF-8, ragged rows, empty, corrupt
        gzip or Parquet), naming the file and, for ragged rows, the first bad line.
    """
    _kind(path)
    return read_file(path)


def write_frame(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """Write a frame as CSV, gzip CSV or Parquet according to the file name.

    A LazyFrame is streamed to the file, never collected whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = _kind(path)
    if kind == ".parquet":
        frame.lazy().sink_parquet(path)
    else:
        frame.lazy().sink_csv(path, compression="gzip" if kind == ".csv.gz" else "uncompressed")


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
    pairs = _scan_pairs(source) if options.pop("stream", False) else read_pairs(source)
    if options.pop("use_cache"):  # on by default: a rerun the same day sends nothing
        from mm_pipeline._batch._cache import default_cache_dir  # noqa: PLC0415 (fast --help)

        options["cache_dir"] = options.get("cache_dir") or default_cache_dir()
    elif options.get("cache_dir") is not None:
        raise click.UsageError("--no-cache and --cache-dir contradict each other: give one")
    client = make_client(options.pop("api"))
    rank_function = mm.rank_dealers if endpoint == "dealers" else mm.rank_vins
    # Messages name the rows of a CSV file by line (the header is line 1); Parquet has no lines.
    numbering = numbered_as_lines() if _kind(source) != ".parquet" else contextlib.nullcontext()
    failed_target = failed_out or failed_path(out)
    with numbering:
        if isinstance(pairs, pl.LazyFrame):
            stats = _rank_streamed(pairs, out, failed_target, client=client, options=options)
        else:
            result = rank_function(pairs, client=client, **options)
            write_frame(result.ranked, out)
            write_frame(result.failed, failed_target)
            stats = result.stats
    click.echo(
        f"ranked {stats.ranked:,} pairs -> {out}; {stats.failed:,} failed -> {failed_target}"
    )
    if stats.batch_job_ids:
        click.echo(f"batch jobs: {', '.join(stats.batch_job_ids)}")


def _rank_streamed(
    pairs: pl.LazyFrame, out: Path, failed_out: Path, *, client: Any, options: dict[str, Any]
) -> RankStats:
    """``--stream``: rank into Parquet parts beside OUT, stream OUT and the failed file."""
    import mm_pipeline as mm  # noqa: PLC0415 (keeps --help fast)

    parts = out.with_name(f".{out.name}.parts")  # beside OUT: the same disk
    try:
        result = mm.rank_dealers(pairs, client=client, output=parts, **options)
        write_frame(result.ranked, out)
        write_frame(result.failed, failed_out)
    finally:  # a rerun starts over from IN (its batch downloads are in the cache)
        shutil.rmtree(parts, ignore_errors=True)
    return result.stats


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
_cache_dir = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where ranking answers (kept for the UTC day) and verified batch result files are "
    "kept (default: $MM_PIPELINE_CACHE_DIR, else ~/.cache/mm_pipeline/batch).",
)
_no_cache = click.option(
    "--no-cache",
    "use_cache",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Neither reuse nor keep ranking answers: every request is sent (verified batch result "
    "files still go to the default cache).",
)
_max_requests = click.option(
    "--max-requests",
    type=click.IntRange(min=0),
    default=None,
    help="Refuse (before sending) a run that needs more requests, stop one that gets there.",
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
@_cache_dir
@_no_cache
@_max_requests
@_failed
@_on_invalid
@_on_request_failed
@_progress
@click.option(
    "--stream",
    is_flag=True,
    default=False,
    help="For files bigger than memory: scan IN (Parquet or CSV) instead of reading it, rank "
    "through batch jobs into Parquet parts beside OUT (--mode batch, or auto past 2,000 "
    "requests), and stream OUT and the failed file from them.",
)
@api_options
@fail_cleanly
def dealers(source: Path, out: Path, failed_out: Path | None, **options: Any) -> None:
    """Rank the dealers of each vehicle (columns vin, price, miles, source, zip/mc_location_id)."""
    _run("dealers", source, out, failed_out, options)


@rank.command(short_help="Rank the vehicles of each dealer.")
@_in
@_out
@_cache_dir
@_no_cache
@_max_requests
@_failed
@_on_invalid
@_on_request_failed
@_progress
@api_options
@fail_cleanly
def vins(source: Path, out: Path, failed_out: Path | None, **options: Any) -> None:
    """Rank the vehicles of each dealer (always online: the batch API ranks dealers)."""
    _run("vins", source, out, failed_out, options)
