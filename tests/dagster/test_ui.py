"""`python -m dagster_defs.ui`: the UI serves the asset graph, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests._support.dagster_runs import ASSETS, CHECKS
from tests.dagster.conftest import REPO

_QUERY = """
{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } } }
"""
_DEADLINE = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _graphql(url: str, process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """Poll the GraphQL endpoint until it answers with the asset nodes, within the deadline."""
    deadline = time.monotonic() + _DEADLINE
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-4000:]
        try:
            answer = httpx.post(url, json={"query": _QUERY}, timeout=5.0)
            body: dict[str, Any] = answer.json()
            if answer.status_code == 200 and body.get("data", {}).get("assetNodes"):
                return body
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)  # polling interval, not synchronisation: the loop waits on a condition
    raise AssertionError(f"no GraphQL answer within {_DEADLINE}s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_ui_serves_asset_graph_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    """The UI lists every asset and check over GraphQL; SIGINT stops it and all its children."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETCHECK_")}
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster_defs.ui", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        body = _graphql(f"http://127.0.0.1:{port}/graphql", process, log)
        nodes = body["data"]["assetNodes"]
        assert {"/".join(n["assetKey"]["path"]) for n in nodes} == ASSETS
        checks = {
            ("/".join(n["assetKey"]["path"]), c["name"])
            for n in nodes
            for c in (n["assetChecksOrError"] or {}).get("checks", [])
        }
        assert checks == CHECKS
        assert "(embedded sandbox)" in log.read_text()
        family = psutil.Process(process.pid).children(recursive=True)
        assert family  # dagster dev and its webserver / daemon / code server
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5.0)
    finally:  # on failure, leave no process behind
        if process.poll() is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
