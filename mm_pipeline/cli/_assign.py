"""``mm-pipeline assign RANKED PLAN``: a placement plan under dealer capacity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import polars as pl

from mm_pipeline._files import file_format, scan_file
from mm_pipeline.cli._batch import fail_cleanly
from mm_pipeline.cli._rank import read_pairs, write_frame

__all__ = ["assign", "unassigned_path"]


def unassigned_path(out: Path) -> Path:
    """``plan.parquet`` -> ``plan.unassigned.parquet`` (same format as PLAN).

    Examples
    --------
    >>> unassigned_path(Path("out/plan.csv.gz")).as_posix()
    'out/plan.unassigned.csv.gz'
    """
    from mm_pipeline.cli._rank import failed_path  # noqa: PLC0415

    failed = failed_path(out)
    return failed.with_name(failed.name.replace(".failed.", ".unassigned.", 1))


def _ranked(path: Path) -> pl.DataFrame | pl.LazyFrame:
    """RANKED: a Parquet file is scanned (mm.assign collects its candidates only), CSV read."""
    return scan_file(path) if file_format(path) == ".parquet" else read_pairs(path)


@click.command(short_help="Place each ranked vehicle at one dealer under capacity.")
@click.argument(
    "source", metavar="RANKED", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.argument("out", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--capacity",
    type=click.IntRange(min=0),
    default=None,
    help="Vehicles every dealer takes (or give --capacity-file).",
)
@click.option(
    "--capacity-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV or Parquet with dealer columns (source, zip, mc_location_id) and capacity.",
)
@click.option(
    "--default-capacity",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Capacity of dealers the capacity file does not list.",
)
@click.option(
    "--cost",
    default="vin_rank",
    show_default=True,
    help="Column whose total the plan minimises (lower is better).",
)
@click.option(
    "--max-rank",
    type=click.IntRange(min=1),
    default=None,
    help="Candidates: pairs ranked at most this (default: the exact ranks, rank_exact).",
)
@click.option(
    "--unassigned",
    "unassigned_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where unplaced vehicles go (default: PLAN with '.unassigned' before the extension).",
)
@fail_cleanly
def assign(source: Path, out: Path, **options: Any) -> None:
    """Place each vehicle of RANKED (the output of 'rank dealers') at one dealer, under capacity.

    Writes one ranked row per placed vehicle to PLAN and the vehicles not placed, with a
    reason, beside it; prints the plan's figures. Formats: CSV, .csv.gz or Parquet.
    """
    import mm_pipeline as mm  # noqa: PLC0415 (keeps --help fast)

    capacity, capacity_file = options.pop("capacity"), options.pop("capacity_file")
    if (capacity is None) == (capacity_file is None):
        raise click.UsageError("give exactly one of --capacity N and --capacity-file FILE")
    unassigned_target = options.pop("unassigned_out") or unassigned_path(out)
    limits = capacity if capacity_file is None else read_pairs(capacity_file)
    plan = mm.assign(_ranked(source), capacity=limits, **options)
    write_frame(plan.assigned, out)
    write_frame(plan.unassigned, unassigned_target)
    s = plan.stats
    click.echo(
        f"placed {s.placed:,} of {s.vehicles:,} vehicles -> {out}; "
        f"{plan.unassigned.height:,} unassigned -> {unassigned_target}"
    )
    click.echo(repr(plan))
