"""Scenario 4: how many requests per second the sandbox serves (it must never be the bottleneck).

The sandbox runs in its own process with no latency and an unlimited rate; this process drives
it with 32 concurrent keep-alive connections through a minimal asyncio HTTP/1.1 client (raw
sockets, pre-encoded requests: far cheaper than the server, so the figure is the server's).
Each run warms up briefly, then counts the responses completed in a fixed window and their
latencies. The bound is the same server answering the cheapest request it has (a 401 for an
unknown key, which passes the whole HTTP stack but no ranking).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from benchmarks._data import pairs
from benchmarks._report import Row
from benchmarks._sandbox import sandbox_process
from mm_pipeline.sandbox._market import Market
from sample_data.generate import make_vehicles

__all__ = ["run"]

SEED = 4
CONNECTIONS = 32
DEFAULT_RATE_LIMIT = 20.0
TARGET_FACTOR = 10.0
_VARIANTS = 64
_WARM_UP = 0.5


@dataclass(kw_only=True)
class Load:
    """The outcome of one load run."""

    rps: float
    p50_ms: float
    p99_ms: float
    responses: int
    unexpected: int


def _dealers_bodies() -> list[bytes]:
    frame = pairs(_VARIANTS, dealers=100, seed=SEED)
    bodies = []
    for (vin, price, miles), group in frame.group_by(
        ["vin", "price", "miles"], maintain_order=True
    ):
        dealers = group.select("source", "zip").to_dicts()
        body = {"vin": {"vin": vin, "price": price, "miles": miles}, "dealers": dealers}
        bodies.append(orjson.dumps(body))
    return bodies


def _vins_bodies() -> list[bytes]:
    rng = np.random.default_rng(SEED)
    vehicles = make_vehicles(rng, 20 * _VARIANTS).to_dicts()
    rooftops = Market.default().dealers.select("source", "zip")
    chosen = rooftops[rng.choice(rooftops.height, _VARIANTS, replace=False)].to_dicts()
    return [
        orjson.dumps({"dealer": dealer, "vins": vehicles[20 * i : 20 * (i + 1)]})
        for i, dealer in enumerate(chosen)
    ]


def _requests(host: str, path: str, key: str, bodies: Sequence[bytes]) -> list[bytes]:
    return [
        (
            f"POST {path}?api_key={key} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def _connection(
    host: str, port: int, requests: list[bytes], offset: int, stop: float, out: list[Any]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        i = offset
        while True:
            started = time.perf_counter()
            if started >= stop:
                return
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            out.append((time.perf_counter(), time.perf_counter() - started, status))
    finally:
        writer.close()


async def _load(base_url: str, requests: list[bytes], seconds: float, expect: int) -> Load:
    host_port = base_url.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    out: list[Any] = []
    begin = time.perf_counter()
    stop = begin + _WARM_UP + seconds
    await asyncio.gather(
        *(_connection(host, int(port), requests, i, stop, out) for i in range(CONNECTIONS))
    )
    window = [(lat, status) for done, lat, status in out if done >= begin + _WARM_UP]
    latencies = np.array([lat for lat, _ in window]) * 1000
    return Load(
        rps=len(window) / seconds,
        p50_ms=float(np.percentile(latencies, 50)) if window else float("nan"),
        p99_ms=float(np.percentile(latencies, 99)) if window else float("nan"),
        responses=len(window),
        unexpected=sum(status != expect for _, status in window),
    )


def run(seconds: float, *, progress: Any = print) -> tuple[list[Row], list[str]]:
    """Drive each endpoint for *seconds* (after a short warm-up) with 32 connections."""
    endpoints = {
        "/dealers/rank (100 dealers)": ("/v2/marketmatch/dealers/rank", _dealers_bodies()),
        "/vins/rank (20 VINs)": ("/v2/marketmatch/vins/rank", _vins_bodies()),
    }
    target = TARGET_FACTOR * DEFAULT_RATE_LIMIT
    rows: list[Row] = []
    notes: list[str] = []
    with sandbox_process(rate_limit=1e9) as sandbox:
        host = sandbox.base_url.removeprefix("http://")
        progress("  throughput: HTTP floor (401) ...")
        floor_requests = _requests(host, "/v2/marketmatch/dealers/rank", "not-a-key", [b"{}"])
        floor = asyncio.run(_load(sandbox.base_url, floor_requests, seconds, expect=401))
        for label, (path, bodies) in endpoints.items():
            progress(f"  throughput: {label} ...")
            load = asyncio.run(
                _load(
                    sandbox.base_url, _requests(host, path, sandbox.api_key, bodies), seconds, 200
                )
            )
            name = f"4 sandbox {label}, {CONNECTIONS} clients"
            rows += [
                Row(
                    scenario=name,
                    figure="throughput",
                    unit="req/s",
                    ours=load.rps,
                    bound=floor.rps,
                    target=f"≥ {target:g} (10x default rate limit)",
                    met=load.rps >= target and load.unexpected == 0,
                    higher_is_better=True,
                ),
                Row(
                    scenario=name,
                    figure="latency p50",
                    unit="ms",
                    ours=load.p50_ms,
                    bound=floor.p50_ms,
                    target="reported",
                ),
                Row(
                    scenario=name,
                    figure="latency p99",
                    unit="ms",
                    ours=load.p99_ms,
                    bound=floor.p99_ms,
                    target="reported",
                ),
            ]
            if load.unexpected:
                notes.append(
                    f"Scenario 4: {load.unexpected} of {load.responses} {label} "
                    "responses were not 200."
                )
    notes.append(
        f"Scenario 4: bound = the same server's rate for a 401 (no ranking): "
        f"{floor.rps:,.0f} req/s, p50 {floor.p50_ms:.1f} ms."
    )
    return rows, notes
