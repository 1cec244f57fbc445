"""MarketMatchClient and Session against the sandbox over loopback: errors, retries, limits."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest

import mm_pipeline as mm
from mm_pipeline._client import DEFAULT_BASE_URL
from mm_pipeline._session import set_backoff_scale
from mm_pipeline.sandbox import Sandbox, running
from tests.conftest import NO_ACCESS_KEY

DEALERS = "/v2/marketmatch/dealers/rank"
JOBS = "/v2/batch/marketmatch/rank/jobs"
VIN = {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000}
GOOD = orjson.dumps({"vin": VIN, "dealers": [{"source": "mbofaugusta.com", "zip": "30907"}]})
UNKNOWN_DEALER = orjson.dumps(
    {"vin": VIN, "dealers": [{"source": "no-such-dealer-anywhere.example", "zip": "30907"}]}
)


@pytest.fixture(autouse=True)
def fast_backoff() -> Iterator[None]:
    """Retry backoffs take no time (the rate limiter still honours Retry-After)."""
    with set_backoff_scale(0.0):
        yield


@pytest.fixture(scope="module")
def limited() -> Iterator[Sandbox]:
    """A sandbox with a realistic rate limit: 20 req/s."""
    with running(api_keys=["mc_test_limited_account"], rate_limit=20) as sb:
        yield sb


def client(sb: Sandbox, key: str | None = None, **options: float) -> mm.MarketMatchClient:
    return mm.MarketMatchClient(key or sb.api_key, sb.base_url, **options)  # type: ignore[arg-type]


class RecordingTransport(httpx.AsyncHTTPTransport):
    """A real HTTP transport that notes when each request was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(time.monotonic())
        return await super().handle_async_request(request)


# -- configuration ---------------------------------------------------------------------------


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument or MARKETCHECK_API_KEY, construction fails and says how to fix it."""
    monkeypatch.delenv("MARKETCHECK_API_KEY", raising=False)
    with pytest.raises(mm.ConfigurationError, match="MARKETCHECK_API_KEY"):
        mm.MarketMatchClient()
    with pytest.raises(mm.ConfigurationError):
        mm.MarketMatchClient("   ")


def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key and base URL default to their environment variables, then the public host."""
    monkeypatch.setenv("MARKETCHECK_API_KEY", "mc_test_from_environment")
    monkeypatch.setenv("MARKETCHECK_BASE_URL", "http://127.0.0.1:9/")
    assert mm.MarketMatchClient().base_url == "http://127.0.0.1:9"
    monkeypatch.delenv("MARKETCHECK_BASE_URL")
    assert mm.MarketMatchClient().base_url == DEFAULT_BASE_URL
    assert mm.MarketMatchClient(base_url="https://example.test/api").base_url == (
        "https://example.test/api"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrency": 0},
        {"timeout": 0},
        {"max_retries": -1},
        {"retry_deadline": -5},
        {"rate_limit": 0},
        {"base_url": "ftp://example.test"},
        {"base_url": "not a url"},
    ],
)
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    """Out-of-range options raise ConfigurationError before any request."""
    with pytest.raises(mm.ConfigurationError):
        mm.MarketMatchClient("mc_test_options_key", **options)  # type: ignore[arg-type]


def test_repr_shows_options_but_not_the_key() -> None:
    """repr(client) names the base URL and options and masks the key."""
    key = "mc_test_0123456789abcdef"
    text = repr(mm.MarketMatchClient(key, "http://127.0.0.1:9", max_concurrency=3, rate_limit=7))
    assert key not in text
    assert "api_key='mc_t…****'" in text
    assert "max_concurrency=3" in text
    assert "rate_limit=7" in text


def test_options_are_read_only() -> None:
    """Options are exposed as read-only properties."""
    c = mm.MarketMatchClient("mc_test_readonly_key", max_retries=2, retry_deadline=9)
    assert (c.max_concurrency, c.timeout, c.max_retries, c.retry_deadline, c.rate_limit) == (
        8,
        30.0,
        2,
        9.0,
        None,
    )
    with pytest.raises(AttributeError):
        c.max_retries = 5  # type: ignore[misc]


# -- success ---------------------------------------------------------------------------------


async def test_post_json_returns_the_decoded_body(clean_sandbox: Sandbox) -> None:
    """A POST of JSON bytes returns the decoded ranking, in one request."""
    async with client(clean_sandbox).session() as session:
        body = await session.post_json(DEALERS, GOOD)
        assert body["ranked_matches"][0]["vin_rank"] == 1
        assert body["failed_items"] == []
        assert session.stats.requests == 1
        assert session.stats.retries == 0
        assert session.stats.elapsed > 0


async def test_request_and_stream_return_2xx_responses(clean_sandbox: Sandbox) -> None:
    """request() returns a read response; stream() yields one whose body is read in the block."""
    async with client(clean_sandbox).session() as session:
        response = await session.request("GET", JOBS, params={"rows": 5})
        assert response.json()["rows"] == 5
        async with session.stream("GET", JOBS, params={"status": "all"}) as streamed:
            assert streamed.status_code == 200
            raw = b"".join([chunk async for chunk in streamed.aiter_bytes()])
        assert orjson.loads(raw)["total"] == 0
        assert session.stats.requests == 2


async def test_multipart_upload_goes_through_request(clean_sandbox: Sandbox) -> None:
    """A multipart submit with form fields and an Idempotency-Key header is accepted (202)."""
    upload = gzip.compress(
        b"vin,price,miles,source,zip\nWP1BE2AY5PDA28064,20000,3000,a.com,30907\n"
    )
    async with client(clean_sandbox).session() as session:
        response = await session.request(
            "POST",
            JOBS,
            files={"file": ("pairs.csv.gz", upload, "application/gzip")},
            data={"client_reference": "transport-test"},
            headers={"Idempotency-Key": "transport-test-1"},
        )
    assert response.status_code == 202
    assert response.json()["client_reference"] == "transport-test"


# -- error mapping: never retried ------------------------------------------------------------


async def test_401_invalid_key(clean_sandbox: Sandbox) -> None:
    """An unknown key raises AuthenticationError at once."""
    async with client(clean_sandbox, "mc_test_not_a_known_key").session() as session:
        with pytest.raises(mm.AuthenticationError) as info:
            await session.post_json(DEALERS, GOOD)
        assert session.stats.requests == 1
        assert session.stats.errors_by_status == {401: 1}
    err = info.value
    assert (err.status, err.code, err.message) == (401, 401, "Invalid API key")
    assert err.method == "POST"
    assert err.url.endswith(f"{DEALERS}?api_key=REDACTED")


async def test_403_no_access(clean_sandbox: Sandbox) -> None:
    """A key without MarketMatch access raises PermissionDeniedError at once."""
    async with client(clean_sandbox, NO_ACCESS_KEY).session() as session:
        with pytest.raises(mm.PermissionDeniedError, match="Access denied"):
            await session.post_json(DEALERS, GOOD)
        assert session.stats.requests == 1


async def test_400_malformed_json(clean_sandbox: Sandbox) -> None:
    """A malformed body raises InvalidRequestError at once."""
    async with client(clean_sandbox).session() as session:
        with pytest.raises(mm.InvalidRequestError) as info:
            await session.post_json(DEALERS, b'{"vin": ')
        assert session.stats.requests == 1
    assert info.value.status == 400


async def test_422_carries_the_published_extras(clean_sandbox: Sandbox) -> None:
    """A 422 raises UnprocessableError naming the missing dealers, without a retry."""
    async with client(clean_sandbox).session() as session:
        with pytest.raises(mm.UnprocessableError) as info:
            await session.post_json(DEALERS, UNKNOWN_DEALER)
        assert session.stats.requests == 1
    assert info.value.missing_dealers == [
        {"source": "no-such-dealer-anywhere.example", "zip": "30907"}
    ]
    assert info.value.failed_vins == []


async def test_404_unknown_job(clean_sandbox: Sandbox) -> None:
    """An unknown job raises NotFoundError with the published error code."""
    async with client(clean_sandbox).session() as session:
        with pytest.raises(mm.NotFoundError) as info:
            await session.request("GET", f"{JOBS}/00000000-0000-0000-0000-000000000000")
        assert session.stats.requests == 1
    assert info.value.error_code == "job_not_found"


async def test_409_active_job_is_not_retried(clean_sandbox: Sandbox) -> None:
    """A second submit while a job is active raises ConflictError(active_job_exists) at once."""
    clean_sandbox.hold_jobs()
    upload = gzip.compress(
        b"vin,price,miles,source,zip\nWP1BE2AY5PDA28064,20000,3000,a.com,30907\n"
    )
    async with client(clean_sandbox).session() as session:
        for attempt in range(2):
            files = {"file": ("pairs.csv.gz", upload, "application/gzip")}
            if attempt == 0:
                await session.request("POST", JOBS, files=files)
                continue
            with pytest.raises(mm.ConflictError) as info:
                await session.request("POST", JOBS, files=files)
        assert session.stats.requests == 2
    assert info.value.error_code == "active_job_exists"


async def test_413_payload_too_large() -> None:
    """An upload over the size cap raises PayloadTooLargeError(file_too_large) at once."""
    with running(max_file_mb=0.001) as sb:
        async with client(sb).session() as session:
            with pytest.raises(mm.PayloadTooLargeError) as info:
                await session.request(
                    "POST", JOBS, files={"file": ("big.csv.gz", b"\x1f\x8b" + bytes(4096))}
                )
            assert session.stats.requests == 1
    assert info.value.error_code == "file_too_large"


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "502", "503"])
async def test_server_errors_are_retried(clean_sandbox: Sandbox, fault: str) -> None:
    """500, 502 and 503 are retried until a success, and counted."""
    clean_sandbox.inject(fault, count=2)  # type: ignore[arg-type]
    async with client(clean_sandbox).session() as session:
        body = await session.post_json(DEALERS, GOOD)
        assert body["ranked_matches"]
        assert session.stats.requests == 3
        assert session.stats.retries == 2
        assert session.stats.errors_by_status == {int(fault): 2}


async def test_dropped_connections_are_retried(clean_sandbox: Sandbox) -> None:
    """A connection closed without a response counts as a transport error and is retried."""
    clean_sandbox.inject("drop", count=2)
    async with client(clean_sandbox).session() as session:
        assert (await session.post_json(DEALERS, GOOD))["ranked_matches"]
        assert session.stats.transport_errors == 2
        assert session.stats.retries == 2


async def test_timeouts_are_retried() -> None:
    """A response slower than the timeout is abandoned and retried."""
    with running(slow_ms=1000) as sb:
        sb.inject("slow")
        async with client(sb, timeout=0.3).session() as session:
            assert (await session.post_json(DEALERS, GOOD))["ranked_matches"]
            assert session.stats.transport_errors == 1
            assert session.stats.retries == 1


async def test_retries_are_bounded(clean_sandbox: Sandbox) -> None:
    """After max_retries the last error is raised."""
    clean_sandbox.inject("503", count=10)
    async with client(clean_sandbox, max_retries=2).session() as session:
        with pytest.raises(mm.ServerError) as info:
            await session.post_json(DEALERS, GOOD)
        assert session.stats.requests == 3
        assert session.stats.retries == 2
    assert info.value.status == 503


async def test_exhausted_drops_raise_transport_error(clean_sandbox: Sandbox) -> None:
    """Dropped connections beyond max_retries raise TransportError naming the failure."""
    clean_sandbox.inject("drop", count=10)
    async with client(clean_sandbox, max_retries=1).session() as session:
        with pytest.raises(mm.TransportError) as info:
            await session.post_json(DEALERS, GOOD)
    assert info.value.kind in {"RemoteProtocolError", "ReadError"}  # closed vs reset
    assert info.value.url.endswith("?api_key=REDACTED")


async def test_retry_false_sends_once(clean_sandbox: Sandbox) -> None:
    """With retry=False a retryable error is raised after one attempt."""
    clean_sandbox.inject("503")
    async with client(clean_sandbox).session() as session:
        with pytest.raises(mm.ServerError):
            await session.request("GET", JOBS, retry=False)
        assert session.stats.requests == 1


async def test_connection_refused_is_a_transport_error() -> None:
    """Nothing listening: ConnectError, retried, then TransportError."""
    with running() as sb:
        base_url = sb.base_url
    async with mm.MarketMatchClient("mc_test_refused_key", base_url, max_retries=1).session() as s:
        with pytest.raises(mm.TransportError) as info:
            await s.post_json(DEALERS, GOOD)
        assert s.stats.requests == 2
    assert info.value.kind == "ConnectError"


# -- 429 and the rate limiter ----------------------------------------------------------------


async def test_429_is_retried_after_retry_after(clean_sandbox: Sandbox) -> None:
    """A 429 pauses every sender for Retry-After (1 s here) and then succeeds."""
    transport = RecordingTransport()
    clean_sandbox.inject("429")
    c = mm.MarketMatchClient(clean_sandbox.api_key, clean_sandbox.base_url, transport=transport)
    async with c.session() as session:
        assert (await session.post_json(DEALERS, GOOD))["ranked_matches"]
        assert session.stats.rate_limited == 1
        assert session.stats.retries == 1
        assert session.limiter.pauses == 1
    first, second = transport.sent
    assert second - first >= 1.0  # the sandbox's Retry-After


async def test_429_without_retry_after_is_retried(clean_sandbox: Sandbox) -> None:
    """A 429 without Retry-After is retried with backoff."""
    clean_sandbox.inject("429_no_retry_after")
    async with client(clean_sandbox).session() as session:
        assert (await session.post_json(DEALERS, GOOD))["ranked_matches"]
        assert session.stats.rate_limited == 1


async def test_the_limiter_keeps_under_the_account_rate(limited: Sandbox) -> None:
    """Thirty concurrent requests against a 20 req/s account (bucket of 20) draw no 429."""
    limited.reset()
    async with client(limited).session() as session:
        results = await asyncio.gather(
            *(session.request("GET", JOBS, params={"rows": 1}) for _ in range(30))
        )
        assert all(r.status_code == 200 for r in results)
        assert session.stats.rate_limited == 0
        assert session.stats.requests == 30
        assert session.limiter.rate == pytest.approx(20 * 0.97)


async def test_later_sessions_start_at_the_learned_pace(limited: Sandbox) -> None:
    """A client's first session starts at 5 req/s; the next at the pace the first learned."""
    limited.reset()
    shared = client(limited)
    async with shared.session() as first:
        assert first.limiter.rate == pytest.approx(5.0)
        await first.request("GET", JOBS, params={"rows": 1})
    async with shared.session() as second:
        assert second.limiter.rate == pytest.approx(20 * 0.97)
        assert second.limiter.learned is None  # still learned afresh from the headers


async def test_quota_exhausted_is_raised_at_once() -> None:
    """Once the monthly quota is spent, a 429 raises QuotaExhaustedError without retrying."""
    with running(quota=3) as sb:
        async with client(sb).session() as session:
            for _ in range(3):
                await session.post_json(DEALERS, GOOD)
            with pytest.raises(mm.QuotaExhaustedError) as info:
                await session.post_json(DEALERS, GOOD)
            assert session.stats.requests == 4
            assert session.stats.retries == 0
            assert session.stats.rate_limited == 1
    err = info.value
    now = datetime.now(UTC)
    first_of_next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert err.resets_at is not None
    assert abs((err.resets_at - first_of_next_month).total_seconds()) < 5
    assert "resets at" in str(err)
    assert "not retried" in str(err)


# -- sessions --------------------------------------------------------------------------------


async def test_a_client_serves_several_sessions(clean_sandbox: Sandbox) -> None:
    """Sessions are independent: each opens its own pool and counts its own requests."""
    c = client(clean_sandbox)
    for _ in range(2):
        async with c.session() as session:
            await session.post_json(DEALERS, GOOD)
            assert session.stats.requests == 1
