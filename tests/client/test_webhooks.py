"""Webhook signature verification: valid deliveries pass, every kind of forgery is refused."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

import mm_pipeline as mm
from mm_pipeline.webhooks import WebhookEvent, sign, verify

SECRET = "whsec-test-0123456789"
NOW = 1_800_000_000
BODY = orjson.dumps(
    {
        "event": "job.completed",
        "job_id": "770a9622-a4bd-63f6-c938-668877662222",
        "status": "COMPLETED",
        "item_count": 1200,
        "successful_count": 1150,
        "failed_count": 0,
        "completed_at": "2026-04-01T10:12:00Z",
        "extra_field": "kept in raw",
    }
)


def _headers(body: bytes = BODY, *, ts: int = NOW, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Signature": sign(body, secret, ts),
        "X-Timestamp": str(ts),
        "X-Delivery-ID": "d1b2c3",
        "X-Event-Type": "job.completed",
    }


def test_valid_delivery_returns_parsed_event() -> None:
    """A correctly signed, fresh delivery yields every published field and the delivery id."""
    event = verify(BODY, _headers(), SECRET, now=NOW + 5)
    assert isinstance(event, WebhookEvent)
    assert event.event == "job.completed"
    assert event.job_id == "770a9622-a4bd-63f6-c938-668877662222"
    assert event.status == "COMPLETED"
    assert (event.item_count, event.successful_count, event.failed_count) == (1200, 1150, 0)
    assert event.delivery_id == "d1b2c3"
    assert event.timestamp == NOW
    assert event.raw["extra_field"] == "kept in raw"


def test_failed_event_carries_error_fields() -> None:
    """A job.failed delivery exposes error_code and error_message."""
    body = orjson.dumps(
        {
            "event": "job.failed",
            "job_id": "j-2",
            "status": "FAILED",
            "error_code": "processing_failed",
            "error_message": "Job processing failed unexpectedly. Please resubmit.",
        }
    )
    event = verify(body, _headers(body), SECRET, now=NOW)
    assert (event.error_code, event.status) == ("processing_failed", "FAILED")
    assert event.item_count is None


def test_header_names_are_case_insensitive() -> None:
    """Lower- and upper-cased header names are accepted alike."""
    headers = {k.lower(): v for k, v in _headers().items()}
    assert verify(BODY, headers, SECRET, now=NOW).job_id
    headers = {k.upper(): v for k, v in _headers().items()}
    assert verify(BODY, headers, SECRET, now=NOW).job_id


def test_tampered_body_is_rejected() -> None:
    """Changing one byte of the body breaks the signature."""
    tampered = BODY.replace(b"1150", b"1151")
    with pytest.raises(mm.WebhookVerificationError, match="signature does not match"):
        verify(tampered, _headers(), SECRET, now=NOW)


def test_reserialised_json_is_rejected() -> None:
    """Re-encoding the same JSON with different spacing is not the signed body."""
    reencoded = orjson.dumps(orjson.loads(BODY), option=orjson.OPT_INDENT_2)
    with pytest.raises(mm.WebhookVerificationError, match="signature does not match"):
        verify(reencoded, _headers(), SECRET, now=NOW)


def test_wrong_secret_is_rejected() -> None:
    """A signature made with another secret fails."""
    with pytest.raises(mm.WebhookVerificationError, match="signature does not match"):
        verify(BODY, _headers(secret="other-secret"), SECRET, now=NOW)


def test_signature_bound_to_timestamp() -> None:
    """Replacing the timestamp header (to refresh a stale delivery) breaks the signature."""
    headers = _headers()
    headers["X-Timestamp"] = str(NOW + 100)
    with pytest.raises(mm.WebhookVerificationError, match="signature does not match"):
        verify(BODY, headers, SECRET, now=NOW)


@pytest.mark.parametrize(("offset", "word"), [(-301, "old"), (301, "in the future")])
def test_timestamp_outside_tolerance_is_rejected(offset: int, word: str) -> None:
    """Deliveries signed more than the tolerance in the past or future are refused."""
    headers = _headers(ts=NOW + offset)
    with pytest.raises(mm.WebhookVerificationError, match=word):
        verify(BODY, headers, SECRET, now=NOW)


def test_timestamp_at_tolerance_edge_is_accepted() -> None:
    """A delivery exactly at the tolerance passes; the tolerance is configurable."""
    assert verify(BODY, _headers(ts=NOW - 300), SECRET, now=NOW).job_id
    with pytest.raises(mm.WebhookVerificationError):
        verify(BODY, _headers(ts=NOW - 60), SECRET, now=NOW, tolerance=30)


@pytest.mark.parametrize("missing", ["X-Signature", "X-Timestamp"])
def test_missing_header_is_rejected(missing: str) -> None:
    """A delivery without its signature or timestamp header is refused, naming the header."""
    headers = _headers()
    del headers[missing]
    with pytest.raises(mm.WebhookVerificationError, match=f"missing {missing}"):
        verify(BODY, headers, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("X-Timestamp", "yesterday", "not unix seconds"),
        ("X-Signature", "md5=abc", "sha256="),
        ("X-Signature", "sha256=zz-not-hex", "signature does not match"),
    ],
)
def test_malformed_headers_are_rejected(name: str, value: str, match: str) -> None:
    """Malformed timestamp or signature headers give a clear reason."""
    headers = _headers()
    headers[name] = value
    with pytest.raises(mm.WebhookVerificationError, match=match):
        verify(BODY, headers, SECRET, now=NOW)


def test_signed_non_json_body_is_rejected() -> None:
    """A validly signed body that is not a JSON event object is still refused."""
    body = b"[1, 2, 3]"
    with pytest.raises(mm.WebhookVerificationError, match="not a JSON object"):
        verify(body, _headers(body), SECRET, now=NOW)


def test_text_body_is_a_type_error() -> None:
    """Passing a decoded str instead of raw bytes is a programming error, not a forgery."""
    with pytest.raises(TypeError, match="raw request bytes"):
        verify(BODY.decode(), _headers(), SECRET, now=NOW)  # type: ignore[arg-type]


def test_error_messages_do_not_contain_the_secret() -> None:
    """No rejection message reveals the secret."""
    for headers in (_headers(secret="x"), _headers(ts=NOW - 10_000), {}):
        with pytest.raises(mm.WebhookVerificationError) as info:
            verify(BODY, headers, SECRET, now=NOW)
        assert SECRET not in str(info.value)


class _FrameworkHeaders:
    """Headers that are not a Mapping but offer ``items()`` (like ``email.message.Message``)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)


HEADER_SHAPES: dict[str, Callable[[dict[str, str]], object]] = {
    "dict-as-sent": dict,
    "dict-lower-case": lambda h: {k.lower(): v for k, v in h.items()},
    "dict-upper-case": lambda h: {k.upper(): v for k, v in h.items()},
    "dict-of-bytes": lambda h: {k.encode(): v.encode() for k, v in h.items()},
    "pairs-list": lambda h: list(h.items()),
    "pairs-generator": lambda h: ((k, v) for k, v in h.items()),
    "asgi-byte-pairs": lambda h: [(k.lower().encode(), v.encode()) for k, v in h.items()],
    "asgi-byte-lists": lambda h: [[k.lower().encode(), v.encode()] for k, v in h.items()],
    "mixed-str-and-bytes": lambda h: [(k, v.encode()) for k, v in h.items()],
    "items-duck-type": lambda h: _FrameworkHeaders(list(h.items())),
    "repeated-identical": lambda h: [*h.items(), ("x-signature", h["X-Signature"])],
}


@pytest.mark.parametrize("shape", HEADER_SHAPES)
@pytest.mark.parametrize("secret", [SECRET, SECRET.encode(), bytearray(SECRET.encode())])
def test_every_header_shape_and_secret_type_verifies(shape: str, secret: str | bytes) -> None:
    """Mappings of any case, (name, value) pairs, ASGI byte pairs; str or bytes secrets."""
    headers = HEADER_SHAPES[shape](_headers())
    event = verify(BODY, headers, secret, now=NOW)  # type: ignore[arg-type]
    assert (event.job_id, event.delivery_id) == ("770a9622-a4bd-63f6-c938-668877662222", "d1b2c3")


@pytest.mark.parametrize("shape", ["dict-of-bytes", "asgi-byte-pairs", "pairs-list"])
def test_every_header_shape_still_refuses_a_wrong_secret(shape: str) -> None:
    """Accepting more shapes does not accept more forgeries."""
    headers = HEADER_SHAPES[shape](_headers())
    with pytest.raises(mm.WebhookVerificationError, match="signature does not match"):
        verify(BODY, headers, b"other-secret", now=NOW)  # type: ignore[arg-type]


def test_a_header_repeated_with_another_value_is_refused() -> None:
    """Two different X-Signature values are ambiguous: refused, not resolved by order."""
    headers = [*_headers().items(), ("x-signature", "sha256=" + "0" * 64)]
    with pytest.raises(mm.WebhookVerificationError, match="x-signature is given twice"):
        verify(BODY, headers, SECRET, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        None,
        42,
        "X-Signature: sha256=abc",
        b"x-signature: sha256=abc",
        ["x-signature"],
        [("x-signature", "sha256=abc", "extra")],
        [("x-timestamp", 1_800_000_000)],
        {"x-timestamp": ["1800000000"]},
    ],
    ids=repr,
)
def test_other_header_shapes_are_a_type_error_naming_the_accepted_ones(headers: object) -> None:
    """Anything else is a programming error whose message says what is accepted."""
    with pytest.raises(TypeError, match=r"mapping of header names to values.*\(name, value\)"):
        verify(BODY, headers, SECRET, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", [None, 42, ["s"]], ids=repr)
def test_a_secret_of_another_type_is_a_type_error(secret: object) -> None:
    """The secret is str or bytes."""
    with pytest.raises(TypeError, match="secret must be str or bytes"):
        verify(BODY, _headers(), secret, now=NOW)  # type: ignore[arg-type]
