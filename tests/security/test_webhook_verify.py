"""mm.webhooks.verify refuses every forgery with WebhookVerificationError, and nothing else.

The table starts from a delivery the sandbox really signed and sent to a local receiver; the
property tests throw arbitrary bodies, headers, secrets and clocks at ``verify``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.webhooks import DEFAULT_TOLERANCE, sign, verify
from tests.bad_input.corpus import GOOD, OTHER_DEALER
from tests.conftest import WebhookReceiver

SECRET = "whsec-reliability-7"
PROPERTY = settings(max_examples=200, deadline=None, database=None)

Delivery = tuple[bytes, dict[str, str], str, float]
"""What ``verify`` is given: raw body, headers, secret, the receiver's clock."""


def _replace(headers: Mapping[str, str], **values: str | None) -> dict[str, str]:
    """Headers with some replaced (case-insensitively) or, given None, removed."""
    wanted = {name.lower().replace("_", "-"): value for name, value in values.items()}
    kept = {k: v for k, v in headers.items() if k.lower() not in wanted}
    kept.update({k: v for k, v in wanted.items() if v is not None})
    return kept


def _flip(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]


def _resigned(body: bytes, timestamp: str) -> Callable[[Delivery], Delivery]:
    """A delivery correctly signed with the secret, at a (possibly absurd) timestamp."""

    def mutate(d: Delivery) -> Delivery:
        headers = _replace(d[1], x_timestamp=timestamp, x_signature=sign(body, d[2], timestamp))
        return body, headers, d[2], d[3]

    return mutate


FORGERIES: dict[str, Callable[[Delivery], Delivery]] = {
    "one-byte-flipped": lambda d: (_flip(d[0]), d[1], d[2], d[3]),
    "newline-appended": lambda d: (d[0] + b"\n", d[1], d[2], d[3]),
    "last-byte-cut": lambda d: (d[0][:-1], d[1], d[2], d[3]),
    "json-re-serialised": lambda d: (
        orjson.dumps(orjson.loads(d[0]), option=orjson.OPT_INDENT_2),
        d[1],
        d[2],
        d[3],
    ),
    "status-rewritten": lambda d: (d[0].replace(b"COMPLETED", b"FAILED"), d[1], d[2], d[3]),
    "wrong-secret": lambda d: (d[0], d[1], "whsec-guess", d[3]),
    "secret-with-a-space": lambda d: (d[0], d[1], d[2] + " ", d[3]),
    "stale-timestamp": lambda d: (d[0], d[1], d[2], d[3] + DEFAULT_TOLERANCE + 1),
    "future-timestamp": lambda d: (d[0], d[1], d[2], d[3] - DEFAULT_TOLERANCE - 1),
    "timestamp-changed-signature-kept": lambda d: (
        d[0],
        _replace(d[1], x_timestamp=str(int(d[3]) + 1)),
        d[2],
        d[3],
    ),
    "missing-signature": lambda d: (d[0], _replace(d[1], x_signature=None), d[2], d[3]),
    "missing-timestamp": lambda d: (d[0], _replace(d[1], x_timestamp=None), d[2], d[3]),
    "no-headers": lambda d: (d[0], {}, d[2], d[3]),
    "signature-empty": lambda d: (d[0], _replace(d[1], x_signature=""), d[2], d[3]),
    "signature-prefix-only": lambda d: (d[0], _replace(d[1], x_signature="sha256="), d[2], d[3]),
    "signature-not-hex": lambda d: (d[0], _replace(d[1], x_signature="sha256=zz"), d[2], d[3]),
    "signature-other-algorithm": lambda d: (
        d[0],
        _replace(d[1], x_signature="md5=" + d[1]["X-Signature"][7:]),
        d[2],
        d[3],
    ),
    "signature-non-ascii": lambda d: (
        d[0],
        _replace(d[1], x_signature="sha256=" + "é" * 64),
        d[2],
        d[3],
    ),
    "signature-with-suffix": lambda d: (
        d[0],
        _replace(d[1], x_signature=d[1]["X-Signature"] + "00"),
        d[2],
        d[3],
    ),
    "signature-of-another-body": lambda d: (
        d[0],
        _replace(d[1], x_signature=sign(b"{}", d[2], d[1]["X-Timestamp"])),
        d[2],
        d[3],
    ),
    "timestamp-empty": lambda d: (d[0], _replace(d[1], x_timestamp=""), d[2], d[3]),
    "timestamp-a-word": lambda d: (d[0], _replace(d[1], x_timestamp="yesterday"), d[2], d[3]),
    "timestamp-a-float": lambda d: (d[0], _replace(d[1], x_timestamp="1.8e9"), d[2], d[3]),
    "timestamp-5000-digits": lambda d: (d[0], _replace(d[1], x_timestamp="9" * 5000), d[2], d[3]),
    "signed-centuries-ahead": lambda d: _resigned(d[0], "9" * 400)(d),
    "signed-centuries-ago": lambda d: _resigned(d[0], "-" + "9" * 400)(d),
    "signed-body-not-json": lambda d: _resigned(b"\xff\xfe not json", d[1]["X-Timestamp"])(d),
    "signed-body-json-list": lambda d: _resigned(b"[1, 2]", d[1]["X-Timestamp"])(d),
    "signed-body-without-job-id": lambda d: _resigned(b'{"event": "x"}', d[1]["X-Timestamp"])(d),
}


@pytest.fixture
def delivery(clean_sandbox: Sandbox, webhook_receiver: WebhookReceiver, tmp_path: Path) -> Delivery:
    """A job.completed delivery the sandbox signed and POSTed to a local receiver."""
    client = mm.MarketMatchClient(clean_sandbox.api_key, clean_sandbox.base_url)
    jobs = client.batch.configure(cache_dir=tmp_path)
    frame = pl.DataFrame([GOOD, {**GOOD, **OTHER_DEALER}])
    job = jobs.submit(frame, webhook_url=webhook_receiver.url, webhook_secret=SECRET)
    (received,) = webhook_receiver.wait_for(1)
    headers = dict(received.headers)
    event = verify(received.body, headers, SECRET)  # the genuine delivery verifies
    assert (event.job_id, event.status) == (job.job_id, "COMPLETED")
    return received.body, headers, SECRET, float(event.timestamp)


def test_every_forgery_is_refused_with_webhook_verification_error(delivery: Delivery) -> None:
    """Tampered bodies, wrong secrets, stale/future/absurd timestamps, bad or missing headers."""
    outcomes = {}
    for name, forge in FORGERIES.items():
        body, headers, secret, now = forge(delivery)
        try:
            verify(body, headers, secret, now=now)
        except Exception as exc:  # the type is what is checked
            outcomes[name] = (type(exc).__name__, str(exc))
        else:
            outcomes[name] = ("accepted", "")
    wrong = {n: o for n, o in outcomes.items() if o[0] != "WebhookVerificationError" or not o[1]}
    assert not wrong
    assert not [n for n, (_, message) in outcomes.items() if SECRET in message]


@PROPERTY
@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(["X-Signature", "x-signature", "X-Timestamp", "x-timestamp", "X-Other"]),
        st.text(max_size=80),
        max_size=4,
    ),
    secret=st.text(min_size=1, max_size=30),
    now=st.floats(min_value=-1e300, max_value=1e300) | st.integers(-(10**20), 10**20),
)
def test_arbitrary_deliveries_raise_only_verification_errors(
    body: bytes, headers: dict[str, str], secret: str, now: float
) -> None:
    """Whatever arrives, verify either accepts a genuinely signed event or raises WVE."""
    try:
        event = verify(body, headers, secret, now=now)
    except mm.WebhookVerificationError:
        return
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["x-signature"].strip().lower() == sign(body, secret, lowered["x-timestamp"])
    assert event.job_id


@PROPERTY
@given(
    job_id=st.text(min_size=1, max_size=40),
    extra=st.dictionaries(
        st.text(max_size=10), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20), max_size=4
    ),
    timestamp=st.integers(1_700_000_000, 1_900_000_000) | st.integers(-(10**500), 10**500),
    skew=st.integers(-2 * DEFAULT_TOLERANCE, 2 * DEFAULT_TOLERANCE),
    position=st.integers(min_value=0),
    bit=st.integers(0, 7),
)
def test_signed_events_verify_in_time_and_no_bit_flip_passes(
    job_id: str, extra: dict[str, Any], timestamp: int, skew: int, position: int, bit: int
) -> None:
    """A signed event verifies within the tolerance, else raises WVE; a flipped bit never passes."""
    body = orjson.dumps({**extra, "event": "job.completed", "job_id": job_id})
    headers = {"X-Signature": sign(body, SECRET, timestamp), "X-Timestamp": str(timestamp)}
    realistic = abs(timestamp) < 2**53
    now = timestamp + skew if realistic else 1_800_000_000
    if realistic and abs(skew) <= DEFAULT_TOLERANCE:
        assert verify(body, headers, SECRET, now=now).job_id == job_id
    else:
        with pytest.raises(mm.WebhookVerificationError, match=r"old|in the future"):
            verify(body, headers, SECRET, now=now)
    index = position % len(body)
    tampered = body[:index] + bytes([body[index] ^ (1 << bit)]) + body[index + 1 :]
    with pytest.raises(mm.WebhookVerificationError):
        verify(tampered, headers, SECRET, now=now)


def test_the_real_delivery_verifies_in_every_shape_frameworks_hand_over(
    delivery: Delivery,
) -> None:
    """ASGI byte pairs, (name, value) lists, any-case mappings, a bytes secret: all verify."""
    body, headers, secret, now = delivery
    shapes: dict[str, object] = {
        "asgi": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "pairs": list(headers.items()),
        "upper-case-mapping": {k.upper(): v for k, v in headers.items()},
    }
    for given_secret in (secret, secret.encode()):
        for shape in shapes.values():
            event = verify(body, shape, given_secret, now=now)  # type: ignore[arg-type]
            assert event.delivery_id == headers["X-Delivery-ID"]
        with pytest.raises(mm.WebhookVerificationError, match="signature does not match"):
            verify(_flip(body), shapes["asgi"], given_secret, now=now)  # type: ignore[arg-type]
