"""The two routes a JSON POST can take: straight to the session's transport, or httpx's send."""

from __future__ import annotations

import logging

import orjson
import pytest

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox

DEALERS = "/v2/marketmatch/dealers/rank"
VIN = {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000}
GOOD = orjson.dumps({"vin": VIN, "dealers": [{"source": "mbofaugusta.com", "zip": "30907"}]})
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables in the environment (either spelling), whatever the machine has."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


async def test_json_posts_honour_a_proxy_from_the_environment(
    clean_sandbox: Sandbox, no_proxies: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, JSON POSTs go through that proxy (here: nothing listening)."""
    no_proxies.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    client = mm.MarketMatchClient(clean_sandbox.api_key, clean_sandbox.base_url, max_retries=0)
    async with client.session() as session:
        with pytest.raises(mm.TransportError):
            await session.post_json(DEALERS, GOOD)


async def test_json_posts_bypass_the_proxy_for_no_proxy_hosts(
    clean_sandbox: Sandbox, no_proxies: pytest.MonkeyPatch
) -> None:
    """NO_PROXY still exempts the sandbox's host, as httpx does."""
    no_proxies.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    no_proxies.setenv("NO_PROXY", "127.0.0.1")
    client = mm.MarketMatchClient(clean_sandbox.api_key, clean_sandbox.base_url, max_retries=0)
    async with client.session() as session:
        body = await session.post_json(DEALERS, GOOD)
    assert body["ranked_matches"][0]["vin_rank"] == 1


async def test_json_posts_log_httpx_request_line_without_the_key(
    clean_sandbox: Sandbox, no_proxies: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The direct route logs httpx's INFO request line, with the key redacted."""
    caplog.set_level(logging.INFO, logger="httpx")
    client = mm.MarketMatchClient(clean_sandbox.api_key, clean_sandbox.base_url)
    async with client.session() as session:
        await session.post_json(DEALERS, GOOD)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any(line.startswith(f"HTTP Request: POST {clean_sandbox.base_url}") for line in lines)
    assert any('"HTTP/1.1 200 OK"' in line for line in lines)
    assert not any(clean_sandbox.api_key in line for line in lines)
