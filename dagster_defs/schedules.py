"""The daily job, its morning schedule, and its run retry policy."""

from dagster import (
    AssetSelection,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from dagster_defs.assets import GROUP

__all__ = ["RETRY_TAGS", "marketmatch_daily", "marketmatch_daily_schedule"]

RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}
"""Run retry policy (needs ``run_retries: enabled`` in the instance, see instance/dagster.yaml).

A retry re-executes the failed steps only; placement's batch job carries a client reference made
of the partition key (and the library adds the file's content), so the retried step adopts the
job it submitted instead of starting a second one.
"""

marketmatch_daily = define_asset_job(
    "marketmatch_daily",
    selection=AssetSelection.groups(GROUP),
    description="Materialize (and check) every MarketMatch asset for one day.",
    tags=RETRY_TAGS,
)


@schedule(job=marketmatch_daily, cron_schedule="0 6 * * *", execution_timezone="UTC")
def marketmatch_daily_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """Every morning at 06:00 UTC, materialize that day's partition (once: run_key = day)."""
    day = f"{context.scheduled_execution_time:%Y-%m-%d}"
    return RunRequest(run_key=day, partition_key=day)
