"""The API key never appears in messages, reprs, tracebacks, chained exceptions or logs."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from uvicorn.logging import AccessFormatter

import mm_pipeline as mm
from mm_pipeline._client import set_backoff_scale
from mm_pipeline._redact import (
    REDACTED,
    RedactingFilter,
    get_logger,
    mask,
    redact,
    redact_url,
    register_secret,
)
from mm_pipeline.sandbox import Sandbox, running

KEY = "mc_test_SECRET_5b1f0c9e7a3d42"
UNKNOWN_KEY = "mc_test_UNKNOWN_SECRET_77aa10"
NO_ACCESS_KEY = "mc_test_NOACCESS_SECRET_9d3e"
SECRETS = (KEY, UNKNOWN_KEY, NO_ACCESS_KEY)
DEALERS = "/v2/marketmatch/dealers/rank"
JOBS = "/v2/batch/marketmatch/rank/jobs"
VIN = {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000}
GOOD = orjson.dumps({"vin": VIN, "dealers": [{"source": "mbofaugusta.com", "zip": "30907"}]})
UNKNOWN_DEALER = orjson.dumps({"vin": VIN, "dealers": [{"source": "nowhere.example"}]})


@pytest.fixture(autouse=True)
def fast_backoff() -> Iterator[None]:
    """Retry backoffs take no time."""
    with set_backoff_scale(0.0):
        yield


@pytest.fixture(scope="module")
def secret_sandbox() -> Iterator[Sandbox]:
    """A sandbox that knows our recognisable keys; slow faults take 1 s."""
    with running(api_keys=[KEY], no_access_keys=[NO_ACCESS_KEY], slow_ms=1000) as sb:
        yield sb


def exception_texts(exc: BaseException) -> Iterator[str]:
    """Every rendering of an exception and of everything chained to it."""
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        yield str(current)
        yield repr(current)
        yield "".join(traceback.format_exception(current))
        yield repr(vars(current))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def log_texts(records: list[logging.LogRecord]) -> Iterator[str]:
    """Every rendering of captured log records, extras and tracebacks included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in records:
        yield formatter.format(record)
        yield repr(vars(record))


def assert_no_secret(texts: Iterator[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def assert_clean(
    exc: BaseException, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither the exception (and its chain), nor the logs, nor the console show a key."""
    assert_no_secret(exception_texts(exc))
    assert_no_secret(log_texts(caplog.records))
    captured = capsys.readouterr()
    assert_no_secret(iter([captured.out, captured.err]))


Scenario = Callable[[Sandbox], Awaitable[Any]]


async def _post(sb: Sandbox, body: bytes, key: str = KEY, **options: Any) -> Any:
    async with mm.MarketMatchClient(key, sb.base_url, **options).session() as session:
        return await session.post_json(DEALERS, body)


async def unknown_key(sb: Sandbox) -> Any:
    return await _post(sb, GOOD, UNKNOWN_KEY)


async def no_access(sb: Sandbox) -> Any:
    return await _post(sb, GOOD, NO_ACCESS_KEY)


async def malformed(sb: Sandbox) -> Any:
    return await _post(sb, b"{nope")


async def unprocessable(sb: Sandbox) -> Any:
    return await _post(sb, UNKNOWN_DEALER)


async def not_found(sb: Sandbox) -> Any:
    async with mm.MarketMatchClient(KEY, sb.base_url).session() as session:
        return await session.request("GET", f"{JOBS}/no-such-job")


async def rate_limited(sb: Sandbox) -> Any:
    sb.inject("429_no_retry_after", count=3)
    return await _post(sb, GOOD, max_retries=1)


async def server_error(sb: Sandbox) -> Any:
    sb.inject("503", count=3)
    return await _post(sb, GOOD, max_retries=1)


async def dropped(sb: Sandbox) -> Any:
    sb.inject("drop", count=3)
    return await _post(sb, GOOD, max_retries=1)


async def timed_out(sb: Sandbox) -> Any:
    sb.inject("slow", count=1)
    return await _post(sb, GOOD, max_retries=0, timeout=0.2)


async def refused(sb: Sandbox) -> Any:
    with running() as gone:
        base_url = gone.base_url
    async with mm.MarketMatchClient(KEY, base_url, max_retries=1).session() as session:
        return await session.post_json(DEALERS, GOOD)


SERVER_SCENARIOS = {
    "401": (unknown_key, mm.AuthenticationError),
    "403": (no_access, mm.PermissionDeniedError),
    "400": (malformed, mm.InvalidRequestError),
    "422": (unprocessable, mm.UnprocessableError),
    "404": (not_found, mm.NotFoundError),
    "429": (rate_limited, mm.RateLimitError),
    "503": (server_error, mm.ServerError),
    "drop": (dropped, mm.TransportError),
    "timeout": (timed_out, mm.TransportError),
    "refused": (refused, mm.TransportError),
}


@pytest.mark.parametrize("name", list(SERVER_SCENARIOS))
async def test_no_key_in_any_error_path(
    name: str,
    secret_sandbox: Sandbox,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each error path against the sandbox, logged at DEBUG, never shows the key."""
    secret_sandbox.reset()
    caplog.set_level(logging.DEBUG)
    scenario, expected = SERVER_SCENARIOS[name]
    with pytest.raises(expected) as info:
        await scenario(secret_sandbox)
    assert_clean(info.value, caplog, capsys)
    messages = [r.getMessage() for r in caplog.records if r.name == "mm_pipeline.client"]
    assert any(REDACTED in m for m in messages)  # the requests were logged, redacted
    if isinstance(info.value, mm.TransportError):
        assert info.value.__cause__ is None
        assert info.value.__context__ is None


async def test_no_key_when_the_quota_is_exhausted(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quota error path never shows the key."""
    caplog.set_level(logging.DEBUG)
    with running(api_keys=[KEY], quota=0) as sb, pytest.raises(mm.QuotaExhaustedError) as info:
        await _post(sb, GOOD)
    assert_clean(info.value, caplog, capsys)


def echoing_server(request: httpx.Request) -> httpx.Response:
    """A careless server that echoes the request URL (with the key) in its errors."""
    if request.url.path == "/html":
        return httpx.Response(502, text=f"<pre>upstream failed for {request.url}</pre>")
    if request.url.path == "/json":
        return httpx.Response(
            400,
            json={
                "message": f"bad key {KEY} for {request.url}",
                "detail": {"url": str(request.url)},
            },
            headers={"X-Echo": str(request.url)},
        )
    raise httpx.ConnectError(f"cannot reach {request.url}", request=request)


@pytest.mark.parametrize("path", ["/html", "/json", "/connect"])
async def test_no_key_even_when_the_server_or_httpx_echoes_it(
    path: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Server messages, bodies, headers and httpx errors that contain the key are scrubbed."""
    caplog.set_level(logging.DEBUG)
    client = mm.MarketMatchClient(
        KEY, "http://echo.test", max_retries=1, transport=httpx.MockTransport(echoing_server)
    )
    with pytest.raises(mm.MarketMatchError) as info:
        async with client.session() as session:
            await session.request("GET", path)
    assert_clean(info.value, caplog, capsys)
    assert REDACTED in str(info.value)


def test_reprs_never_show_the_key() -> None:
    """The client's repr masks the key; the session's shows none of it."""
    client = mm.MarketMatchClient(KEY, "http://127.0.0.1:9")
    assert KEY not in repr(client)
    assert KEY[:12] not in repr(client)
    assert mask(KEY) in repr(client)


async def test_session_repr_never_shows_the_key() -> None:
    """repr(session) and its stats show no key."""
    async with mm.MarketMatchClient(KEY, "http://127.0.0.1:9").session() as session:
        assert KEY not in repr(session)
        assert KEY not in repr(session.stats)


# -- the redaction helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/x?api_key=abc", "https://h/x?api_key=REDACTED"),
        ("https://h/x?rows=1&api_key=abc&b=2", "https://h/x?rows=1&api_key=REDACTED&b=2"),
        ("https://h/x?API_KEY=abc#frag", "https://h/x?API_KEY=REDACTED#frag"),
        ("https://h/x?next=%2Fy%3Fapi_key%3Dabc", "https://h/x?next=%2Fy%3Fapi_key%3DREDACTED"),
        ("https://h/x?rows=1", "https://h/x?rows=1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """Every api_key value in a URL is replaced, also inside an encoded URL."""
    assert redact_url(url) == expected
    assert redact_url(httpx.URL(url)) == expected


def test_redact_scrubs_plain_and_url_encoded_secrets() -> None:
    """redact() removes a secret as is and URL-encoded."""
    secret = "mc/test+key=1"
    text = f"a {secret} b mc%2Ftest%2Bkey%3D1 c"
    assert redact(text, secret) == "a REDACTED b REDACTED c"


def test_filter_scrubs_message_args_extras_and_tracebacks() -> None:
    """The logging filter scrubs the formatted message, extras, exc_info and stack_info."""
    register_secret(KEY)
    try:
        raise RuntimeError(f"failed with {KEY}")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "calling %s",
            (f"/v2?api_key={KEY}",),
            exc_info=__import__("sys").exc_info(),
            extra={"url": f"http://h/?api_key={KEY}"},
        )
    record.stack_info = f"stack mentions {KEY}"
    assert RedactingFilter().filter(record)
    rendered = logging.Formatter("%(message)s %(url)s").format(record)
    assert KEY not in rendered
    assert KEY not in repr(vars(record))
    assert "calling /v2?api_key=REDACTED" in rendered
    assert "RuntimeError: failed with REDACTED" in rendered


def test_filter_with_its_own_secrets_and_a_broken_format() -> None:
    """A filter's own secrets are scrubbed too, and a broken %-format does not lose the record."""
    record = logging.makeLogRecord({"msg": "x %d %s", "args": ("not-a-number", "s3cr3t-value")})
    assert RedactingFilter(["s3cr3t-value"]).filter(record)
    assert "s3cr3t-value" not in record.getMessage()


def test_filter_keeps_the_args_shape_formatters_unpack() -> None:
    """Args are scrubbed in place: uvicorn's access formatter still unpacks its five."""
    register_secret(KEY)
    args = ("127.0.0.1:5000", "GET", f"/v2/x?api_key={KEY}&rows=5", "1.1", 200)
    record = logging.makeLogRecord({"msg": '%s - "%s %s HTTP/%s" %d', "args": args})
    assert RedactingFilter().filter(record)
    assert isinstance(record.args, tuple)
    assert len(record.args) == 5
    assert record.args[4] == 200
    line = AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s').format(record)
    assert line == '127.0.0.1:5000 "GET /v2/x?api_key=REDACTED&rows=5 HTTP/1.1" 200 OK'


def test_filter_scrubs_objects_mappings_and_secrets_split_across_args() -> None:
    """An object showing the key is replaced by its scrubbed text; dict args are scrubbed; a key
    assembled from several args collapses the record to its scrubbed message."""
    register_secret(KEY)
    url = httpx.URL(f"http://h/v2?api_key={KEY}")
    record = logging.makeLogRecord({"msg": "%s %r", "args": (url, url)})
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "http://h/v2?api_key=REDACTED 'http://h/v2?api_key=REDACTED'"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%(url)s", ({"url": url},), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "http://h/v2?api_key=REDACTED"
    record = logging.makeLogRecord({"msg": "%s%s", "args": (KEY[:5], KEY[5:])})
    assert RedactingFilter().filter(record)
    assert (record.getMessage(), record.args) == ("REDACTED", ())


def test_package_and_http_loggers_carry_the_filter() -> None:
    """The filter is attached to mm_pipeline's, httpx's, httpcore's and stamina's loggers."""
    for name in ("mm_pipeline", "httpx", "httpcore", "stamina"):
        assert any(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters)
    child = get_logger("mm_pipeline.some_module")
    assert any(isinstance(f, RedactingFilter) for f in child.filters)
    get_logger("mm_pipeline.some_module")
    assert sum(isinstance(f, RedactingFilter) for f in child.filters) == 1


@pytest.mark.parametrize(
    ("secret", "shown"), [("mc_test_0123456789", "mc_t…****"), ("short-key", "****"), ("", "****")]
)
def test_mask(secret: str, shown: str) -> None:
    """mask() shows at most four leading characters, none for short secrets."""
    assert mask(secret) == shown


def test_a_key_that_prefixes_another_leaves_no_tail() -> None:
    """Secrets are replaced longest first, so one that prefixes another hides it whole."""
    assert redact("keys mc_test_a and mc_test_a_long", "mc_test_a", "mc_test_a_long") == (
        "keys REDACTED and REDACTED"
    )
