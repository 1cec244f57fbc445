"""A quiet, bounded command line: an unreachable API is one line, retries log at DEBUG only.

The console script runs as a real process (with structlog installed, as beside Dagster, so that
stamina's default hook would print to stdout) against a loopback port nothing listens on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mm_pipeline as mm
from mm_pipeline._client import _WAIT_INITIAL, _WAIT_JITTER, _WAIT_MAX
from mm_pipeline.cli import _batch as cli_batch
from mm_pipeline.cli import cli

KEY = "mc_test_quiet_cli_key_0123"


def _closed_port() -> int:
    """A loopback port that refuses connections (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _rank_unreachable(
    tmp_path: Path, *, retries: int, verbose: bool = False
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run ``mm-pipeline [-v] rank dealers`` of one pair against a closed port."""
    source = tmp_path / "pairs.csv"
    source.write_text(
        "vin,price,miles,source,zip\nWP1BE2AY5PDA28064,20000,3000,mbofaugusta.com,30907\n"
    )
    port = _closed_port()
    args = ["rank", "dealers", str(source), str(tmp_path / "out.csv")]
    args += ["--base-url", f"http://127.0.0.1:{port}", "--max-retries", str(retries)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MARKETCHECK_API_KEY": KEY}
    done = subprocess.run(
        [sys.executable, "-m", "mm_pipeline", *(["-v"] if verbose else []), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    return port, done


def test_structlog_is_installed_here() -> None:
    """The scenario that printed retries to stdout: structlog importable (Dagster brings it)."""
    import structlog  # noqa: F401, PLC0415


def test_unreachable_api_is_one_line(tmp_path: Path) -> None:
    """Nothing on stdout; on stderr one line naming the redacted URL and the cause; exit 1."""
    # Retries are scheduled (and must stay quiet); the default bound is tested below.
    port, done = _rank_unreachable(tmp_path, retries=2)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 2
    assert len(lines) == 1, lines  # and no "pass --on-request-failed": it could not help
    (line,) = lines
    assert f"http://127.0.0.1:{port}/v2/marketmatch/dealers/rank?api_key=REDACTED" in line
    assert "ConnectError" in line
    assert "stamina" not in done.stderr
    assert KEY not in done.stderr


def test_verbose_shows_the_retries(tmp_path: Path) -> None:
    """``-v`` logs each attempt and each scheduled retry through the library's logger."""
    _port, done = _rank_unreachable(tmp_path, retries=1, verbose=True)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "mm_pipeline.client DEBUG retry 1 in" in done.stderr
    assert "(attempt 2," in done.stderr
    assert "stamina.retry_scheduled" not in done.stderr
    assert KEY not in done.stderr


def test_default_patience_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """By default a request gets 15 s, retries included, and at most 4 retries.

    With the client's backoff (at most ``wait_initial * 2**n + jitter``, capped), 4 retries
    wait under 10 s in all, so a refused connection gives up within the 15 s deadline.
    """
    seen: list[dict[str, Any]] = []

    def record(api: dict[str, Any]) -> Any:
        seen.append(api)
        return mm.MarketMatchClient(**api)

    monkeypatch.setattr(cli_batch, "make_client", record)
    result = CliRunner().invoke(
        cli,
        ["batch", "status", "job", "--api-key", "", "--base-url", "http://127.0.0.1:9"],
    )
    assert result.exit_code == 1  # no key: stops before any request
    (api,) = seen
    client = mm.MarketMatchClient(**{**api, "api_key": KEY})
    assert (client.retry_deadline, client.timeout, client.max_retries) == (15.0, 15.0, 4)
    worst = sum(
        min(_WAIT_MAX, _WAIT_INITIAL * 2**n + _WAIT_JITTER) for n in range(client.max_retries)
    )
    assert worst < client.retry_deadline


def test_timeout_and_max_retries_flags_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--timeout`` bounds each request (retries included); ``--max-retries`` counts them."""
    seen: list[dict[str, Any]] = []

    def record(api: dict[str, Any]) -> Any:
        seen.append(api)
        raise mm.ConfigurationError("recorded")

    monkeypatch.setattr(cli_batch, "make_client", record)
    CliRunner().invoke(
        cli, ["batch", "status", "job", "--timeout", "2.5", "--max-retries", "0"], env={}
    )
    assert seen[0]["timeout"] == seen[0]["retry_deadline"] == 2.5
    assert seen[0]["max_retries"] == 0


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_library_retries_log_at_debug_not_through_stamina() -> None:
    """In a user's process: the library's retries are DEBUG records of mm_pipeline.client,
    while other code's retries keep stamina's default logging."""
    done = _python(
        """
        import asyncio, logging
        import stamina
        import mm_pipeline as mm

        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append((record.name, record.levelname, record.getMessage()))
        logging.getLogger().addHandler(Keep())
        logging.getLogger("mm_pipeline").setLevel(logging.DEBUG)

        async def ours():
            client = mm.MarketMatchClient("mc_test_k", "http://127.0.0.1:9", max_retries=1)
            async with client.session() as session:
                try:
                    await session.request("GET", "/v2/x")
                except mm.TransportError:
                    pass
        mm._client.set_backoff_scale(0.0)
        asyncio.run(ours())
        print("OURS", [r for r in records if "retry" in r[2]])

        @stamina.retry(on=ValueError, attempts=2, wait_initial=0, wait_jitter=0)
        def theirs():
            raise ValueError("x")
        try:
            theirs()
        except ValueError:
            pass
        """
    )
    assert done.returncode == 0, done.stderr
    ours = done.stdout.split("OURS", 1)[1]
    assert "('mm_pipeline.client', 'DEBUG', \"retry 1 in" in ours
    # Nothing of ours from stamina; the other code's retry is still logged by stamina (structlog).
    (stamina_line,) = [line for line in done.stdout.splitlines() if "stamina.retry" in line]
    assert "theirs" in stamina_line


def test_hooks_a_user_set_are_left_alone() -> None:
    """Hooks set before the import stay exactly as set (and then see the library's retries)."""
    done = _python(
        """
        from stamina.instrumentation import get_on_retry_hooks, set_on_retry_hooks
        def mine(details):
            pass
        set_on_retry_hooks([mine])
        import mm_pipeline
        print(get_on_retry_hooks() == (mine,))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
