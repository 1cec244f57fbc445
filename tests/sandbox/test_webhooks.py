"""Webhook delivery to a local receiver: payloads, signatures, retries, URL checks."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from mm_pipeline import webhooks
from mm_pipeline.sandbox import Sandbox, running
from mm_pipeline.sandbox._webhooks import check_webhook_url
from tests.conftest import (
    SANDBOX_OPTIONS,
    WebhookReceiver,
    client_for,
    csv_gz,
    wait_for_job,
    wait_until,
)

JOBS = "/v2/batch/marketmatch/rank/jobs"
ROWS = [
    ("WP1BE2AY5PDA28064", 20000, 3000, "mbofaugusta.com", "30907"),
    ("5FNYF8H54SB000197", 37610, 14428, "mbofaugusta.com", "30907"),
]
SECRET = "whsec_sandbox_test"


def submit(api: httpx.Client, url: str, secret: str | None = SECRET) -> str:
    data = {"webhook_url": url}
    if secret is not None:
        data["webhook_secret"] = secret
    response = api.post(JOBS, files={"file": ("a.csv.gz", csv_gz(ROWS))}, data=data)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def test_completed_webhook_is_signed_and_published(
    api: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    """job.completed arrives with the published payload and a valid HMAC-SHA256 signature."""
    job_id = submit(api, webhook_receiver.url)
    final = wait_for_job(api, job_id)
    (hook,) = webhook_receiver.wait_for(1)
    headers = {k.lower(): v for k, v in hook.headers.items()}
    assert headers["x-event-type"] == "job.completed"
    assert uuid.UUID(headers["x-delivery-id"]).version == 4
    assert abs(int(headers["x-timestamp"]) - time.time()) < 60
    assert headers["x-signature"] == expected_signature(SECRET, headers["x-timestamp"], hook.body)
    payload = orjson.loads(hook.body)
    assert payload == {
        "event": "job.completed",
        "job_id": job_id,
        "status": "COMPLETED",
        "item_count": 2,
        "successful_count": final["successful_count"],
        "failed_count": final["failed_count"],
        "completed_at": final["completed_at"],
    }
    event = webhooks.verify(hook.body, hook.headers, SECRET)
    assert event.job_id == job_id


def test_failed_webhook(
    api: httpx.Client, clean_sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    """job.failed carries the error code and message of the failure."""
    clean_sandbox.hold_jobs()
    job_id = submit(api, webhook_receiver.url)
    clean_sandbox.fail_job(job_id, error_code="processing_failed", error_message="boom")
    (hook,) = webhook_receiver.wait_for(1)
    payload = orjson.loads(hook.body)
    assert payload["event"] == "job.failed"
    assert (payload["status"], payload["error_code"], payload["error_message"]) == (
        "FAILED",
        "processing_failed",
        "boom",
    )
    assert "completed_at" in payload
    assert hook.headers["X-Event-Type"] == "job.failed"


def test_without_secret_the_delivery_is_unsigned(
    api: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    """Without webhook_secret the webhook is sent with no X-Signature (other headers intact)."""
    submit(api, webhook_receiver.url, secret=None)
    (hook,) = webhook_receiver.wait_for(1)
    assert "X-Signature" not in hook.headers
    assert hook.headers["X-Event-Type"] == "job.completed"


@pytest.mark.parametrize("failure", [500, 503, 429, 408])
def test_transient_failures_are_retried_with_the_same_delivery_id(
    api: httpx.Client, clean_sandbox: Sandbox, webhook_receiver: WebhookReceiver, failure: int
) -> None:
    """A 5xx/429/408 answer is retried; every attempt repeats the X-Delivery-ID and is re-signed."""
    webhook_receiver.statuses = [failure, failure]
    submit(api, webhook_receiver.url)
    hooks = webhook_receiver.wait_for(3)
    assert len({h.headers["X-Delivery-ID"] for h in hooks}) == 1
    assert len({h.body for h in hooks}) == 1
    for hook in hooks:
        assert hook.headers["X-Signature"] == expected_signature(
            SECRET, hook.headers["X-Timestamp"], hook.body
        )
    (delivery,) = wait_until(
        clean_sandbox.webhook_deliveries, lambda d: bool(d) and d[0]["outcome"] != "pending"
    )
    assert delivery["outcome"] == "delivered"
    assert delivery["attempts"] == [str(failure), str(failure), "200"]


def test_permanent_failure_is_not_retried(
    api: httpx.Client, clean_sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    """A 4xx other than 408/429 ends the delivery after one attempt."""
    webhook_receiver.statuses = [404]
    submit(api, webhook_receiver.url)
    (delivery,) = wait_until(
        clean_sandbox.webhook_deliveries, lambda d: bool(d) and d[0]["outcome"] != "pending"
    )
    assert delivery["outcome"] == "failed"
    assert delivery["attempts"] == ["404"]
    assert len(webhook_receiver.received) == 1


def test_retries_are_bounded(
    api: httpx.Client, clean_sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    """A receiver that always fails gets 1 + len(retry delays) attempts, then the sandbox stops."""
    webhook_receiver.statuses = [500] * 10
    submit(api, webhook_receiver.url)
    (delivery,) = wait_until(
        clean_sandbox.webhook_deliveries, lambda d: bool(d) and d[0]["outcome"] != "pending"
    )
    assert delivery["outcome"] == "failed"
    assert delivery["attempts"] == ["500"] * 4


def test_unreachable_receiver_is_retried(api: httpx.Client, clean_sandbox: Sandbox) -> None:
    """A connection error counts as transient and is retried until the attempts run out."""
    submit(api, "http://127.0.0.1:9/unreachable")
    (delivery,) = wait_until(
        clean_sandbox.webhook_deliveries, lambda d: bool(d) and d[0]["outcome"] != "pending"
    )
    assert delivery["outcome"] == "failed"
    assert len(delivery["attempts"]) == 4
    assert all(a.startswith("error") for a in delivery["attempts"])


@pytest.mark.parametrize(
    ("url", "allow_local", "accepted"),
    [
        ("https://93.184.215.14/h", False, True),
        ("https://[2606:2800:220:1:248:1893:25c8:1946]/h", False, True),
        ("http://93.184.215.14/h", False, False),
        ("http://93.184.215.14/h", True, False),  # http only for loopback, even when local
        ("https://192.168.1.10/h", False, False),
        ("https://192.168.1.10/h", True, True),
        ("https://100.64.0.1/h", False, False),  # shared address space
        ("https://[fe80::1]/h", False, False),
        ("https://0.0.0.0/h", True, False),
        ("http://localhost:8000/h", True, True),
        ("https://224.0.0.1/h", True, False),
        ("https://93.184.215.14:99999/h", False, False),
        ("/relative/path", False, False),
    ],
)
def test_check_webhook_url(url: str, allow_local: bool, accepted: bool) -> None:
    """The URL check accepts public HTTPS and refuses the rest, local addresses only if allowed."""
    assert (check_webhook_url(url, allow_local=allow_local) is None) is accepted


class RebindingDns:
    """``socket.getaddrinfo`` for one made-up name whose answers change, call after call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]) -> None:
        self.name, self.answers, self.asked = name, answers, 0
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self._real(host, port, *args, **kwargs)
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return self._real(answer, port, *args, **kwargs)


@pytest.fixture(scope="module")
def strict_sandbox() -> Iterator[Sandbox]:
    """A sandbox with the production webhook policy: public HTTPS targets only."""
    with running(**{**SANDBOX_OPTIONS, "allow_local_webhooks": False}) as sb:
        yield sb


def test_a_name_rebound_to_loopback_after_submission_is_refused_at_send_time(
    strict_sandbox: Sandbox, webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Public at submission, loopback when sending: no request leaves, the delivery failed."""
    strict_sandbox.reset()
    port = webhook_receiver.url.split(":")[2].split("/")[0]
    dns = RebindingDns(monkeypatch, "hooks.rebind.test", ["93.184.215.14", "127.0.0.1"])
    with client_for(strict_sandbox) as api:
        submit(api, f"https://hooks.rebind.test:{port}/hooks")
    (delivery,) = wait_until(
        strict_sandbox.webhook_deliveries, lambda d: bool(d) and d[0]["outcome"] != "pending"
    )
    assert delivery["outcome"] == "failed"
    assert delivery["attempts"] == [
        "refused: webhook_url must not target a loopback, private, link-local or reserved address"
    ]
    assert dns.asked == 2  # once at submission, once before the (refused) attempt
    assert webhook_receiver.received == []


def test_a_delivery_goes_to_the_address_checked_and_keeps_the_host_name(
    api: httpx.Client,
    clean_sandbox: Sandbox,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name is resolved once per attempt; the request carries it as Host (local allowed)."""
    port = webhook_receiver.url.split(":")[2].split("/")[0]
    dns = RebindingDns(monkeypatch, "hooks.pinned.test", ["127.0.0.1", "127.0.0.1", "10.255.255.1"])
    submit(api, f"http://hooks.pinned.test:{port}/hooks")
    (hook,) = webhook_receiver.wait_for(1)
    assert hook.headers["Host"] == f"hooks.pinned.test:{port}"
    assert dns.asked == 2  # a third look-up (10.255.255.1, unreachable) would not deliver
