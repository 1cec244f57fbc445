"""Reliability: faults, crashes, restarts, Dagster re-execution and load, against real servers."""
