"""Measuring: wall time, peak RSS (Linux ``VmHWM``, reset per measurement) and worker processes.

Memory is measured inside a worker process (``python -m benchmarks._worker``), never in the
driver: :func:`measured` resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), so the
peak it reports belongs to the measured block alone. Where the reset is refused, the peak since
process start (``ru_maxrss``) is used instead and the result says so.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "Measurement", "measured", "pin_to_one_core", "rss_mb", "run_worker"]

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (workers run there, so ``sample_data`` imports)."""
_MB = 1024 * 1024
_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def rss_mb() -> float:
    """The current resident set size of this process in MB."""
    kb = _status_kb("VmRSS")
    if kb is None:  # pragma: no cover - not Linux
        import psutil  # noqa: PLC0415

        return float(psutil.Process().memory_info().rss) / _MB
    return kb / 1024


def _peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kb / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(kw_only=True)
class Measurement:
    """What :func:`measured` saw: seconds, CPU seconds and memory in MB."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    gc_seconds: float = 0.0
    rss_before_mb: float = 0.0
    peak_mb: float = 0.0
    peak_exact: bool = True

    @property
    def peak_added_mb(self) -> float:
        """Peak RSS during the block above the RSS just before it."""
        return max(0.0, self.peak_mb - self.rss_before_mb)


@contextlib.contextmanager
def measured() -> Iterator[Measurement]:
    """Time a block (wall, CPU and garbage collection) and record its peak RSS."""
    gc.collect()
    result = Measurement(rss_before_mb=rss_mb())
    result.peak_exact = _reset_peak()
    collecting = 0.0

    def on_gc(phase: str, info: dict[str, int]) -> None:
        nonlocal collecting
        if phase == "start":
            collecting = time.perf_counter()
        else:
            result.gc_seconds += time.perf_counter() - collecting

    gc.callbacks.append(on_gc)
    cpu, started = time.process_time(), time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - started
        result.cpu_seconds = time.process_time() - cpu
        result.peak_mb = _peak_mb()
        gc.callbacks.remove(on_gc)


def pin_to_one_core() -> None:
    """Run this process on one CPU (the first one it may use), so "per core" means it."""
    with contextlib.suppress(AttributeError, OSError):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[0]})


def run_worker(task: str, args: dict[str, Any], *, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``task`` of :mod:`benchmarks._worker` in a fresh interpreter; return its JSON result.

    The worker runs with ``POLARS_MAX_THREADS=1`` (one core, like the pinned worker itself).
    """
    env = {**os.environ, "POLARS_MAX_THREADS": "1", "PYTHONHASHSEED": "0"}
    command = [sys.executable, "-m", "benchmarks._worker", task, json.dumps(args)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"benchmark worker {task!r} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"benchmark worker {task!r} printed no result:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
