"""Verify MarketMatch batch webhooks.

When a batch job is submitted with a ``webhook_url`` and a ``webhook_secret``, the API POSTs a
``job.completed`` or ``job.failed`` event there with these headers:

- ``X-Signature: sha256=<hex HMAC-SHA256(secret, "<X-Timestamp>.<raw body>")>``
- ``X-Timestamp``: unix seconds when the delivery was signed
- ``X-Delivery-ID``: a unique id per delivery (retries of one delivery repeat it), so a receiver
  can drop repeats
- ``X-Event-Type``: ``job.completed`` or ``job.failed``

:func:`verify` checks the signature over the **raw request bytes** (never re-serialised JSON) with
a constant-time comparison, checks that the timestamp lies within ``tolerance`` seconds of now in
either direction (replayed or pre-dated deliveries are refused), and returns the parsed event.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

from mm_pipeline._exceptions import WebhookVerificationError

__all__ = [
    "DEFAULT_TOLERANCE",
    "Headers",
    "WebhookEvent",
    "WebhookVerificationError",
    "sign",
    "verify",
]

DEFAULT_TOLERANCE = 300
"""Seconds a delivery's ``X-Timestamp`` may differ from the receiver's clock, either way."""

_PREFIX = "sha256="

Headers: TypeAlias = (
    Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)
"""What :func:`verify` accepts as headers: a mapping (any case; ``request.headers`` of most web
frameworks), or an iterable of ``(name, value)`` pairs of ``str`` or ``bytes`` (ASGI's
``scope["headers"]``)."""

_HEADER_SHAPES = (
    "a mapping of header names to values, or an iterable of (name, value) pairs "
    "(str or bytes, as in ASGI's scope['headers'])"
)


@dataclass(frozen=True, kw_only=True)
class WebhookEvent:
    """A verified webhook delivery.

    Parameters
    ----------
    event
        ``"job.completed"`` or ``"job.failed"``.
    job_id
        The batch job the event is about.
    status
        The job's status (``"COMPLETED"`` or ``"FAILED"``).
    delivery_id
        The ``X-Delivery-ID`` header: identical for retries of one delivery, so use it to drop
        repeats. ``None`` when the sender did not send one.
    timestamp
        The signed ``X-Timestamp`` (unix seconds).
    item_count, successful_count, failed_count
        The job's counts (``job.completed`` only).
    error_code, error_message
        Why the job failed (``job.failed`` only).
    completed_at
        When the job finished (ISO 8601), as sent.
    raw
        The whole decoded body, including fields this class does not name.
    """

    event: str
    job_id: str
    status: str
    delivery_id: str | None
    timestamp: int
    item_count: int | None = None
    successful_count: int | None = None
    failed_count: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    completed_at: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def sign(raw_body: bytes, secret: str | bytes, timestamp: int | str) -> str:
    """Compute the ``X-Signature`` header value for a body, as the API does.

    Parameters
    ----------
    raw_body
        The exact bytes of the request body.
    secret
        The ``webhook_secret`` given at submission (``str`` is encoded as UTF-8).
    timestamp
        The ``X-Timestamp`` value (unix seconds).

    Returns
    -------
    str
        ``"sha256=<hex digest>"``.

    Examples
    --------
    >>> sign(b'{"event": "job.completed"}', "s3cret", 1700000000)[:15]
    'sha256=faa4f6b6'
    """
    message = f"{timestamp}.".encode() + bytes(raw_body)
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify(
    raw_body: bytes,
    headers: Headers,
    secret: str | bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> WebhookEvent:
    """Verify a webhook delivery and return its event.

    Parameters
    ----------
    raw_body
        The request body exactly as received (bytes; not parsed and re-encoded JSON).
    headers
        The request headers: a mapping (such as a web framework's ``request.headers``) or an
        iterable of ``(name, value)`` pairs such as ASGI's ``scope["headers"]``; names and
        values may be ``str`` or ``bytes`` (decoded as Latin-1, as HTTP does), names are matched
        case-insensitively.
    secret
        The ``webhook_secret`` given when the job was submitted, as ``str`` (encoded as UTF-8)
        or ``bytes``.
    tolerance
        Seconds the ``X-Timestamp`` may lie before or after ``now``.
    now
        The receiver's clock (unix seconds); defaults to :func:`time.time`.

    Returns
    -------
    WebhookEvent
        The verified, parsed event.

    Raises
    ------
    WebhookVerificationError
        When a header is missing or malformed, the signature does not match, the timestamp is
        outside the tolerance window, or the body is not a JSON event. The message says which.
        A header given twice with different values is refused as well.
    TypeError
        When ``raw_body`` is not bytes (a parsed or decoded body cannot be verified), or
        ``headers`` or ``secret`` has none of the accepted shapes.

    Examples
    --------
    >>> body = b'{"event":"job.completed","job_id":"j-1","status":"COMPLETED"}'
    >>> headers = {"x-signature": sign(body, "s3cret", 1700000000), "X-Timestamp": "1700000000",
    ...            "X-Delivery-ID": "d-1"}
    >>> verify(body, headers, "s3cret", now=1700000010).job_id
    'j-1'
    >>> asgi_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    >>> verify(body, asgi_headers, b"s3cret", now=1700000010).delivery_id
    'd-1'
    >>> try:
    ...     verify(body, headers, "wrong", now=1700000010)
    ... except WebhookVerificationError as exc:
    ...     print(exc)
    signature does not match the body (wrong secret, or the body was altered)
    """
    if not isinstance(raw_body, bytes | bytearray | memoryview):
        raise TypeError(
            f"raw_body must be the raw request bytes, not {type(raw_body).__name__}: "
            "a re-encoded body cannot be verified"
        )
    if not isinstance(secret, str | bytes | bytearray):
        raise TypeError(f"secret must be str or bytes, not {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must be the non-empty webhook_secret given at submission")
    lowered = _lowered(headers)
    signature = lowered.get("x-signature")
    timestamp_text = lowered.get("x-timestamp")
    if signature is None:
        raise WebhookVerificationError("missing X-Signature header")
    if timestamp_text is None:
        raise WebhookVerificationError("missing X-Timestamp header")
    timestamp_text = timestamp_text.strip()
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError(
            f"X-Timestamp is not unix seconds: {timestamp_text[:40]!r}"
        ) from None
    signature = signature.strip()
    if not signature.lower().startswith(_PREFIX):
        raise WebhookVerificationError("X-Signature is not of the form 'sha256=<hex>'")
    expected = sign(raw_body, secret, timestamp_text)[len(_PREFIX) :]
    provided = signature[len(_PREFIX) :].lower()
    if not hmac.compare_digest(expected.encode(), provided.encode("ascii", "replace")):
        raise WebhookVerificationError(
            "signature does not match the body (wrong secret, or the body was altered)"
        )
    current = time.time() if now is None else now
    # Compare before subtracting: a (signed) timestamp of 400 digits would overflow a float.
    if not current - tolerance <= timestamp <= current + tolerance:
        direction = "old" if timestamp < current else "in the future"
        skew = f"{abs(current - timestamp):.0f} s" if abs(timestamp) < 2**53 else "centuries"
        raise WebhookVerificationError(
            f"X-Timestamp is {skew} {direction} (tolerance {tolerance:g} s): "
            "a replayed or pre-dated delivery"
        )
    return _parse_event(bytes(raw_body), timestamp, lowered.get("x-delivery-id"))


def _lowered(headers: object) -> dict[str, str]:
    """Return *headers* as ``{lower-case name: value}``, refusing conflicting repeats."""
    items = getattr(headers, "items", None)  # Mappings and look-alikes (email.message, ...)
    pairs: Iterable[object]
    if callable(items):
        pairs = items()
    elif isinstance(headers, Iterable) and not isinstance(headers, str | bytes | bytearray):
        pairs = headers
    else:
        raise TypeError(f"headers must be {_HEADER_SHAPES}, not {type(headers).__name__}")
    lowered: dict[str, str] = {}
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise TypeError(f"headers must be {_HEADER_SHAPES}; found an item {pair!r:.60}")
        name, value = (_text(part) for part in pair)
        name = name.lower()
        if lowered.get(name, value) != value:
            raise WebhookVerificationError(f"header {name} is given twice with different values")
        lowered[name] = value
    return lowered


def _text(part: object) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, bytes | bytearray | memoryview):
        return bytes(part).decode("latin-1")
    raise TypeError(
        f"header names and values must be str or bytes, not {type(part).__name__} "
        f"(headers must be {_HEADER_SHAPES})"
    )


def _parse_event(body: bytes, timestamp: int, delivery_id: str | None) -> WebhookEvent:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookVerificationError("signed body is not valid JSON") from None
    if not isinstance(data, dict):
        raise WebhookVerificationError("signed body is not a JSON object")
    missing = [name for name in ("event", "job_id") if not isinstance(data.get(name), str)]
    if missing:
        raise WebhookVerificationError(f"signed body lacks {', '.join(missing)}")

    def opt_int(name: str) -> int | None:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def opt_str(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) else None

    return WebhookEvent(
        event=data["event"],
        job_id=data["job_id"],
        status=opt_str("status") or "",
        delivery_id=delivery_id,
        timestamp=timestamp,
        item_count=opt_int("item_count"),
        successful_count=opt_int("successful_count"),
        failed_count=opt_int("failed_count"),
        error_code=opt_str("error_code"),
        error_message=opt_str("error_message"),
        completed_at=opt_str("completed_at"),
        raw=data,
    )
