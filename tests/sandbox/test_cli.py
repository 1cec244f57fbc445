"""``mm-pipeline sandbox serve`` as a real process: prints its URL, serves, stops cleanly."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mm_pipeline.cli import cli

JOBS = "/v2/batch/marketmatch/rank/jobs"


def launch(*args: str) -> subprocess.Popen[str]:
    """Start ``mm-pipeline sandbox serve`` on a free port with *args*."""
    return subprocess.Popen(
        [sys.executable, "-m", "mm_pipeline", "sandbox", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def base_url(process: subprocess.Popen[str], timeout: float = 90) -> str:
    """Wait for the base URL the process prints."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=1):
            line = process.stdout.readline()
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                return found.group(0)
            if not line:
                break
    process.kill()
    pytest.fail(f"no base URL printed; stderr: {process.communicate()[1]}")


def output(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Wait for the process to end; return the rest of its stdout and its stderr."""
    process.wait(timeout=30)
    assert process.stdout is not None
    assert process.stderr is not None
    return process.stdout.read(), process.stderr.read()


def test_serve_prints_url_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """Two servers print their URL, answer as configured, and exit 0 on SIGTERM and on SIGINT."""
    key = "mc_test_cli_secret_key"
    configured = launch(
        "--api-key",
        key,
        "--no-access-key",
        "mc_test_cli_blocked",
        "--state-dir",
        str(tmp_path),
        "--rate-limit",
        "50",
    )
    demo = launch("--enable-control", "--quiet")
    try:
        url, demo_url = base_url(configured), base_url(demo)
        ok = httpx.get(url + JOBS, params={"api_key": key})
        blocked = httpx.get(url + JOBS, params={"api_key": "mc_test_cli_blocked"})
        demo_key_refused = httpx.get(url + JOBS, params={"api_key": "mc_test_sandbox_demo"})
        no_control = httpx.post(url + "/_sandbox/reset")
        demo_ok = httpx.get(demo_url + JOBS, params={"api_key": "mc_test_sandbox_demo"})
        control = httpx.post(demo_url + "/_sandbox/reset")
    finally:
        configured.send_signal(signal.SIGTERM)
        demo.send_signal(signal.SIGINT)
        out, err = output(configured)
        demo_out, demo_err = output(demo)
    assert (ok.status_code, ok.headers["RateLimit-Limit"]) == (200, "50")
    assert blocked.status_code == 403
    assert demo_key_refused.status_code == 401
    assert no_control.status_code == 404  # control API off unless --enable-control
    assert (demo_ok.status_code, control.status_code) == (200, 200)
    assert (configured.returncode, demo.returncode) == (0, 0), err + demo_err
    assert (tmp_path / "jobs").is_dir()
    assert "mc_test_sandbox_demo" in demo_out  # the demo key is announced
    assert "api_key=REDACTED" in out + err  # the access log hides the key
    assert key not in out + err


def test_serve_help_lists_every_option() -> None:
    """--help documents the options the issue asks for."""
    result = CliRunner().invoke(cli, ["sandbox", "serve", "--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--api-key",
        "--no-access-key",
        "--state-dir",
        "--rate-limit",
        "--quota",
        "--latency-ms",
        "--fault-rate",
        "--max-file-mb",
        "--allow-local-webhooks",
        "--job-seconds",
        "--seed",
        "--enable-control",
    ):
        assert option in result.output


def test_serve_refuses_a_bad_configuration() -> None:
    """A negative latency is a usage error (exit 2), not a traceback."""
    result = CliRunner().invoke(cli, ["sandbox", "serve", "--latency-ms", "-5"])
    assert result.exit_code == 2
    assert "latency_ms must not be negative" in result.output


def test_serve_logs_every_request_as_one_redacted_access_line() -> None:
    """Without --quiet, uvicorn's access lines are kept, redacted, with no logging error."""
    key = "mc_test_cli_access_log_key"
    server = launch("--api-key", key)
    try:
        url = base_url(server)
        with httpx.Client(base_url=url) as client:
            statuses = [
                client.get(JOBS, params={"api_key": key}).status_code,
                client.get(JOBS, params={"api_key": key, "rows": "5"}).status_code,
                client.get(JOBS + "/no-such-job", params={"api_key": key}).status_code,
                client.get(JOBS, params={"api_key": key + "-wrong"}).status_code,
            ]
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = output(server)
    assert statuses == [200, 200, 404, 401]
    assert "Logging error" not in out + err, err
    access = [line for line in err.splitlines() if '"GET /v2/' in line]
    assert len(access) == 4, err
    assert f'"GET {JOBS}?api_key=REDACTED HTTP/1.1" 200' in access[0]
    assert f'"GET {JOBS}?api_key=REDACTED&rows=5 HTTP/1.1" 200' in access[1]
    assert access[2].endswith(f'"GET {JOBS}/no-such-job?api_key=REDACTED HTTP/1.1" 404 Not Found')
    assert access[3].endswith(f'"GET {JOBS}?api_key=REDACTED HTTP/1.1" 401 Unauthorized')
    assert key not in out + err
