"""Worker entry point: ``python -m benchmarks._worker TASK 'JSON-ARGS'`` prints one JSON line.

Measurements that need a fresh process (peak RSS, one pinned core) run here; the driver
(:func:`benchmarks._measure.run_worker`) reads the last line of the output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from benchmarks import _profile, assign, batch, large, overhead

TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "overhead": overhead.task_overhead,
    "batch_client": batch.task_client,
    "profile": _profile.task_profile,
    "assign": assign.task_assign,
    "large": large.task_large,
}


def main(argv: list[str]) -> int:
    """Run one task and print its result as JSON."""
    task, args = argv
    result = TASKS[task](json.loads(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
