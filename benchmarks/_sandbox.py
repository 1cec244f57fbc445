"""The sandbox in a separate process (``python -m mm_pipeline sandbox serve``).

Scenarios that talk HTTP run the server in its own process, so the client and the server do not
share a GIL (or a core's worth of CPU) and the figures are the client's. The server runs in its own
session (a terminal's Ctrl-C reaches only the driver), so the driver must stop it: on leaving the
``with`` block, on SIGINT/SIGTERM/SIGHUP (:mod:`benchmarks._signals`), and at interpreter exit
as a fallback, its whole process group is terminated.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks._measure import ROOT
from benchmarks._signals import exit_on_signals

__all__ = ["API_KEY", "SandboxProcess", "sandbox_process"]

API_KEY = "mc_test_benchmarks"
_STARTUP_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0
_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass(frozen=True, kw_only=True)
class SandboxProcess:
    """A running sandbox server process."""

    base_url: str
    api_key: str
    pid: int

    def reset(self) -> None:
        """Forget jobs, spent tokens and quota (the control API)."""
        response = httpx.post(self.base_url + "/_sandbox/reset", timeout=30.0)
        response.raise_for_status()


def _wait_for_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        found = _LISTENING.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)  # polling a file the child writes; bounded by the deadline
    raise RuntimeError(f"the sandbox did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _wait_ready(base_url: str) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if client.get(base_url + "/openapi.json").status_code == 200:
                    return
            time.sleep(0.05)  # polling the server with a deadline
    raise RuntimeError(f"the sandbox at {base_url} did not answer within {_STARTUP_TIMEOUT} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate *proc*'s process group (SIGKILL after a grace period) and reap it; idempotent."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(_STOP_TIMEOUT)


@contextlib.contextmanager
def sandbox_process(
    *,
    rate_limit: float,
    latency_ms: float = 0.0,
    quota: int = 1_000_000_000,
    job_seconds: float = 0.0,
    max_file_mb: float = 100.0,
) -> Iterator[SandboxProcess]:
    """Serve a sandbox on a free loopback port in a child process for the ``with`` block."""
    command = [
        sys.executable,
        "-m",
        "mm_pipeline",
        "sandbox",
        "serve",
        "--port=0",
        "--quiet",
        "--enable-control",
        f"--api-key={API_KEY}",
        f"--rate-limit={rate_limit}",
        f"--latency-ms={latency_ms}",
        f"--quota={quota}",
        f"--job-seconds={job_seconds}",
        f"--max-file-mb={max_file_mb}",
    ]
    with (
        exit_on_signals(),
        tempfile.TemporaryDirectory(prefix="mm-bench-sandbox-") as tmp,
    ):
        log = Path(tmp) / "sandbox.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        stop = functools.partial(_stop, proc)
        atexit.register(stop)  # if a second signal interrupts the finally below
        try:
            base_url = _wait_for_url(proc, log)
            _wait_ready(base_url)
            yield SandboxProcess(base_url=base_url, api_key=API_KEY, pid=proc.pid)
        finally:
            stop()
            atexit.unregister(stop)
