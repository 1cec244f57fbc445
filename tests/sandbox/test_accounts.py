"""Authentication, accounts, rate limit and monthly quota: unit tests and over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from mm_pipeline.sandbox import DEMO_API_KEY, Sandbox, running
from mm_pipeline.sandbox._accounts import AccountRegistry, parse_key_specs
from tests.conftest import NO_ACCESS_KEY, OTHER_KEY, SANDBOX_OPTIONS, client_for

JOBS = "/v2/batch/marketmatch/rank/jobs"
LIMIT_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset-Time",
    "Quota-Limit",
    "Quota-Remaining",
    "Quota-Reset-Time",
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = datetime(2026, 4, 30, 23, 59, 58, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.now

    def wallclock(self) -> datetime:
        return self.wall


def registry(clock: FakeClock, *, rate: float = 2, quota: int = 100) -> AccountRegistry:
    return AccountRegistry(
        parse_key_specs(["a", "b=team", "c=team"]),
        rate_limit=rate,
        quota=quota,
        clock=clock.monotonic,
        wallclock=clock.wallclock,
    )


# -- unit ---------------------------------------------------------------------------------------


def test_token_bucket_refills_at_the_rate() -> None:
    """The bucket holds `rate` tokens and refills `rate` per second."""
    clock = FakeClock()
    reg = registry(clock, rate=2)
    account = reg.lookup("a")
    assert account is not None
    assert [reg.admit(account).verdict for _ in range(3)] == ["ok", "ok", "rate_limited"]
    clock.now += 0.5
    assert reg.admit(account).verdict == "ok"
    assert reg.admit(account).verdict == "rate_limited"
    clock.now += 10
    assert reg.peek(account).rate_remaining == 2


def test_retry_after_is_a_whole_second_at_least() -> None:
    """Retry-After rounds the wait for one token up, never below 1 s."""
    clock = FakeClock()
    reg = registry(clock, rate=0.25)
    account = reg.lookup("a")
    assert account is not None
    assert reg.admit(account).verdict == "ok"
    refused = reg.admit(account)
    assert (refused.verdict, refused.retry_after) == ("rate_limited", 4)


def test_keys_sharing_an_account_share_limits() -> None:
    """Two keys of one account draw from one bucket; another account is unaffected."""
    clock = FakeClock()
    reg = registry(clock, rate=2)
    b, c, a = reg.lookup("b"), reg.lookup("c"), reg.lookup("a")
    assert b is not None
    assert c is not None
    assert a is not None
    assert b == c
    assert reg.admit(b).verdict == "ok"
    assert reg.admit(c).verdict == "ok"
    assert reg.admit(b).verdict == "rate_limited"
    assert reg.admit(a).verdict == "ok"


def test_quota_resets_at_the_first_of_the_month() -> None:
    """The quota counts calls per UTC month and Retry-After points at the 1st, 00:00 UTC."""
    clock = FakeClock()
    reg = registry(clock, rate=100, quota=1)
    account = reg.lookup("a")
    assert account is not None
    assert reg.admit(account).verdict == "ok"
    reg.spend(account)
    refused = reg.admit(account)
    assert refused.verdict == "quota_exhausted"
    assert refused.retry_after == 2
    assert refused.limits.quota_reset == datetime(2026, 5, 1, tzinfo=UTC)
    clock.wall = datetime(2026, 5, 1, 0, 0, 1, tzinfo=UTC)
    assert reg.admit(account).verdict == "ok"


def test_demo_key_only_without_configured_keys() -> None:
    """The demo key is accepted only when no keys are configured."""
    assert DEMO_API_KEY.startswith("mc_test_")
    assert DEMO_API_KEY in parse_key_specs([], ["blocked"])
    assert DEMO_API_KEY not in parse_key_specs(["mine"])


def test_bad_key_configurations_are_refused() -> None:
    """An empty key, or a key both accepted and without access, is a configuration error."""
    with pytest.raises(ValueError, match="empty"):
        parse_key_specs(["=team"])
    with pytest.raises(ValueError, match="both"):
        parse_key_specs(["k"], ["k"])


# -- HTTP ---------------------------------------------------------------------------------------


def test_missing_key_is_401_with_limit_headers(clean_sandbox: Sandbox) -> None:
    """No api_key: 401 in the published shape, still with the six limit headers."""
    response = httpx.get(clean_sandbox.url(JOBS))
    assert response.status_code == 401
    assert response.json() == {
        "code": 401,
        "message": "Missing API key (pass it as ?api_key=...)",
    }
    assert all(h in response.headers for h in LIMIT_HEADERS)


def test_unknown_key_is_401_without_echoing_it(clean_sandbox: Sandbox) -> None:
    """An unknown key is 401 and the key appears nowhere in the response."""
    secret = "mc_test_wrong_key_12345"
    with client_for(clean_sandbox, secret) as client:
        response = client.post("/v2/marketmatch/dealers/rank", json={})
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid API key"
    assert secret not in response.text
    assert secret not in str(response.headers)


def test_key_without_access_is_403(clean_sandbox: Sandbox) -> None:
    """A key configured without MarketMatch access gets 403 on every endpoint."""
    with client_for(clean_sandbox, NO_ACCESS_KEY) as client:
        for response in (
            client.get(JOBS),
            client.post("/v2/marketmatch/vins/rank", json={}),
            client.post(f"{JOBS}/x/download"),
        ):
            assert response.status_code == 403
            assert response.json()["code"] == 403
            assert "Quota-Limit" in response.headers


def test_demo_key_works_without_configuration() -> None:
    """A sandbox started without keys accepts the documented demo key and nothing else."""
    with running() as sb:
        assert sb.api_key == DEMO_API_KEY
        with client_for(sb) as client:
            assert client.get(JOBS).status_code == 200
        with client_for(sb, "mc_test_other") as client:
            assert client.get(JOBS).status_code == 401


def test_every_response_has_limit_headers(api: httpx.Client) -> None:
    """Success, 400, 404 and 405 responses all carry the six limit headers."""
    responses = [
        api.get(JOBS),
        api.get(JOBS, params={"rows": 0}),
        api.get("/v2/unknown"),
        api.delete(JOBS),
        api.get("/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [200, 400, 404, 405, 200]
    for response in responses:
        assert all(h in response.headers for h in LIMIT_HEADERS), response.headers
    quota_reset = responses[0].headers["Quota-Reset-Time"]
    assert quota_reset.endswith("T00:00:00.000Z")
    assert quota_reset[8:10] == "01"


def test_quota_remaining_counts_down(api: httpx.Client) -> None:
    """Each served call spends one unit of quota."""
    first = int(api.get(JOBS).headers["Quota-Remaining"])
    second = int(api.get(JOBS).headers["Quota-Remaining"])
    assert second == first - 1


def test_rate_limit_429_with_retry_after() -> None:
    """Beyond the bucket, 429 API rate limit exceeded with Retry-After and headers."""
    options = {**SANDBOX_OPTIONS, "rate_limit": 1, "quota": 100}
    with running(**options) as sb, client_for(sb) as client:
        statuses = [client.get(JOBS) for _ in range(6)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited, [r.status_code for r in statuses]
        body = limited[0].json()
        assert body == {"code": 429, "message": "API rate limit exceeded"}
        assert int(limited[0].headers["Retry-After"]) >= 1
        assert limited[0].headers["RateLimit-Limit"] == "1"
        assert limited[0].headers["RateLimit-Remaining"] == "0"
        with client_for(sb, OTHER_KEY) as other:
            assert other.get(JOBS).status_code == 200


def test_rate_limited_requests_spend_no_quota() -> None:
    """Quota-Remaining drops only for requests that were served."""
    options = {**SANDBOX_OPTIONS, "rate_limit": 1, "quota": 50}
    with running(**options) as sb, client_for(sb) as client:
        responses = [client.get(JOBS) for _ in range(8)]
    served = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert limited
    assert min(int(r.headers["Quota-Remaining"]) for r in responses) == 50 - len(served)


def test_quota_exhaustion_is_429_until_next_month() -> None:
    """With the monthly quota used up: 429 Monthly API quota exhausted, Retry-After to the 1st."""
    options = {**SANDBOX_OPTIONS, "quota": 2}
    with running(**options) as sb, client_for(sb) as client:
        assert [client.get(JOBS).status_code for _ in range(2)] == [200, 200]
        refused = client.get(JOBS)
    assert refused.status_code == 429
    assert refused.json() == {"code": 429, "message": "Monthly API quota exhausted"}
    assert refused.headers["Quota-Remaining"] == "0"
    now = datetime.now(UTC)
    reset = datetime.fromisoformat(refused.headers["Quota-Reset-Time"].replace("Z", "+00:00"))
    assert reset.day == 1
    assert reset > now
    assert abs(int(refused.headers["Retry-After"]) - (reset - now).total_seconds()) < 5
