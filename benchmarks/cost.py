"""Scenario 7: requests spent against the achievable minimum (issue 11).

Every request counts against a user's monthly quota. A group of ``n`` items with request
capacity ``cap`` (100 dealers, 20 VINs) and exact top ``K`` cannot cost fewer than
``max(ceil(n / cap), ceil((n - K) / (cap - K)))`` requests (1 when ``n <= cap``): every request
but the last eliminates at most ``cap - K`` candidates. ``ceil(n / cap)`` -- every item sent once,
no re-ranking -- is shown as the bound.

A mix of group sizes per endpoint (dealers of one vehicle: 101 ... 3,000; VINs of one dealer:
21 ... 500) is ranked against a sandbox process with ``exact_top_k`` = the default, 1, 10 and 0;
the requests are the sandbox's own count (its quota), which ``RankStats.requests`` must equal.
The run at the default K keeps its answers in an answer cache (``cache_dir``); the same frame is
then ranked again the same day: the rerun must send 0 requests and return identical frames.
"""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

import mm_pipeline as mm
from benchmarks._report import Row
from benchmarks._sandbox import sandbox_process
from mm_pipeline._plan import MAX_CHUNK, resolve_sizes
from mm_pipeline.sandbox._market import Market
from sample_data.generate import make_vehicles

__all__ = ["FULL_SIZES", "QUICK_SIZES", "minimum", "run"]

SEED = 6
QUOTA = 1_000_000_000
FULL_SIZES: dict[str, tuple[int, ...]] = {
    "dealers": (101, 150, 230, 500, 1_000, 1_001, 3_000),
    "vins": (21, 46, 60, 100, 250, 500),
}
QUICK_SIZES: dict[str, tuple[int, ...]] = {"dealers": (101, 230, 1_001), "vins": (21, 46, 100)}
TOP_KS: tuple[int | None, ...] = (None, 1, 10, 0)


def minimum(n: int, cap: int, top_k: int) -> int:
    """The fewest requests any schedule can spend on one group (issue 11)."""
    if n <= cap:
        return 1 if n else 0
    if not top_k:
        return math.ceil(n / cap)
    return max(math.ceil(n / cap), math.ceil((n - top_k) / (cap - top_k)))


def _frame(endpoint: str, sizes: tuple[int, ...], rng: np.random.Generator) -> pl.DataFrame:
    """One group per size: a vehicle with n rooftops, or a rooftop with n vehicles."""
    universe = Market.default().dealers.select("source", "zip")
    groups = []
    for n in sizes:
        if endpoint == "dealers":
            start = int(rng.integers(0, universe.height - n))
            groups.append(mm.cross_pairs(make_vehicles(rng, 1), universe.slice(start, n)))
        else:
            dealer = universe.slice(int(rng.integers(0, universe.height)), 1)
            groups.append(mm.cross_pairs(make_vehicles(rng, n), dealer))
    return pl.concat(groups)


def _spent(client: httpx.Client) -> int:
    """Requests the sandbox counted since its reset (the probe itself spends one)."""
    response = client.get("/v2/batch/marketmatch/rank/jobs", params={"rows": 1})
    return QUOTA - int(response.headers["Quota-Remaining"]) - 1


def _rerun_row(
    sandbox: Any,
    probe: httpx.Client,
    rerun: Any,
    first: mm.RankResult,
    *,
    scenario: str,
    named: str,
) -> tuple[Row, str]:
    """Rank the same frame again from the answer cache; the sandbox must count 0 requests."""
    sandbox.reset()
    again = rerun()
    spent = _spent(probe)
    same = again.ranked.equals(first.ranked) and again.failed.equals(first.failed)
    row = Row(
        scenario=scenario,
        figure="same-day rerun with the answer cache",
        unit="requests",
        ours=spent,
        bound=0,
        target="0 requests, identical frames",
        met=spent == 0 and same,
    )
    note = (
        f"Scenario 7, {named}: the same-day rerun with the answer cache sent {spent} requests "
        f"({again.stats.cached_answers:,} answers from the cache); frames identical: {same}."
    )
    return row, note


def run(sizes: dict[str, tuple[int, ...]], *, progress: Any = print) -> tuple[list[Row], list[str]]:
    """Rank each endpoint's mix at each K; compare the requests with the minimum."""
    rng = np.random.default_rng(SEED)
    rows: list[Row] = []
    notes: list[str] = []
    with (
        sandbox_process(rate_limit=1_000.0, quota=QUOTA) as sandbox,
        tempfile.TemporaryDirectory(prefix="mm-cost-") as caches,
    ):
        client = mm.MarketMatchClient(sandbox.api_key, sandbox.base_url)
        probe = httpx.Client(base_url=sandbox.base_url, params={"api_key": sandbox.api_key})
        with probe:
            for endpoint in ("dealers", "vins"):
                frame = _frame(endpoint, sizes[endpoint], rng)
                cap = MAX_CHUNK[endpoint]
                for top_k in TOP_KS:
                    _, k = resolve_sizes(endpoint, chunk_size=None, exact_top_k=top_k)
                    label = f"K={k}" + (" (default)" if top_k is None else "")
                    progress(f"  cost: /{endpoint}/rank, {label} ...")
                    sandbox.reset()
                    rank = mm.rank_dealers if endpoint == "dealers" else mm.rank_vins
                    options: dict[str, Any] = {"mode": "online"} if endpoint == "dealers" else {}
                    if top_k is None:  # keep the answers, for the rerun below
                        options["cache_dir"] = Path(caches, endpoint)
                    result = rank(frame, client=client, exact_top_k=k, progress=False, **options)
                    spent = _spent(probe)
                    least = sum(minimum(n, cap, k) for n in sizes[endpoint])
                    once = sum(math.ceil(n / cap) for n in sizes[endpoint])
                    scenario = (
                        f"7 cost (/{endpoint}/rank, n = "
                        + ", ".join(f"{n:,}" for n in sizes[endpoint])
                        + ")"
                    )
                    rows.append(
                        Row(
                            scenario=scenario,
                            figure=f"requests ÷ achievable minimum, {label}",
                            unit="ratio",
                            ours=spent / least,
                            bound=once / least,
                            target="≤ 1.00 (bound: ceil(n / cap) ÷ minimum)",
                            met=spent <= least and result.failed.is_empty(),
                        )
                    )
                    notes.append(
                        f"Scenario 7, /{endpoint}/rank {label}: {spent} requests counted by the "
                        f"sandbox ({result.stats.requests} by the client), achievable minimum "
                        f"{least}, ceil(n / {cap}) = {once}; "
                        f"{int(result.ranked.get_column('rank_exact').sum()):,} of "
                        f"{result.ranked.height:,} ranks exact."
                    )
                    if top_k is None:
                        row, note = _rerun_row(
                            sandbox,
                            probe,
                            functools.partial(
                                rank, frame, client=client, exact_top_k=k, progress=False, **options
                            ),
                            result,
                            scenario=scenario,
                            named=f"/{endpoint}/rank {label}",
                        )
                        rows.append(row)
                        notes.append(note)
    return rows, notes
