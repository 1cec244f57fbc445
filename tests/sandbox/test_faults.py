"""Fault injection: every kind over real HTTP, targeted and random (seeded)."""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter

import httpx
import pytest

from mm_pipeline.sandbox import Sandbox, running
from mm_pipeline.sandbox._faults import FaultPlan
from tests.conftest import SANDBOX_OPTIONS, client_for, csv_gz, wait_for_job

JOBS = "/v2/batch/marketmatch/rank/jobs"
ROWS = [("WP1BE2AY5PDA28064", 20000, 3000, "mbofaugusta.com", "30907")]


@pytest.mark.parametrize(
    ("kind", "status", "retry_after"),
    [
        ("429", 429, "1"),
        ("429_no_retry_after", 429, None),
        ("500", 500, None),
        ("502", 502, None),
        ("503", 503, "1"),
    ],
)
def test_status_faults(
    api: httpx.Client, clean_sandbox: Sandbox, kind: str, status: int, retry_after: str | None
) -> None:
    """An injected status fault answers once in the published error shape, then normal service."""
    before = int(api.get(JOBS).headers["Quota-Remaining"])
    clean_sandbox.inject(kind, count=1)  # type: ignore[arg-type]
    faulted = api.get(JOBS)
    assert faulted.status_code == status
    assert faulted.json()["code"] == status
    assert faulted.headers.get("Retry-After") == retry_after
    assert faulted.headers["X-Sandbox-Fault"] == kind
    assert int(faulted.headers["Quota-Remaining"]) == before  # the fault spent no quota
    served = api.get(JOBS)
    assert served.status_code == 200
    assert int(served.headers["Quota-Remaining"]) == before - 1


def test_drop_fault_closes_the_connection(api: httpx.Client, clean_sandbox: Sandbox) -> None:
    """A dropped connection reaches httpx as a protocol or read error, with no response."""
    clean_sandbox.inject("drop")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get(JOBS)
    assert api.get(JOBS).status_code == 200


def test_slow_fault_outlasts_a_short_timeout() -> None:
    """A slow response takes longer than slow_ms allows a client with a shorter timeout."""
    with running(**{**SANDBOX_OPTIONS, "slow_ms": 400}) as sb:
        sb.inject("slow")
        with client_for(sb, timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
            client.get(JOBS)
        sb.inject("slow")
        with client_for(sb, timeout=5) as client:
            assert client.get(JOBS).status_code == 200


def test_latency_applies_to_every_api_response() -> None:
    """With latency_ms, even a 401 takes longer than a client allowing less; more time suffices."""
    with running(**{**SANDBOX_OPTIONS, "latency_ms": 400}) as sb:
        with (
            client_for(sb, "mc_test_unknown", timeout=0.1) as hasty,
            pytest.raises(httpx.ReadTimeout),
        ):
            hasty.get(JOBS)
        with client_for(sb, "mc_test_unknown", timeout=5) as patient:
            assert patient.get(JOBS).status_code == 401


def test_path_prefix_targets_only_matching_requests(
    api: httpx.Client, clean_sandbox: Sandbox
) -> None:
    """A fault aimed at /v2/marketmatch/ leaves batch requests alone until it is served."""
    clean_sandbox.inject("503", count=2, path_prefix="/v2/marketmatch/")
    assert api.get(JOBS).status_code == 200
    body = {"dealer": {"source": "mbofaugusta.com"}, "vins": []}
    codes = [api.post("/v2/marketmatch/vins/rank", json=body).status_code for _ in range(3)]
    assert codes == [503, 503, 400]


def completed(api: httpx.Client) -> str:
    job_id: str = api.post(JOBS, files={"file": ("a.csv.gz", csv_gz(ROWS))}).json()["job_id"]
    assert wait_for_job(api, job_id)["status"] == "COMPLETED"
    return job_id


def test_corrupt_download_breaks_the_checksum(api: httpx.Client, clean_sandbox: Sandbox) -> None:
    """A corrupted download has the full length but not the advertised checksum."""
    job_id = completed(api)
    clean_sandbox.inject("corrupt_download")
    api.get(JOBS)  # download faults wait for a download request
    bad = api.post(f"{JOBS}/{job_id}/download")
    good = api.post(f"{JOBS}/{job_id}/download")
    assert bad.status_code == good.status_code == 200
    assert len(bad.content) == len(good.content)
    assert hashlib.sha256(bad.content).hexdigest() != bad.headers["X-File-Checksum"]
    assert hashlib.sha256(good.content).hexdigest() == good.headers["X-File-Checksum"]
    assert good.headers["X-Download-Count"] == "2"  # the corrupted one spent a slot
    assert gzip.decompress(good.content).startswith(b"vin,price,miles,source,zip")


def test_truncated_download_is_cut_off(api: httpx.Client, clean_sandbox: Sandbox) -> None:
    """A truncated download ends early: httpx reports an incomplete body."""
    job_id = completed(api)
    clean_sandbox.inject("truncate_download")
    with pytest.raises(httpx.RemoteProtocolError, match=r"complete message body"):
        api.post(f"{JOBS}/{job_id}/download")
    assert api.post(f"{JOBS}/{job_id}/download").headers["X-Download-Count"] == "2"


def test_random_faults_follow_the_rate_and_the_seed() -> None:
    """fault_rate faults about that fraction of requests, the same ones for the same seed."""

    def run(seed: int) -> list[str]:
        plan = FaultPlan(rate=0.3, seed=seed)
        return [str(plan.next_fault("/v2/x")) for _ in range(2000)]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other
    counts = Counter(first)
    assert 450 < 2000 - counts["None"] < 750
    assert set(counts) == {"None", "429", "429_no_retry_after", "500", "502", "503", "drop"}


def test_random_faults_over_http() -> None:
    """With fault_rate=0.5 some requests fail transiently and the rest are served."""
    options = {**SANDBOX_OPTIONS, "fault_rate": 0.5, "seed": 3, "fault_kinds": ["500", "503"]}
    with running(**options) as sb, client_for(sb) as client:
        codes = Counter(client.get(JOBS).status_code for _ in range(40))
    assert set(codes) == {200, 500, 503}


def test_unknown_fault_kind_is_refused(clean_sandbox: Sandbox) -> None:
    """Injecting a kind that does not exist raises ValueError naming the valid ones."""
    with pytest.raises(ValueError, match="truncate_download"):
        clean_sandbox.inject("teapot")  # type: ignore[arg-type]
