"""Map an HTTP answer or an httpx failure to the exception tree, scrubbed of the key.

:func:`api_error` builds the exception for a non-2xx response from any body (JSON or not),
telling an exhausted monthly quota from a rate limit; :func:`transport_error` wraps an httpx
failure without chaining it (httpx errors carry the URL, and the URL carries the key);
:func:`deadline_error` says which whole-request deadline an abandoned attempt outlasted.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import orjson

from mm_pipeline._exceptions import (
    APIError,
    DeadlineExceededError,
    QuotaExhaustedError,
    RateLimitError,
    TransportError,
    api_error_class,
)
from mm_pipeline._ratelimit import seconds_until
from mm_pipeline._redact import redact, redact_url, registered_secrets
from mm_pipeline._settings import MIN_TRANSFER_RATE

__all__ = ["QUOTA_RETRY_AFTER", "api_error", "deadline_error", "transport_error"]

#: A 429 whose Retry-After exceeds this many seconds is a quota, not a rate limit.
QUOTA_RETRY_AFTER: Final = 3600.0
_QUOTA_WORDS: Final = re.compile(r"quota", re.IGNORECASE)
_MAX_MESSAGE: Final = 500


def transport_error(exc: Exception, method: str, url: object) -> TransportError:
    kind = type(exc).__name__
    detail = redact(str(exc), *registered_secrets()) or "no detail"
    return TransportError(detail, kind=kind, method=method, url=redact_url(url))


def _scrub(value: Any) -> Any:
    """Remove registered secrets from every string inside a decoded JSON value."""
    if isinstance(value, str):
        return redact(value, *registered_secrets())
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def api_error(response: httpx.Response, method: str, url: str) -> APIError:
    """Build the exception for a non-2xx response, tolerating any body."""
    status = response.status_code
    try:
        decoded = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        decoded = None
    body: dict[str, Any] = _scrub(decoded) if isinstance(decoded, dict) else {}
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        text = _scrub(response.text.strip())[:_MAX_MESSAGE] if decoded is None else ""
        message = text or response.reason_phrase or f"HTTP {status}"
    headers = {k: _scrub(v) for k, v in response.headers.items()}
    common: dict[str, Any] = {
        "status": status,
        "method": method,
        "url": url,
        "body": body,
        "headers": headers,
    }
    cls = api_error_class(status)
    if cls is not RateLimitError:
        return cls(message, **common)
    now = time.time()
    retry_after = seconds_until(response.headers.get("Retry-After"), now=now)
    if _QUOTA_WORDS.search(message) or (retry_after or 0.0) > QUOTA_RETRY_AFTER:
        until = seconds_until(response.headers.get("Quota-Reset-Time"), now=now)
        until = until if until is not None else retry_after
        resets_at = datetime.fromtimestamp(round(now + until), UTC) if until is not None else None
        when = f"resets at {resets_at:%Y-%m-%d %H:%M:%S} UTC" if resets_at else "reset unknown"
        return QuotaExhaustedError(
            f"{message} (monthly quota exhausted; {when}; not retried)",
            retry_after=retry_after,
            resets_at=resets_at,
            **common,
        )
    return RateLimitError(message, retry_after=retry_after, **common)


def deadline_error(
    method: str, url: str, deadline: float, *, body: bool = False
) -> DeadlineExceededError:
    what = (
        f"the body arrived slower than {MIN_TRANSFER_RATE // 1024} KiB/s on average after "
        f"the first {deadline:g} s"
        if body
        else f"no complete answer within the whole-request deadline of {deadline:g} s"
    )
    return DeadlineExceededError(
        f"{what}; the request was abandoned (MarketMatchClient(deadline=...) sets it)",
        deadline=deadline,
        method=method,
        url=url,
    )
