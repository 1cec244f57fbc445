"""The answer cache: a rerun the same day sends nothing, against the sandbox's own request count.

Requests are counted by the sandbox (``ServedRequests``: the account's spent quota), not by the
client, so a request the client forgot to count would still show.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import mm_pipeline as mm
from mm_pipeline import _answer_cache
from mm_pipeline._answer_cache import ANSWERS_FOLDER, MAGIC, AnswerCache, account_scope
from mm_pipeline._redact import register_secret
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.conftest import OTHER_KEY, TEAMMATE_KEY, make_vins
from tests.reliability._support import ServedRequests, placement_pairs

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The answer cache's clock: ``clock[0]`` is now (noon UTC until a test moves it)."""
    now = [NOON]
    monkeypatch.setattr(_answer_cache, "_utcnow", lambda: now[0])
    return now


def known_pairs(vehicles: int, dealers: int, *, offset: int = 0) -> pl.DataFrame:
    """Decodable vehicles against sandbox rooftops: every request is answered 200."""
    cars = pl.DataFrame(
        {
            "vin": make_vins(vehicles, offset=offset),
            "price": [15_000 + 370 * i for i in range(vehicles)],
            "miles": [1_000 + 2_900 * i for i in range(vehicles)],
        }
    )
    rooftops = Market.default().dealers.slice(offset, dealers).select("source", "zip")
    return mm.cross_pairs(cars, rooftops)


def pairs_of_mixed_groups() -> pl.DataFrame:
    """Groups of 150 dealers (ranked in rounds) and of 4 (one request each)."""
    return known_pairs(2, 150).vstack(known_pairs(3, 4, offset=300))


def entries(cache_dir: Path) -> list[Path]:
    """Every answer file (temporary files excluded)."""
    return sorted(
        p for p in (cache_dir / ANSWERS_FOLDER).rglob("*") if p.is_file() and p.suffix != ".tmp"
    )


def rank(
    sb: Sandbox,
    pairs: pl.DataFrame,
    cache_dir: Path,
    *,
    key: str | None = None,
    cache_ttl: timedelta | float | None = None,
) -> mm.RankResult:
    """rank_dealers online on ``sb`` with the answer cache in ``cache_dir``."""
    client = mm.MarketMatchClient(key or sb.api_key, sb.base_url)
    return mm.rank_dealers(
        pairs,
        client=client,
        mode="online",
        cache_dir=cache_dir,
        cache_ttl=cache_ttl,
        progress=False,
    )


def assert_same(first: mm.RankResult, second: mm.RankResult) -> None:
    assert_frame_equal(first.ranked, second.ranked)
    assert_frame_equal(first.failed, second.failed)


def test_rerun_sends_nothing_and_returns_identical_frames(
    clean_sandbox: Sandbox, tmp_path: Path, clock: list[datetime]
) -> None:
    """A second identical rank_dealers and rank_vins the same day send 0 requests."""
    pairs = pairs_of_mixed_groups()
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        first = rank(clean_sandbox, pairs, tmp_path)
        sent = served()
        clock[0] = NOON + timedelta(hours=11, minutes=59)  # 23:59, the same UTC day
        second = rank(clean_sandbox, pairs, tmp_path)
        assert served() == sent  # the sandbox saw nothing new
    assert sent == first.stats.requests > 0
    assert first.stats.rerank_requests > 0
    assert first.stats.cached_answers == 0
    assert (second.stats.requests, second.stats.retries) == (0, 0)
    assert second.stats.cached_answers == first.stats.requests
    assert "answers from the cache" in repr(second)
    assert_same(first, second)

    client = mm.MarketMatchClient(clean_sandbox.api_key, clean_sandbox.base_url)
    by_dealer = pairs.filter(pl.col("source") == pairs.get_column("source")[0])
    vins_first = mm.rank_vins(by_dealer, client=client, cache_dir=tmp_path, progress=False)
    vins_second = mm.rank_vins(by_dealer, client=client, cache_dir=tmp_path, progress=False)
    assert vins_first.stats.requests > 0
    assert (vins_second.stats.requests, vins_second.stats.cached_answers) == (
        0,
        vins_first.stats.requests,
    )
    assert_same(vins_first, vins_second)


def test_refusals_are_not_kept(
    clean_sandbox: Sandbox, tmp_path: Path, clock: list[datetime]
) -> None:
    """A 422 is asked again on a rerun (only 200 answers are kept); the rest is cached."""
    pairs = placement_pairs(2, 3)  # 2 vehicles + an undecodable one; 3 rooftops + an unknown one
    first = rank(clean_sandbox, pairs, tmp_path)
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        before = served()
        second = rank(clean_sandbox, pairs, tmp_path)
        resent = served() - before
    # Each decodable vehicle: a 422 naming the unknown rooftop, then the rest (200, cached);
    # the undecodable one: a 422 for the whole request.
    assert (first.stats.requests, first.stats.resent_after_422) == (5, 2)
    assert resent == second.stats.requests == 3
    assert second.stats.cached_answers == 2
    assert len(entries(tmp_path)) == 2
    assert_same(first, second)


def test_damaged_entries_and_half_written_files_are_fetched_again(
    clean_sandbox: Sandbox, tmp_path: Path, clock: list[datetime]
) -> None:
    """A cut-short or altered entry is ignored, asked again and replaced; a .tmp is never read."""
    pairs = known_pairs(4, 20)  # one request per vehicle
    first = rank(clean_sandbox, pairs, tmp_path)
    files = entries(tmp_path)
    assert len(files) == 4
    cut, altered, garbage = files[0], files[1], files[2]
    cut.write_bytes(cut.read_bytes()[:-40])  # as if the writer had died mid-write
    raw = bytearray(altered.read_bytes())
    raw[-5] ^= 0x01
    altered.write_bytes(bytes(raw))
    garbage.write_bytes(b"\x00" * 10)
    leftover = files[3].with_name(f".{files[3].name[:16]}.abc.tmp")
    leftover.write_bytes(MAGIC + b"2026-12-02T11:00:00+00:00 0")  # a killed writer's temp file
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        before = served()
        second = rank(clean_sandbox, pairs, tmp_path)
        assert served() - before == 3
    assert (second.stats.requests, second.stats.cached_answers) == (3, 1)
    assert_same(first, second)
    assert entries(tmp_path) == files  # replaced in place, all intact again
    third = rank(clean_sandbox, pairs, tmp_path)
    assert (third.stats.requests, third.stats.cached_answers) == (0, 4)


def test_answers_expire_at_the_end_of_the_day_or_after_cache_ttl(
    clean_sandbox: Sandbox, tmp_path: Path, clock: list[datetime]
) -> None:
    """Default: valid until midnight UTC; cache_ttl sets a duration instead (clock injected)."""
    pairs = known_pairs(2, 5)
    first = rank(clean_sandbox, pairs, tmp_path)
    clock[0] = datetime(2026, 12, 3, 0, 1, tzinfo=UTC)  # the next UTC day
    assert rank(clean_sandbox, pairs, tmp_path).stats.requests == first.stats.requests

    clock[0] = NOON + timedelta(days=5)
    ttl = rank(clean_sandbox, pairs, tmp_path / "ttl", cache_ttl=timedelta(hours=1))
    clock[0] += timedelta(minutes=59)
    kept = rank(clean_sandbox, pairs, tmp_path / "ttl", cache_ttl=3_600)
    clock[0] += timedelta(hours=25)  # a ttl spans days: yesterday's folder is read too
    long_ttl = rank(clean_sandbox, pairs, tmp_path / "ttl", cache_ttl=timedelta(days=2))
    clock[0] += timedelta(minutes=2)  # now past the 1-hour ttl of the first answers
    expired = rank(clean_sandbox, pairs, tmp_path / "ttl", cache_ttl=3_600)
    assert ttl.stats.requests > 0
    assert (kept.stats.requests, long_ttl.stats.requests) == (0, 0)
    assert expired.stats.requests == ttl.stats.requests
    assert_same(ttl, expired)
    with pytest.raises(ValueError, match="cache_ttl must be positive"):
        rank(clean_sandbox, pairs, tmp_path, cache_ttl=0)


@pytest.mark.parametrize("key", [OTHER_KEY, TEAMMATE_KEY], ids=["other account", "other key"])
def test_another_key_shares_no_answers(
    clean_sandbox: Sandbox, tmp_path: Path, clock: list[datetime], key: str
) -> None:
    """Answers are kept per key (and base URL): another key asks for itself."""
    pairs = known_pairs(2, 5)
    first = rank(clean_sandbox, pairs, tmp_path)
    with ServedRequests.on(clean_sandbox, key) as served:
        before = served()
        other = rank(clean_sandbox, pairs, tmp_path, key=key)
        assert served() - before == first.stats.requests
    assert other.stats.cached_answers == 0
    assert_same(first, other)
    assert len(entries(tmp_path)) == 2 * first.stats.requests  # one set per key


def test_the_key_is_in_no_file_name_nor_content(
    clean_sandbox: Sandbox, tmp_path: Path, clock: list[datetime]
) -> None:
    """Neither the key nor any 8-character piece of it is in the cache's names or bytes."""
    rank(clean_sandbox, known_pairs(3, 30), tmp_path)
    key = clean_sandbox.api_key
    pieces = {key[i : i + 8] for i in range(len(key) - 7)}
    everything = list(tmp_path.rglob("*"))
    assert len(everything) > 3
    for path in everything:
        name = str(path.relative_to(tmp_path))
        content = path.read_bytes() if path.is_file() else b""
        for piece in pieces:
            assert piece not in name
            assert piece.encode() not in content


def test_a_cache_that_cannot_be_written_warns_once(
    clean_sandbox: Sandbox, tmp_path: Path, clock: list[datetime], caplog: pytest.LogCaptureFixture
) -> None:
    """A cache folder that cannot be made: one warning, and the ranking goes on uncached."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    pairs = known_pairs(3, 5)
    with caplog.at_level(logging.WARNING, logger="mm_pipeline.answer_cache"):
        result = rank(clean_sandbox, pairs, blocked)
    warnings = [r for r in caplog.records if r.name == "mm_pipeline.answer_cache"]
    assert len(warnings) == 1
    assert "cannot be written" in warnings[0].getMessage()
    assert result.stats.requests >= 3
    assert_same(result, rank(clean_sandbox, pairs, tmp_path / "fine"))


_WORKER = textwrap.dedent(
    """
    import sys
    import polars as pl
    from datetime import datetime
    import mm_pipeline as mm
    from mm_pipeline import _answer_cache

    _answer_cache._utcnow = lambda: datetime.fromisoformat(sys.argv[6])  # the test's clock
    base_url, key, cache_dir, source, out = sys.argv[1:6]
    client = mm.MarketMatchClient(key, base_url)
    result = mm.rank_dealers(
        pl.read_parquet(source), client=client, mode="online", cache_dir=cache_dir, progress=False
    )
    result.ranked.write_parquet(out)
    """
)


def test_two_processes_at_once_write_valid_entries(
    clean_sandbox: Sandbox, tmp_path: Path, clock: list[datetime]
) -> None:
    """Two processes ranking the same frame into one cache: both right, every entry intact."""
    pairs = known_pairs(12, 40)
    source = tmp_path / "pairs.parquet"
    pairs.write_parquet(source)
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                clean_sandbox.base_url,
                clean_sandbox.api_key,
                str(cache_dir),
                str(source),
                str(tmp_path / f"out{i}.parquet"),
                NOON.isoformat(),
            ],
            env=env,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr.decode()[-2_000:]
    one, two = (pl.read_parquet(tmp_path / f"out{i}.parquet") for i in range(2))
    assert_frame_equal(one, two)
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        before = served()
        again = rank(clean_sandbox, pairs, cache_dir)
        assert served() == before
    assert_frame_equal(again.ranked, one)
    scope = account_scope(clean_sandbox.api_key, clean_sandbox.base_url)
    today = NOON.date().isoformat()
    assert {p.relative_to(cache_dir / ANSWERS_FOLDER).parts[0] for p in entries(cache_dir)} == {
        today
    }
    assert again.stats.cached_answers == len(entries(cache_dir)) == 12
    for path in entries(cache_dir):  # every entry whole: read back by its own name
        assert path.read_bytes().startswith(MAGIC)
    assert not list(cache_dir.rglob("*.tmp"))
    assert AnswerCache(cache_dir, scope=scope).may_hold_answers()


def test_answer_cache_unit(tmp_path: Path) -> None:
    """Entries are per path and body; an answer from another day or the future reads as missing."""
    now = [NOON]
    cache = AnswerCache(tmp_path, scope=account_scope("k", "http://x"), clock=lambda: now[0])
    assert not cache.may_hold_answers()
    cache.put("/a", b"{}", b'{"ok":1}')
    assert cache.may_hold_answers()
    found = cache.get("/a", b"{}"), cache.get("/b", b"{}"), cache.get("/a", b"{ }")
    assert found == (b'{"ok":1}', None, None)
    now[0] = NOON - timedelta(minutes=1)  # an answer from the future is not trusted
    assert cache.get("/a", b"{}") is None
    now[0] = NOON + timedelta(days=1)
    assert cache.get("/a", b"{}") is None
    assert "AnswerCache(folder=" in repr(cache)


def test_an_answer_holding_a_known_key_is_not_kept(tmp_path: Path) -> None:
    """A server that echoes the key in its answer: the answer is used, never written to disk."""
    register_secret("mc_test_echoed_secret_key")
    cache = AnswerCache(tmp_path, scope=account_scope("k", "http://x"), clock=lambda: NOON)
    cache.put("/a", b"{}", b'{"failed_items":[{"error_message":"mc_test_echoed_secret_key"}]}')
    cache.put("/b", b"{}", b'{"ranked_matches":[]}')
    assert cache.get("/a", b"{}") is None
    assert cache.get("/b", b"{}") == b'{"ranked_matches":[]}'
    assert not any(b"echoed" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
