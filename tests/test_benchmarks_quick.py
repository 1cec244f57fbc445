"""Keep ``make bench`` from rotting: run its quick mode once and check the table it produces.

Timings are never asserted here (they are noise in a test suite); what is checked is that every
scenario ran and produced its rows, and that the outputs the benchmarks compare are equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import mm_pipeline as mm
from benchmarks._report import Report, Row

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {
    "1": {
        "wall time",
        "speed-up over baseline",
        "429s received ÷ requests",
        "ranked pairs (same as baseline's)",
    },
    "2": {
        "wall time (1 core)",
        "speed-up over baseline",
        "throughput (1 core)",
        "peak RSS added",
        "ranked pairs (same as baseline's)",
    },
    "3": {
        "write .csv.gz",
        "parse result into typed frame",
        "client peak RSS ÷ input frame",
        "sandbox ranks the job",
        "rank_dealers(mode='batch') end to end",
    },
    "4": {"throughput", "latency p50", "latency p99"},
    "5": {"time growth ÷ linear", "peak RSS growth ÷ linear"},
    "6": {
        "mm.assign wall time",
        "mm.assign CPU time",
        "peak RSS added",
        "vehicles placed",
        "total cost (sum of vin_rank)",
    },
    "7": {
        f"requests ÷ achievable minimum, {label}"
        for label in ("K=10 (default)", "K=3 (default)", "K=1", "K=10", "K=0")
    }
    | {"same-day rerun with the answer cache"},
    "8": {
        "rank_dealers(output=) end to end",
        "time per pair",
        "client peak RSS",
        "sandbox peak RSS per job (largest)",
        "write batch files (streamed)",
        "parse results to Parquet",
        "client peak RSS, largest ÷ smallest",
        "time per pair, largest ÷ smallest",
    },
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """Run ``python -m benchmarks --quick`` once; return its stdout and its JSON results."""
    out = tmp_path_factory.mktemp("bench")
    # scenario 8 at small sizes: its --quick sizes (1M and 2M pairs) take minutes
    small = ["--large-pairs", "20000", "40000"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", *small, "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "latest-quick.md").read_text() in done.stdout
    return done.stdout, json.loads((out / "latest-quick.json").read_text())


@pytest.mark.slow
def test_quick_mode_has_every_scenario_row(quick_run: tuple[str, dict[str, Any]]) -> None:
    """The quick run reports every figure of every scenario, each with a number for ours."""
    _stdout, results = quick_run
    seen: dict[str, set[str]] = {}
    for row in results["rows"]:
        seen.setdefault(row["scenario"].split()[0], set()).add(row["figure"])
        assert row["ours"] is not None, row
    assert seen == FIGURES
    assert results["mode"] == "quick"
    cost = [row for row in results["rows"] if row["scenario"].startswith("7 ")]
    assert cost
    assert all(row["met"] for row in cost), cost  # never above the minimum


@pytest.mark.slow
def test_quick_mode_table_is_printed(quick_run: tuple[str, dict[str, Any]]) -> None:
    """The printed table has a header and one line per JSON row."""
    stdout, results = quick_run
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| scenario | figure | ours | baseline | bound |")
    assert len(lines) == 1 + len(results["rows"])


@pytest.mark.slow
def test_quick_mode_outputs_match_the_baseline(quick_run: tuple[str, dict[str, Any]]) -> None:
    """Where ours and the baseline rank the same pairs, their outputs were found identical."""
    _stdout, results = quick_run
    checks = [r for r in results["rows"] if r["figure"] == "ranked pairs (same as baseline's)"]
    assert len(checks) == 2
    assert all(r["met"] for r in checks), checks
    parsed = [r for r in results["rows"] if r["figure"] == "parse result into typed frame"]
    notes = " ".join(results["notes"])
    assert "same rows across ours, pandas and pyarrow: True" in notes, parsed
    assert "parsed results are equal: True" in notes, parsed


def test_ratios_read_the_same_way_for_times_and_rates() -> None:
    """``x bound`` is a cost multiple and ``x baseline`` a speed-up, whatever the unit."""
    time_row = Row(scenario="x", figure="t", unit="s", ours=2.0, baseline=10.0, bound=1.0)
    rate_row = Row(
        scenario="x",
        figure="r",
        unit="1/s",
        ours=50.0,
        baseline=10.0,
        bound=100.0,
        higher_is_better=True,
    )
    assert (time_row.vs_bound, time_row.vs_baseline) == (2.0, 5.0)
    assert (rate_row.vs_bound, rate_row.vs_baseline) == (2.0, 5.0)
    assert Row(scenario="x", figure="f", unit="s", ours=1.0).vs_bound is None


def test_report_counts_targets_and_writes_both_files(tmp_path: Path) -> None:
    """The Markdown counts met targets; the JSON holds the same rows with their ratios."""
    report = Report(mode="test")
    report.add(
        [
            Row(scenario="1 a", figure="f", unit="s", ours=1.0, bound=1.0, target="t", met=True),
            Row(scenario="1 a", figure="g", unit="s", ours=3.0, bound=1.0, target="t", met=False),
            Row(scenario="1 a", figure="h", unit="s", ours=3.0),
        ],
        ["a note"],
    )
    md, js = report.write(tmp_path, "r")
    assert "**1 of 2 targets met.**" in md.read_text()
    assert "- a note" in md.read_text()
    rows = json.loads(js.read_text())["rows"]
    assert [row["vs_bound"] for row in rows] == [1.0, 3.0, None]


async def test_json_posts_reuse_the_merged_url_and_headers() -> None:
    """The hot-path edit in ``Session.post_json`` (scenario 2's profile) sends what httpx would.

    Each POST carries the key, the client's headers, JSON content type and its own length, for
    every path and body; other requests still go through ``build_request``.
    """
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": len(seen)})

    client = mm.MarketMatchClient(
        "mc_test_hot_path_key", "http://api.test/", transport=httpx.MockTransport(answer)
    )
    bodies = [(b"/v2/a", b'{"n":1}'), (b"/v2/a", b'{"n":22}'), (b"/v2/b", b"[]")]
    async with client.session() as session:
        answers = [await session.post_json(path.decode(), body) for path, body in bodies]
        await session.request("GET", "/v2/c", params={"rows": 5})
    assert answers == [{"ok": 1}, {"ok": 2}, {"ok": 3}]
    for request, (path, body) in zip(seen, bodies, strict=False):
        assert str(request.url) == f"http://api.test{path.decode()}?api_key=mc_test_hot_path_key"
        assert request.content == body
        assert request.headers["Content-Length"] == str(len(body))
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("mm-pipeline/")
    assert str(seen[-1].url) == "http://api.test/v2/c?api_key=mc_test_hot_path_key&rows=5"
