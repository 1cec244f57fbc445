"""Session behaviour for response shapes the sandbox does not produce (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

import mm_pipeline as mm
from mm_pipeline._session import set_backoff_scale

KEY = "mc_test_shapes_0123456789"
PATH = "/v2/marketmatch/dealers/rank"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def fast_backoff() -> Iterator[None]:
    """Retry backoffs take no time."""
    with set_backoff_scale(0.0):
        yield


def scripted(*responses: httpx.Response | Exception) -> tuple[list[httpx.Request], Handler]:
    """A handler answering with `responses` in order (the last one repeats)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses[min(len(seen), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, handler


def make_client(handler: Handler, **options: float) -> mm.MarketMatchClient:
    return mm.MarketMatchClient(
        KEY,
        "http://marketmatch.test",
        transport=httpx.MockTransport(handler),
        **options,  # type: ignore[arg-type]
    )


OK = httpx.Response(200, json={"ranked_matches": [], "failed_items": []})


async def test_key_and_headers_travel_with_every_request() -> None:
    """The key is the api_key query parameter, merged with per-request parameters."""
    seen, handler = scripted(OK)
    async with make_client(handler).session() as session:
        await session.request("GET", "/v2/batch/marketmatch/rank/jobs", params={"rows": 3})
    request = seen[0]
    assert request.url.params["api_key"] == KEY
    assert request.url.params["rows"] == "3"
    assert request.headers["User-Agent"].startswith("mm-pipeline/")
    assert request.headers["Accept"] == "application/json"


async def test_post_json_sends_the_bytes_as_json() -> None:
    """post_json sends the given bytes unchanged with a JSON content type."""
    seen, handler = scripted(OK)
    async with make_client(handler).session() as session:
        await session.post_json(PATH, b'{"vin": {}}')
    assert seen[0].content == b'{"vin": {}}'
    assert seen[0].headers["Content-Type"] == "application/json"


async def test_504_is_retried() -> None:
    """A gateway timeout is retried like the other transient 5xx."""
    seen, handler = scripted(httpx.Response(504), OK)
    async with make_client(handler).session() as session:
        await session.post_json(PATH, b"{}")
        assert session.stats.errors_by_status == {504: 1}
    assert len(seen) == 2


@pytest.mark.parametrize("status", [501, 505])
async def test_other_5xx_are_not_retried(status: int) -> None:
    """5xx statuses outside 500/502/503/504 raise ServerError at once."""
    seen, handler = scripted(httpx.Response(status))
    async with make_client(handler).session() as session:
        with pytest.raises(mm.ServerError):
            await session.post_json(PATH, b"{}")
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(502, text="<html><h1>502 Bad Gateway</h1></html>"), "<html><h1>502"),
        (httpx.Response(500), "Internal Server Error"),
        (httpx.Response(503, json=["unexpected", "list"]), "Service Unavailable"),
        (httpx.Response(500, json={"code": 500}), "Internal Server Error"),
        (httpx.Response(500, json={"message": 42}), "Internal Server Error"),
    ],
)
async def test_odd_error_bodies_still_map_by_status(response: httpx.Response, message: str) -> None:
    """Bodies that are not JSON objects, or lack a message, still map by status."""
    _, handler = scripted(response)
    async with make_client(handler, max_retries=0).session() as session:
        with pytest.raises(mm.ServerError) as info:
            await session.post_json(PATH, b"{}")
    assert info.value.status == response.status_code
    assert info.value.message.startswith(message)


async def test_invalid_json_in_a_2xx_is_retried() -> None:
    """A 200 whose body is not JSON counts as a transport failure and is retried."""
    seen, handler = scripted(httpx.Response(200, text="{truncated"), OK)
    async with make_client(handler).session() as session:
        assert await session.post_json(PATH, b"{}") == {"ranked_matches": [], "failed_items": []}
        assert session.stats.transport_errors == 1
    assert len(seen) == 2


async def test_invalid_json_everywhere_raises_transport_error() -> None:
    """A body that never parses ends as TransportError(kind='InvalidJSON')."""
    _, handler = scripted(httpx.Response(200, text="nope"))
    async with make_client(handler, max_retries=1).session() as session:
        with pytest.raises(mm.TransportError) as info:
            await session.post_json(PATH, b"{}")
    assert info.value.kind == "InvalidJSON"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
async def test_client_errors_are_never_retried(status: int) -> None:
    """4xx statuses other than 429 are raised after one attempt."""
    seen, handler = scripted(httpx.Response(status, json={"code": status, "message": "no"}))
    async with make_client(handler).session() as session:
        with pytest.raises(mm.APIError) as info:
            await session.post_json(PATH, b"{}")
    assert len(seen) == 1
    assert type(info.value) is mm._exceptions.api_error_class(status)


async def test_quota_detected_from_a_huge_retry_after() -> None:
    """A 429 whose Retry-After exceeds an hour is a quota, even if the message does not say so."""
    seen, handler = scripted(
        httpx.Response(
            429,
            json={"code": 429, "message": "Too many requests"},
            headers={"Retry-After": "86500", "Quota-Reset-Time": "2031-03-01T00:00:00Z"},
        )
    )
    async with make_client(handler).session() as session:
        with pytest.raises(mm.QuotaExhaustedError) as info:
            await session.post_json(PATH, b"{}")
        assert session.limiter.pauses == 0  # a quota is not a reason to slow the pace
    assert len(seen) == 1
    assert info.value.resets_at == datetime(2031, 3, 1, tzinfo=UTC)
    assert info.value.retry_after == 86500
    assert "2031-03-01 00:00:00 UTC" in str(info.value)


async def test_quota_without_any_reset_information() -> None:
    """A quota message without reset headers still raises, saying the reset is unknown."""
    _, handler = scripted(httpx.Response(429, json={"message": "Monthly API quota exhausted"}))
    async with make_client(handler).session() as session:
        with pytest.raises(mm.QuotaExhaustedError, match="reset unknown") as info:
            await session.post_json(PATH, b"{}")
    assert info.value.resets_at is None


async def test_retry_after_as_http_date_is_honoured() -> None:
    """An HTTP-date Retry-After in the past means: retry now."""
    seen, handler = scripted(
        httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), OK
    )
    async with make_client(handler).session() as session:
        await session.post_json(PATH, b"{}")
        assert session.stats.rate_limited == 1
    assert len(seen) == 2


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for() -> None:
    """A Retry-After longer than what remains of retry_deadline raises at once."""
    seen, handler = scripted(httpx.Response(429, headers={"Retry-After": "30"}), OK)
    with set_backoff_scale(1.0):
        async with make_client(handler, retry_deadline=5).session() as session:
            with pytest.raises(mm.RateLimitError) as info:
                await session.post_json(PATH, b"{}")
    assert len(seen) == 1
    assert info.value.retry_after == 30


async def test_concurrency_is_bounded() -> None:
    """No more than max_concurrency requests are in flight at once."""
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={}, headers={"RateLimit-Limit": "100000"})

    c = mm.MarketMatchClient(
        KEY, "http://marketmatch.test", max_concurrency=3, transport=httpx.MockTransport(handler)
    )
    async with c.session() as session:
        await session.post_json(PATH, b"{}")  # learn the limit first
        await asyncio.gather(*(session.post_json(PATH, b"{}") for _ in range(20)))
    assert peak == 3


async def test_multipart_files_are_resent_on_retry() -> None:
    """A retried upload sends the whole file again (file objects are rewound)."""
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return httpx.Response(503) if len(bodies) == 1 else httpx.Response(202, json={})

    async with make_client(handler).session() as session:
        upload = io.BytesIO(b"\x1f\x8bPAYLOAD-BYTES")
        await session.request("POST", "/jobs", files={"file": ("f.csv.gz", upload)})
    assert len(bodies) == 2
    assert b"PAYLOAD-BYTES" in bodies[0]
    assert b"PAYLOAD-BYTES" in bodies[1]


class BrokenStream(httpx.AsyncByteStream):
    """A body that fails after the first chunk, like a connection cut mid-download."""

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b"first-chunk"
        raise httpx.ReadError("connection reset by peer")


async def drain(session: mm.Session) -> None:
    async with session.stream("POST", "/download") as response:
        async for _ in response.aiter_bytes():
            pass


async def test_a_body_cut_off_while_streaming_is_a_transport_error() -> None:
    """An httpx error while reading a streamed body leaves the block as TransportError."""
    _, handler = scripted(httpx.Response(200, stream=BrokenStream()), OK)
    c = make_client(handler, max_concurrency=1)
    async with c.session() as session:
        with pytest.raises(mm.TransportError) as info:
            await drain(session)
        assert info.value.kind == "ReadError"
        assert info.value.__context__ is None
        assert session.stats.transport_errors == 1
        # The concurrency slot was released: the next request goes through.
        await session.post_json(PATH, b"{}")


async def test_a_streamed_error_status_is_mapped_and_retried() -> None:
    """stream() retries a 503 and maps a final 4xx like request() does."""
    seen, handler = scripted(httpx.Response(503), httpx.Response(409, json={"message": "busy"}))
    async with make_client(handler).session() as session:
        with pytest.raises(mm.ConflictError):
            await drain(session)
    assert len(seen) == 2


async def test_the_callers_transport_is_not_closed() -> None:
    """A transport passed to the client is borrowed: sessions do not close it."""

    class Tracking(httpx.MockTransport):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    transport = Tracking(lambda request: OK)
    c = mm.MarketMatchClient(KEY, "http://marketmatch.test", transport=transport)
    for _ in range(2):
        async with c.session() as session:
            await session.post_json(PATH, b"{}")
    assert not transport.closed


async def test_a_local_protocol_error_is_not_retried() -> None:
    """Errors that retrying cannot fix (our request is malformed) are raised at once."""
    seen, handler = scripted(httpx.LocalProtocolError("illegal header value"))
    async with make_client(handler).session() as session:
        with pytest.raises(mm.TransportError, match="illegal header value"):
            await session.post_json(PATH, b"{}")
    assert len(seen) == 1


async def test_a_cancelled_request_frees_its_slot() -> None:
    """Cancelling a request in flight releases its concurrency slot for the next one."""
    entered = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/hang":
            entered.set()
            await asyncio.Event().wait()  # never answers
        return OK

    c = mm.MarketMatchClient(
        KEY, "http://marketmatch.test", max_concurrency=1, transport=httpx.MockTransport(handler)
    )
    async with c.session() as session:
        hanging = asyncio.ensure_future(session.request("GET", "/hang"))
        await entered.wait()
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        assert await session.post_json(PATH, b"{}") == {"ranked_matches": [], "failed_items": []}
