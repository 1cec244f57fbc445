"""The baseline: what a competent analyst writes without mm_pipeline.

A sequential loop over the vehicles with a synchronous ``httpx.Client`` and the standard
``json`` module; the rows come from pandas (``groupby`` + ``iterrows``), the answers are
collected as a list of dicts and turned into one ``DataFrame`` at the end. Dealers are sent in
chunks of at most 100 (the published limit), and a 429 is retried after a fixed sleep.

It does what the analyst's script would do and nothing more: no validation, no concurrency,
no re-ranking across chunks (a vehicle with more than 100 dealers gets per-chunk ranks), no
handling of 422s. The benchmarks give it inputs where that is enough (every vehicle has at
most 100 dealers, every pair ranks cleanly), and check its output equals the library's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pandas as pd

__all__ = ["BaselineRun", "rank_dealers_baseline"]

PATH = "/v2/marketmatch/dealers/rank"


@dataclass(kw_only=True)
class BaselineRun:
    """The ranked matches and what it took to get them."""

    ranked: pd.DataFrame
    requests: int
    rate_limited: int


def rank_dealers_baseline(
    pairs: pd.DataFrame,
    *,
    base_url: str,
    api_key: str,
    transport: httpx.BaseTransport | None = None,
    chunk_size: int = 100,
    retry_sleep: float = 1.0,
    max_attempts: int = 30,
) -> BaselineRun:
    """Rank the dealers of every vehicle in *pairs* the hand-written way.

    Parameters
    ----------
    pairs
        ``vin``, ``price``, ``miles``, ``source``, ``zip`` (a pandas frame).
    base_url, api_key
        Where to send, and the key (as the ``api_key`` query parameter).
    transport
        An httpx transport to send through (the benchmarks' instant one); default: network.
    chunk_size
        Dealers per request (the API takes at most 100).
    retry_sleep, max_attempts
        A 429 is retried after ``retry_sleep`` seconds, up to ``max_attempts`` attempts.

    Returns
    -------
    BaselineRun
        ``ranked``: one row per ranked match with the API's fields.
    """
    rows: list[dict[str, Any]] = []
    requests = rate_limited = 0
    with httpx.Client(base_url=base_url, timeout=30.0, transport=transport) as client:
        for keys, group in pairs.groupby(["vin", "price", "miles"], sort=False):
            vin, price, miles = cast(tuple[str, int, int], keys)
            dealers = []
            for _, row in group.iterrows():
                dealer = {"source": row["source"]}
                if isinstance(row["zip"], str) and row["zip"]:
                    dealer["zip"] = row["zip"]
                dealers.append(dealer)
            for start in range(0, len(dealers), chunk_size):
                body = {
                    "vin": {"vin": vin, "price": int(price), "miles": int(miles)},
                    "dealers": dealers[start : start + chunk_size],
                }
                for _attempt in range(max_attempts):
                    requests += 1
                    response = client.post(
                        PATH,
                        params={"api_key": api_key},
                        content=json.dumps(body),
                        headers={"Content-Type": "application/json"},
                    )
                    if response.status_code != 429:
                        break
                    rate_limited += 1
                    time.sleep(retry_sleep)
                if response.status_code != 200:  # (not raise_for_status: its URL has the key)
                    raise RuntimeError(f"{PATH} answered {response.status_code}: {response.text}")
                rows.extend(json.loads(response.text)["ranked_matches"])
    return BaselineRun(ranked=pd.DataFrame(rows), requests=requests, rate_limited=rate_limited)
