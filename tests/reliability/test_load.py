"""Load: the sandbox under 64 concurrent clients, and the library client under the same load.

The sandbox runs as its own process (``mm-pipeline sandbox serve``, 2% injected faults, a rate
limit the load exceeds at times); a load-generator process keeps 64 keep-alive clients busy for
``MM_LOAD_SECONDS`` (default 8; the 60 s figure of docs/reliability.md is
``MM_LOAD_SECONDS=60``). Meanwhile this process ranks the same work with ``mm.rank_dealers``
again and again. Proved: every answer is a success, an injected fault or the rate limit; the
sandbox's memory stays flat; the library never holds more connections than
``max_concurrency``, gets the same frames every time, and closes every socket and file it
opened (no ResourceWarning, the same open file descriptors before and after).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

import mm_pipeline as mm
from tests.reliability._proxy import address
from tests.reliability._support import KEY, assert_same_frames, placement_pairs

pytestmark = pytest.mark.usefixtures("fast_backoff")

REPO = Path(__file__).resolve().parents[2]
LOAD_SECONDS = float(os.environ.get("MM_LOAD_SECONDS", "8"))
CLIENTS = 64
LIBRARY_KEY = "mc_test_reliability_library_key"
"""The library client's own account, so that the load's rate limit does not starve it."""
RATE_LIMIT = 1000
"""Requests per second per account: about what 64 clients send here, so real 429s may occur."""
FAULT_RATE = 0.02
MAX_CONCURRENCY = 8
PAIRS = placement_pairs(31, 19)  # 32 vehicles x 20 dealers: ~64 requests per ranking
RSS_GROWTH_LIMIT = 32 * 2**20
"""Bytes the sandbox may grow by between the end of the warm-up and the end of the load."""


@contextmanager
def _sandbox_process(tmp_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    """``mm-pipeline sandbox serve`` on a free port; yields its base URL and its process."""
    command = [
        sys.executable,
        "-m",
        "mm_pipeline",
        "sandbox",
        "serve",
        "--port=0",
        "--quiet",
        f"--api-key={KEY}",
        f"--api-key={LIBRARY_KEY}",
        f"--rate-limit={RATE_LIMIT}",
        "--quota=1000000000",
        f"--fault-rate={FAULT_RATE}",
        "--seed=5",
    ]
    with (tmp_path / "sandbox.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline().decode()
            assert "listening on http://" in line, (tmp_path / "sandbox.log").read_text()
            yield line.rsplit(" ", 1)[1].strip(), psutil.Process(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
    assert process.returncode == 0, (tmp_path / "sandbox.log").read_text()


def _generate_load(base_url: str, seconds: float) -> Any:
    """Start the load-generator process; return it once its clients are about to start."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability._load",
            base_url,
            KEY,
            str(CLIENTS),
            str(seconds),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"load starting\n"
    return process


def _summary(process: Any) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=LOAD_SECONDS + 60)
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    summary: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return summary


class _Sampler:
    """Samples, until stopped: this process's connections to a port, and a process's RSS."""

    def __init__(self, port: int, server: psutil.Process) -> None:
        self._port = port
        self._server = server
        self._me = psutil.Process()
        self._stop = threading.Event()
        self.max_connections = 0
        self.rss: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def connections(self) -> int:
        """This process's TCP connections to the port, right now (any state)."""
        return sum(
            1
            for c in self._me.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == self._port
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max_connections = max(self.max_connections, self.connections())
            self.rss.append(self._server.memory_info().rss)
            self._stop.wait(0.01)

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(5)


def _open_fds() -> list[str]:
    """What this process's open file descriptors point at."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the descriptor listdir itself used, closed since
            continue
    return sorted(targets)


@pytest.mark.slow
def test_sandbox_and_client_under_64_concurrent_clients(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    """64 clients: only injected faults and 429s, flat memory, p99 measured, nothing leaked."""
    with _sandbox_process(tmp_path) as (base_url, server):
        port = address(base_url)[1]
        client = mm.MarketMatchClient(
            LIBRARY_KEY, base_url, max_concurrency=MAX_CONCURRENCY, max_retries=20, timeout=10
        )
        _summary(_generate_load(base_url, 1.0))  # warm-up: every code path of the server runs
        expected = mm.rank_dealers(PAIRS, client=client, mode="online", progress=False)
        gc.collect()
        fds_before = _open_fds()
        rss_before = server.memory_info().rss
        sampler = _Sampler(port, server)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            load = _generate_load(base_url, LOAD_SECONDS)
            rankings = 0
            while load.poll() is None:
                result = mm.rank_dealers(PAIRS, client=client, mode="online", progress=False)
                assert_same_frames(result, expected)
                rankings += 1
            summary = _summary(load)
            gc.collect()
        sampler.stop()
        rss_after = server.memory_info().rss
        assert sampler.connections() == 0  # every pooled connection was closed
        fds_after = _open_fds()
    assert fds_after == fds_before
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert rankings >= 1
    assert 1 <= sampler.max_connections <= MAX_CONCURRENCY

    outcomes: dict[str, int] = summary["outcomes"]
    unexpected = {k: v for k, v in outcomes.items() if k.startswith("unexpected")}
    assert unexpected == {}
    injected = sum(v for k, v in outcomes.items() if k.startswith("injected:"))
    dropped = outcomes.get("dropped", 0)
    assert outcomes["ok"] > 0
    assert injected > 0
    # 'drop' is one of the six default fault kinds; the other five answer with a status.
    assert dropped <= injected
    # Admitted requests (answered, faulted or dropped) stay within the bucket: its capacity
    # (one second's worth) plus the refill.
    admitted = outcomes["ok"] + injected + dropped
    assert admitted <= RATE_LIMIT * (summary["seconds"] + 1)
    assert rss_after - rss_before < RSS_GROWTH_LIMIT
    figures["load"] = {
        **summary,
        "sandbox_rss_mb": {
            "after_warm_up": round(rss_before / 2**20, 1),
            "max_during_load": round(max(sampler.rss) / 2**20, 1),
            "after_load": round(rss_after / 2**20, 1),
        },
        "library": {
            "rankings_during_load": rankings,
            "requests_per_ranking": expected.stats.requests,
            "max_concurrency": MAX_CONCURRENCY,
            "max_connections_seen": sampler.max_connections,
            "open_fds_before_after": [len(fds_before), len(fds_after)],
        },
    }
