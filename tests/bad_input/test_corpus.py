"""Run the bad-input corpus against the sandbox over loopback and count what it received."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

import mm_pipeline as mm
from mm_pipeline.cli import cli
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.schemas import FailedMatch, RankedMatch
from tests._support.quota import requests_received
from tests.bad_input.corpus import (
    CASES,
    Case,
    Exits,
    FileInput,
    Ranked,
    Refused,
    Submitted,
    render_table,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"
GROUPS = {"dealers": ["vin", "price", "miles"], "vins": ["source", "zip", "mc_location_id"]}
MAX_MESSAGE = 2_000
"""A refusal message stays readable, whatever the size of the bad values."""


def materialise(value: Any, folder: Path) -> Any:
    """Write a FileInput to ``folder`` and return its path; other inputs pass through."""
    if isinstance(value, FileInput):
        path = folder / value.name
        path.write_bytes(value.content)
        return path
    return value


def call(case: Case, sb: Sandbox, folder: Path) -> Any:
    """Run the case's input through its entry point; return what it returned."""
    value = materialise(case.make(), folder)
    client = mm.MarketMatchClient(sb.api_key, sb.base_url)
    if case.via == "rank_dealers":
        options = {"cache_dir": folder / "cache", **case.options}
        return mm.rank_dealers(value, client=client, progress=False, **options)
    if case.via == "rank_vins":
        return mm.rank_vins(value, client=client, progress=False, **case.options)
    if case.via == "submit":
        return client.batch.configure(cache_dir=folder / "cache").submit(value)
    args = [*case.via.split()[1:], str(value)]
    if case.via == "cli rank dealers":
        args += [str(folder / "out" / "ranked.csv"), "--no-progress"]
    env = {"MARKETCHECK_API_KEY": sb.api_key, "MARKETCHECK_BASE_URL": sb.base_url}
    return CliRunner().invoke(cli, args, env=env)


def assert_ranked(case: Case, expect: Ranked, result: mm.RankResult, received: int) -> None:
    RankedMatch.validate(result.ranked)
    FailedMatch.validate(result.failed)
    assert result.ranked.height == expect.ranked
    assert dict(result.failed.group_by("error_code").len().iter_rows()) == dict(expect.failed)
    messages = "\n".join(result.failed.get_column("error_message").to_list())
    for text in expect.says:
        assert text in messages
    if expect.has:
        matching = result.ranked.filter(**expect.has)
        assert matching.height >= 1, result.ranked.select(*expect.has)
    stats = result.stats
    assert stats.duplicates_removed == expect.duplicates
    # Nothing silently dropped: every input row is ranked, failed or a counted duplicate.
    assert stats.rows == result.ranked.height + result.failed.height + stats.duplicates_removed
    assert received == stats.requests
    if expect.requests is not None:
        assert received == expect.requests
    else:
        assert received >= 4  # list, submit, at least one poll, download
    keys = GROUPS[stats.endpoint]
    ranks = result.ranked.group_by(keys).agg(pl.col("vin_rank").sort(), pl.len())
    for ranked, count in ranks.select("vin_rank", "len").iter_rows():
        assert ranked == list(range(1, count + 1))
    if case.check is not None:
        case.check(result)


def assert_exits(expect: Exits, outcome: Any, folder: Path, received: int) -> None:
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit)
    assert "Traceback" not in outcome.output
    assert outcome.exit_code == expect.code, outcome.output
    for text in expect.says:
        assert text in outcome.output
    if expect.code == 0:
        assert pl.read_csv(folder / "out" / "ranked.csv").height == expect.ranked
        assert pl.read_csv(folder / "out" / "ranked.failed.csv").height == expect.failed
    assert received == expect.requests


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """Each corpus input gets its expected outcome, and the sandbox gets exactly those requests."""
    expect = case.expect
    if isinstance(expect, Refused):
        with pytest.raises(expect.error) as info:
            call(case, clean_sandbox, tmp_path)
        message = str(info.value)
        for text in expect.says:
            assert text in message
        assert len(message) < MAX_MESSAGE
        assert requests_received(clean_sandbox) == 0
        return
    outcome = call(case, clean_sandbox, tmp_path)
    received = requests_received(clean_sandbox)
    if isinstance(expect, Ranked):
        assert_ranked(case, expect, outcome, received)
    elif isinstance(expect, Exits):
        assert_exits(expect, outcome, tmp_path, received)
    else:
        assert isinstance(expect, Submitted)
        assert (outcome.status, outcome.adopted) == ("PROCESSING", False)
        assert received == expect.requests


def test_corpus_is_large_and_distinct() -> None:
    """The corpus has at least 40 cases, each with its own id."""
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


def test_docs_table_is_the_corpus() -> None:
    """docs/bad-input.md is the rendered corpus (regenerate it when the corpus changes)."""
    assert DOCS.read_text() == render_table()
