"""Batch responses a real server rarely produces, served in-process (httpx.MockTransport).

Missing, extra and repeated rows in a result file, codes sent only inside ``message``, cursors
that repeat, downloads without a checksum header: the client must stay correct on each.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._batch_route import BatchOptions, rank_pairs_batch

JOBS = "/v2/batch/marketmatch/rank/jobs"
VIN = "WP1BE2AY5PDA28064"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body), headers=headers)


def _job(job_id: str, status: str, reference: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"job_id": job_id, "status": status, "progress_percent": 100}
    if reference is not None:
        body["client_reference"] = reference
    return body


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> mm.MarketMatchClient:
    return mm.MarketMatchClient(
        api_key="mc_test_shapes_key",
        base_url="http://fake.test",
        transport=httpx.MockTransport(handler),
        max_retries=0,
    )


def test_list_stops_on_a_repeated_cursor() -> None:
    """A server that hands back a cursor it already gave does not cause an endless loop."""
    pages = {None: (["a", "b"], "c1"), "c1": (["c"], "c2"), "c2": (["d"], "c1")}
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        seen.append(cursor)
        ids, following = pages[cursor]
        return _json({"jobs": [_job(i, "COMPLETED") for i in ids], "next_cursor": following})

    jobs = _client(handler).batch.list(rows=2)
    assert [j.job_id for j in jobs] == ["a", "b", "c", "d"]
    assert seen == [None, "c1", "c2"]


def test_conflict_code_only_in_message(tmp_path: Path) -> None:
    """A 409 whose code is only inside the message is still active_job_exists (never retried)."""
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.method == "POST":
            posts += 1
            return _json({"code": 409, "message": "active_job_exists: one job at a time"}, 409)
        return _json({"jobs": [_job("theirs", "PROCESSING", "someone-else")]})

    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"vin,price,miles,source,zip\n"))
    jobs = _client(handler).batch.configure(poll_interval=0.01, active_job_timeout=0.05)
    with pytest.raises(mm.BatchError, match=r"another batch job \(theirs\) is active"):
        jobs.submit(path)
    assert posts >= 1


def _pairs() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "vin": [VIN] * 3,
            "price": [20000] * 3,
            "miles": [3000] * 3,
            "source": ["a.com", "b.com", "c.com"],
            "zip": ["30907", "30908", "30909"],
            "mc_location_id": [None, None, None],
            "_row": [0, 1, 2],
        },
        schema_overrides={"mc_location_id": pl.String},
    )


def _result_file() -> bytes:
    lines = [
        "vin,price,miles,source,zip,mc_location_id,vin_score,dealer_ymm_score,vin_rank,error",
        f"{VIN},20000,3000,a.com,30907,loc-a,1500,900,1,",
        # b.com: a failed copy first, then the ranked row (the ranked one wins)
        f"{VIN},20000,3000,b.com,30908,,,,,dealer_not_found",
        f"{VIN},20000,3000,b.com,30908,loc-b,1400,800,2,",
        # c.com is missing; z.com was never sent
        f"{VIN},20000,3000,z.com,30999,loc-z,1300,700,3,",
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode())


class _FakeServer:
    """Just enough of the batch API: one job, completed, with a scripted result file."""

    def __init__(self, body: bytes, *, checksum: str | None, bodies: list[bytes] | None = None):
        self.body = body
        self.checksum = checksum
        self.bodies = list(bodies or [])
        self.downloads = 0
        self.reference: str | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == JOBS and request.method == "GET":
            jobs = [] if self.reference is None else [_job("j1", "COMPLETED", self.reference)]
            return _json({"jobs": jobs, "total": len(jobs)})
        if path == JOBS:
            text = request.content.decode("latin-1")
            self.reference = text.split('name="client_reference"\r\n\r\n')[1].split("\r\n")[0]
            return _json(_job("j1", "PROCESSING", self.reference), 202)
        if path == f"{JOBS}/j1":
            return _json(_job("j1", "COMPLETED", self.reference))
        if path == f"{JOBS}/j1/download":
            self.downloads += 1
            body = self.bodies.pop(0) if self.bodies else self.body
            headers = {"X-Remaining-Downloads": str(3 - self.downloads)}
            if self.checksum is not None:
                headers["X-File-Checksum"] = self.checksum
            return httpx.Response(200, content=body, headers=headers)
        return _json({"code": 404, "message": "not found"}, 404)


async def _run(server: _FakeServer, tmp_path: Path, pairs: pl.DataFrame | None = None) -> Any:
    client = _client(server)
    options = BatchOptions(cache_dir=tmp_path, poll_interval=0.01)
    pairs = _pairs() if pairs is None else pairs
    async with client.session() as session:
        return await rank_pairs_batch(pairs, session=session, options=options, progress=False)


async def test_result_rows_missing_extra_and_repeated(tmp_path: Path) -> None:
    """Missing pairs fail as missing_from_result; extra and repeated rows are counted, not used."""
    body = _result_file()
    server = _FakeServer(body, checksum="sha256=" + hashlib.sha256(body).hexdigest())
    outcome = await _run(server, tmp_path)
    assert outcome.ranked["source"].to_list() == ["a.com", "b.com"]
    assert outcome.ranked["mc_location_id"].to_list() == ["loc-a", "loc-b"]
    assert outcome.failed.select("source", "error_code").rows() == [
        ("c.com", "missing_from_result")
    ]
    assert outcome.failed["_row"].to_list() == [2]
    notes = outcome.notes
    assert notes["batch_missing_from_result"] == 1
    assert notes["batch_unexpected_result_rows"] == 1
    assert notes["batch_duplicate_result_rows"] == 1
    assert outcome.job_ids == ("j1",)


async def test_download_without_checksum_header_checks_gzip(tmp_path: Path) -> None:
    """Without X-File-Checksum a cut-off gzip body is still detected and retried."""
    body = _result_file()
    server = _FakeServer(body, checksum=None, bodies=[body[: len(body) // 2]])
    with pytest.warns(mm.BatchDownloadWarning, match="not a complete gzip stream"):
        outcome = await _run(server, tmp_path)
    assert server.downloads == 2
    assert outcome.ranked.height == 2


async def test_checksum_mismatch_uses_every_slot_then_fails(tmp_path: Path) -> None:
    """Every download mismatching its checksum ends in ChecksumMismatchError after 3 slots."""
    server = _FakeServer(_result_file(), checksum="0" * 64)
    with pytest.warns(mm.BatchDownloadWarning), pytest.raises(mm.ChecksumMismatchError) as info:
        await _run(server, tmp_path)
    assert server.downloads == 3
    assert info.value.job_id == "j1"
    # nothing unverified is kept (the job's lock file stays, as lock files do)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j1.csv.gz.lock"]  # noqa: ASYNC240


async def test_a_result_without_rooftop_ids_cannot_confirm_a_given_id(tmp_path: Path) -> None:
    """A result file that leaves out mc_location_id: a pair naming an id is not ranked (the
    score may be another rooftop's); pairs without an id are ranked as usual."""
    lines = ["vin,price,miles,source,zip,vin_score,dealer_ymm_score,vin_rank,error"]
    lines += [
        f"{VIN},20000,3000,{s}.com,3090{i + 7},1500,900,{i + 1}," for i, s in enumerate("abc")
    ]
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    server = _FakeServer(body, checksum="sha256=" + hashlib.sha256(body).hexdigest())
    pairs = _pairs().with_columns(mc_location_id=pl.Series([None, "loc-b", None], dtype=pl.String))
    outcome = await _run(server, tmp_path, pairs)
    assert outcome.ranked["source"].to_list() == ["a.com", "c.com"]
    assert outcome.failed.select("source", "mc_location_id", "error_code").rows() == [
        ("b.com", "loc-b", "location_unconfirmed")
    ]
    assert "could not be confirmed" in outcome.failed["error_message"][0]
    assert outcome.notes["batch_locations_unconfirmed"] == 1


async def test_a_result_file_echoing_the_key_is_redacted(tmp_path: Path) -> None:
    """Result-file text (error codes and messages, rooftop ids) never carries the API key."""
    key = "mc_test_shapes_key"
    lines = ["vin,price,miles,source,zip,mc_location_id,vin_score,dealer_ymm_score,vin_rank,error"]
    lines += [
        f"{VIN},20000,3000,a.com,30907,{key},1500,900,1,",
        f"{VIN},20000,3000,b.com,30908,,,,,dealer_not_found: no dealer for key {key}",
        f"{VIN},20000,3000,c.com,30909,,,,,{key}: api_key={key}",
    ]
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    server = _FakeServer(body, checksum="sha256=" + hashlib.sha256(body).hexdigest())
    outcome = await _run(server, tmp_path)
    frames = pl.concat([outcome.ranked, outcome.failed], how="diagonal_relaxed")
    assert key not in frames.write_csv()
    assert outcome.ranked["mc_location_id"].to_list() == ["REDACTED"]
    assert outcome.failed.select("error_code", "error_message").rows() == [
        ("dealer_not_found", "batch job j1: no dealer for key REDACTED"),
        ("redacted", "batch job j1: api_key=REDACTED"),
    ]
