"""Interrupting the benchmarks stops the sandbox server they started (no orphaned server).

The piece of ``make bench`` that launches the sandbox (:func:`benchmarks._sandbox.sandbox_process`)
runs in a child interpreter; once its server answers, the driver is sent SIGTERM or SIGINT, and the
server process must be gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
DRIVER = """
import signal
from benchmarks._sandbox import sandbox_process

with sandbox_process(rate_limit=1000) as server:
    print(server.pid, flush=True)
    while True:
        signal.pause()
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_to_the_driver_stops_the_sandbox_server(sig: signal.Signals) -> None:
    """SIGTERM and SIGINT to the bench driver leave no ``sandbox serve`` process behind."""
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server_pid = 0
    try:
        assert driver.stdout is not None
        server_pid = int(driver.stdout.readline())  # printed once the server answers HTTP
        assert "sandbox" in " ".join(psutil.Process(server_pid).cmdline())
        driver.send_signal(sig)
        driver.wait(30)
        assert wait_until(lambda: _gone(server_pid), bool, timeout=20)
    finally:
        driver.kill()
        driver.communicate()
        if server_pid and not _gone(server_pid):  # clean up an orphan this test proved
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server_pid, signal.SIGKILL)
