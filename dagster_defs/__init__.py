"""dagster_defs."""
