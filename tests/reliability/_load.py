"""A load generator: many keep-alive clients posting ``/dealers/rank`` for a bounded time.

``python -m tests.reliability._load BASE_URL API_KEY CLIENTS SECONDS`` prints ``load starting``,
then, when done, one JSON object: requests answered, outcomes by kind, latency percentiles of the
successful answers (ms) and throughput. Each client is
one raw HTTP/1.1 connection (asyncio streams, so the generator costs little CPU and the figures
are the server's); a connection the server drops is counted and replaced.

Outcomes: ``ok`` (200), ``injected:<kind>`` (a fault the sandbox marked with
``X-Sandbox-Fault``), ``rate_limited`` (a real 429 of the account's limit), ``dropped`` (the
connection closed without an answer: the sandbox's ``drop`` fault), and ``unexpected:<what>``
for anything else -- which a healthy server never produces.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = ["REQUEST_BODY", "run_load"]

REQUEST_TIMEOUT = 10.0
REQUEST_BODY = orjson.dumps(
    {
        "vin": {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000},
        "dealers": [
            {"source": "mbofaugusta.com", "zip": "30907"},
            {"source": "acceleride.mbofaugusta.com", "zip": "30907"},
            {"source": "acceleride.esterobaychevrolet.com", "zip": "33928"},
        ]
        * 7,  # 21 dealers, repeats included, as a real request may have
    }
)


def _request(host: str, key: str) -> bytes:
    head = (
        f"POST /v2/marketmatch/dealers/rank?api_key={key} HTTP/1.1\r\n"
        f"Host: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(REQUEST_BODY)}\r\n\r\n"
    )
    return head.encode() + REQUEST_BODY


def _classify(status: int, headers: dict[str, str], body: bytes) -> str:
    if status == 200:
        return "ok"
    fault = headers.get("x-sandbox-fault")
    if fault:
        return f"injected:{fault}"
    if status == 429 and b"API rate limit exceeded" in body:
        return "rate_limited"
    return f"unexpected:{status}"


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _client(
    host: str, port: int, request: bytes, deadline: float, outcomes: Counter[str], lat: list[float]
) -> None:
    writer: asyncio.StreamWriter | None = None
    try:
        while time.monotonic() < deadline:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            try:
                status, headers, body = await asyncio.wait_for(
                    _exchange(reader, writer, request), REQUEST_TIMEOUT
                )
            except (asyncio.IncompleteReadError, ConnectionError):
                outcomes["dropped"] += 1
            except TimeoutError:
                outcomes["unexpected:timeout"] += 1
            else:
                outcome = _classify(status, headers, body)
                outcomes[outcome] += 1
                if outcome == "ok":
                    lat.append(time.perf_counter() - started)
                if headers.get("connection", "").lower() != "close":
                    continue
            writer.close()
            writer = None
    except OSError as exc:
        outcomes[f"unexpected:{type(exc).__name__}"] += 1
    finally:
        if writer is not None:
            writer.close()


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run_load(base_url: str, key: str, *, clients: int, seconds: float) -> dict[str, Any]:
    """Run ``clients`` keep-alive clients against ``base_url`` for ``seconds``; summarise."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = _request(f"{host}:{port}", key)
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_client(host, port, request, deadline, outcomes, latencies) for _ in range(clients))
    )
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    answered = sum(v for k, v in outcomes.items() if k != "dropped")
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": sum(outcomes.values()),
        "answers_per_second": round(answered / elapsed, 1),
        "ok_per_second": round(outcomes["ok"] / elapsed, 1),
        "outcomes": dict(sorted(outcomes.items())),
        "latency_ms": {
            "p50": round(_percentile(ordered, 0.50), 2),
            "p95": round(_percentile(ordered, 0.95), 2),
            "p99": round(_percentile(ordered, 0.99), 2),
            "max": round(ordered[-1] * 1000, 2) if ordered else None,
        },
    }


def main(argv: list[str]) -> int:
    """Run the load described by the command line; print the summary as JSON."""
    base_url, key, clients, seconds = argv
    print("load starting", flush=True)
    summary = asyncio.run(run_load(base_url, key, clients=int(clients), seconds=float(seconds)))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
