"""The main job (``make demo``): today's partition of every asset, with checks, and a summary.

``python -m dagster_defs.demo [--partition YYYY-MM-DD] [--max-rows N]`` starts the embedded
sandbox (or uses ``MARKETCHECK_BASE_URL`` / ``MARKETCHECK_API_KEY`` when the base URL is set),
runs the ``marketmatch_daily`` job in process against the instance in ``DAGSTER_HOME`` (default
``.dagster_home/``, so ``make ui`` shows the run afterwards), writes Parquet under ``data/``, and
prints per asset its rows, failures and checks, then the best placements and how concentrated
they are: the largest share one dealer gets of ``best_placement`` (every vehicle to its rank-1
dealer) next to that of ``placement_plan`` (within dealer capacity). Exit status 0 only when
every asset materialized and every check passed.

By default it ranks the whole sample data: every vehicle against every candidate dealer
(1,200 x 320 = 384,000 pairs) through the batch route -- one batch job for the dealers with a
zip, then one online request per vehicle to merge in the dealers known only by
``mc_location_id`` -- and the acquisition candidates online.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from dagster import DagsterInstance, ExecuteInProcessResult, MetadataValue

from dagster_defs._local import dagster_home, local_api
from dagster_defs.assets import PARTITIONS
from dagster_defs.definitions import defs
from dagster_defs.schedules import marketmatch_daily

__all__ = ["largest_shares", "main", "run_daily", "summarize"]

_BEST_ROWS = 15


def _value(metadata: Mapping[str, MetadataValue[Any]], key: str) -> Any:
    entry = metadata.get(key)
    return None if entry is None else entry.value


def summarize(result: ExecuteInProcessResult) -> tuple[pl.DataFrame, pl.DataFrame, bool]:
    """Tabulate a run: per asset rows / failures / checks, the best placements, and success.

    Returns
    -------
    tuple[pl.DataFrame, pl.DataFrame, bool]
        The per-asset table, the best placements (empty if not materialized), and whether every
        asset of the job materialized and every check passed.
    """
    materialized = {
        event.materialization.asset_key.to_user_string(): event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    checks: dict[str, list[tuple[str, bool]]] = {}
    for evaluation in result.get_asset_check_evaluations():
        checks.setdefault(evaluation.asset_key.to_user_string(), []).append(
            (evaluation.check_name, evaluation.passed)
        )
    # Execution order (upstream first), then whatever did not materialize.
    expected = list(materialized) + sorted(
        key.to_user_string()
        for key in result.job_def.asset_layer.selected_asset_keys
        if key.to_user_string() not in materialized
    )
    rows = []
    for asset in expected:
        metadata = materialized.get(asset, {})
        outcome = checks.get(asset, [])
        failing = [name for name, passed in outcome if not passed]
        verdict = f"{len(outcome) - len(failing)}/{len(outcome)} passed" if outcome else "-"
        if failing:
            verdict += f" (failed: {', '.join(failing)})"
        rows.append(
            {
                "asset": asset,
                "materialized": asset in materialized,
                "rows": _value(metadata, "dagster/row_count"),
                "failures": _value(metadata, "stats/failed"),
                "checks": verdict,
            }
        )
    table = pl.DataFrame(rows, schema_overrides={"rows": pl.Int64, "failures": pl.Int64})
    best_path = _value(materialized.get("best_placement", {}), "path")
    best = pl.read_parquet(str(best_path)) if best_path else pl.DataFrame()
    ok = (
        result.success
        and bool(table["materialized"].all())
        and all(passed for outcome in checks.values() for _, passed in outcome)
    )
    return table, best, ok


def _largest(frame: pl.DataFrame) -> str:
    """``<share> (<n> of <total> vehicles, <dealer>)`` of the dealer with the most rows."""
    dealer = pl.coalesce(
        pl.col("source") + pl.lit(" ") + pl.col("zip"), pl.col("source"), pl.col("mc_location_id")
    )
    counts = (
        frame.group_by(dealer.alias("dealer"))
        .len()
        .sort(["len", "dealer"], descending=[True, False])
    )
    top, count = counts.row(0)
    return f"{count / frame.height:6.1%} ({count:,} of {frame.height:,} vehicles, {top})"


def largest_shares(result: ExecuteInProcessResult, best: pl.DataFrame) -> list[str]:
    """Lines comparing the largest dealer share of ``best_placement`` and of ``placement_plan``.

    Both are computed from the stored frames (the plan's read back through its ``path``); a
    frame that is missing or empty is left out.
    """
    lines = []
    if best.height:
        lines.append(f"  {'best_placement (rank 1):':<28}{_largest(best)}")
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.to_user_string() == "placement_plan":
            path = _value(event.materialization.metadata, "path")
            plan = pl.read_parquet(str(path)) if path else pl.DataFrame()
            if plan.height:
                lines.append(f"  {'placement_plan (capacity):':<28}{_largest(plan)}")
    return lines


def run_daily(
    partition: str,
    *,
    instance: DagsterInstance,
    inputs: str = "sample_data",
    data_dir: str = "data",
    max_rows: int | None = None,
) -> ExecuteInProcessResult:
    """Run the ``marketmatch_daily`` job in process for ``partition`` (the demo's whole work).

    The API key and base URL come from the environment, as in any deployment; ``max_rows``
    caps the rows read from each input (None: all).
    """
    run_config = {
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        "resources": {
            "source_data": {"config": {"root": inputs, "max_rows": max_rows}},
            "io_manager": {"config": {"base_dir": data_dir}},
        },
    }
    return defs.resolve_job_def(marketmatch_daily.name).execute_in_process(
        run_config=run_config, instance=instance, partition_key=partition, raise_on_error=False
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m dagster_defs.demo", description=__doc__)
    parser.add_argument("--partition", help="Day to materialize (default: today, UTC).")
    parser.add_argument("--inputs", default="sample_data", help="Input folder (SourceData.root).")
    parser.add_argument("--data-dir", default="data", help="Where the Parquet outputs go.")
    parser.add_argument(
        "--max-rows",
        type=int,
        default=0,
        help="Read at most this many rows of each input (default 0: everything).",
    )
    args = parser.parse_args(argv)
    partition = args.partition or PARTITIONS.get_last_partition_key()
    if partition is None:
        parser.error(f"no daily partition yet: they start on {PARTITIONS.start:%Y-%m-%d}")
    home = dagster_home()
    with local_api() as api:
        print(f"MarketMatch API: {api.describe()}")
        print(f"Materializing every asset for {partition} (DAGSTER_HOME={home}) ...", flush=True)
        with DagsterInstance.get() as instance:
            result = run_daily(
                partition,
                instance=instance,
                inputs=args.inputs,
                data_dir=args.data_dir,
                max_rows=args.max_rows or None,
            )
    table, best, ok = summarize(result)
    with pl.Config(
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=50,
        tbl_cols=-1,
        tbl_width_chars=160,
        fmt_str_lengths=60,
    ):
        print(
            table.select(
                "asset", "rows", pl.col("failures").cast(pl.String).fill_null(""), "checks"
            )
        )
        if best.height:
            print(f"\nBest placements ({best.height} vehicles; first {_BEST_ROWS}):")
            print(
                best.select(
                    "vin", "price", "miles", "source", "zip", "vin_score", "dealer_ymm_score"
                ).head(_BEST_ROWS)
            )
    shares = largest_shares(result, best)
    if shares:
        print("\nLargest share of the vehicles one dealer receives:")
        print("\n".join(shares))
    print(
        f"\nRun {result.run_id}: {'OK' if ok else 'FAILED'}. Parquet under {args.data_dir}/ "
        f"(pl.scan_parquet('{args.data_dir}/best_placement/', hive_partitioning=True)); "
        "`make ui` to browse."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
