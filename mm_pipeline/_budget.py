"""The request budget of a ranking call (``max_requests``): checked, and held against a plan."""

from __future__ import annotations

from mm_pipeline._exceptions import BudgetExceededError
from mm_pipeline._plan import Plan


def checked_budget(max_requests: int | None) -> int | None:
    """Return ``max_requests`` if it is ``None`` or a non-negative integer; else raise."""
    if max_requests is not None and (
        isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 0
    ):
        raise ValueError(f"max_requests must be a non-negative integer, got {max_requests!r}")
    return max_requests


def check_budget(plan: Plan, max_requests: int | None) -> None:
    """Refuse, before anything is sent, a plan that needs more than ``max_requests``."""
    if max_requests is None:
        return
    needed = plan.requests_at_least
    if needed <= max_requests:
        return
    if plan.route == "batch" and plan.batch is not None:
        figures = (
            f"the batch route needs at least {needed:,} requests ({plan.batch.jobs:,} job(s): "
            f"listing, upload, at least one poll and download each; "
            f"{plan.batch.merge_requests:,} online merge request(s))"
        )
    else:
        figures = (
            f"the online route needs {needed:,} requests for {plan.pairs:,} pairs in "
            f"{plan.groups:,} groups ({' + '.join(map(str, plan.requests_per_round))} by round)"
        )
    raise BudgetExceededError(
        f"max_requests={max_requests:,} is too low: {figures}; nothing was sent. Raise "
        "max_requests, or see mm.plan(...) for the cost of each route",
        max_requests=max_requests,
        planned=needed,
    )
