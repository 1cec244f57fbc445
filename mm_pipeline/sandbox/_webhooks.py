"""Webhook URL checks and signed webhook delivery with bounded retries.

A delivery is a POST of the event's JSON body with these headers:

* ``X-Signature: sha256=<hex HMAC-SHA256(webhook_secret, "<X-Timestamp>.<raw body>")>`` (only when
  the job has a ``webhook_secret``; without one the delivery is sent unsigned);
* ``X-Timestamp``: unix seconds at signing (each attempt is signed afresh);
* ``X-Delivery-ID``: a uuid4, the same for every attempt of one delivery (receivers drop repeats);
* ``X-Event-Type``: ``job.completed`` or ``job.failed``.

Timeouts, connection errors, 408, 429 and 5xx are retried after each of ``retry_delays`` seconds;
any other status ends the delivery (2xx delivered, other 4xx/3xx failed permanently).

The URL is checked at submission and again before every attempt (DNS rebinding): the host is
resolved afresh, the same policy applies (:func:`check_webhook_url`), and the request is sent to
the address that was checked (the URL's host stays in ``Host`` and TLS's SNI and certificate
check), so a name that now resolves to a private or loopback address is refused (the attempt is
recorded as ``refused: <why>``, and the delivery fails without further retries).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias
from urllib.parse import SplitResult, urlsplit

import httpx
import orjson

from mm_pipeline.sandbox._jobs import WebhookRequest

__all__ = ["Delivery", "WebhookDispatcher", "check_webhook_url", "resolve_webhook_url", "signature"]

log = logging.getLogger("mm_pipeline.sandbox")

_RETRY_STATUSES = frozenset({408, 429})
_REFUSED = "refused: "

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the ``X-Signature`` value for *body* signed at *timestamp*.

    Examples
    --------
    >>> signature("s3cret", 1700000000, b'{"event": "job.completed"}')[:15]
    'sha256=faa4f6b6'
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_webhook_url(url: str, *, allow_local: bool = False) -> str | None:
    """Return why *url* is not an acceptable webhook URL, or None when it is.

    The URL must be ``https://`` with a host that resolves only to globally routable addresses.
    With *allow_local*, loopback, private, link-local and reserved addresses are accepted too,
    and ``http://`` is accepted for loopback hosts. The host is resolved (this may block).

    Examples
    --------
    >>> check_webhook_url("https://93.184.215.14/hooks")
    >>> check_webhook_url("http://93.184.215.14/hooks")
    'webhook_url must use https'
    >>> check_webhook_url("https://127.0.0.1:8443/hooks")
    'webhook_url must not target a loopback, private, link-local or reserved address'
    >>> check_webhook_url("http://127.0.0.1:8000/hooks", allow_local=True)
    """
    problem, _ = resolve_webhook_url(url, allow_local=allow_local)
    return problem


def resolve_webhook_url(url: str, *, allow_local: bool) -> tuple[str | None, list[Address]]:
    """Resolve *url*'s host now and apply :func:`check_webhook_url`'s policy to the result.

    Returns
    -------
    tuple
        ``(why not, [])`` when *url* is not acceptable now, else ``(None, addresses)``: the
        checked addresses to connect to, in resolver order.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "webhook_url is not a valid URL", []
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        return "webhook_url must be an absolute https URL", []
    addresses = _resolve(host, port or 443)
    if not addresses:
        return f"webhook_url host {host!r} does not resolve", []
    problem = _policy(parts, addresses, allow_local=allow_local)
    return (problem, []) if problem else (None, addresses)


def _policy(parts: SplitResult, addresses: list[Address], *, allow_local: bool) -> str | None:
    """Why these resolved *addresses* are not an acceptable target, or None."""
    every = set(addresses) | {v4 for a in addresses for v4 in _embedded_ipv4(a)}
    if any(a.is_multicast or a.is_unspecified for a in every):
        return "webhook_url must not target a multicast or unspecified address"
    if parts.scheme == "http" and not (allow_local and all(a.is_loopback for a in every)):
        return "webhook_url must use https"
    if not allow_local and not all(a.is_global for a in every):
        return "webhook_url must not target a loopback, private, link-local or reserved address"
    return None


def _resolve(host: str, port: int) -> list[Address]:
    """Resolve *host* to its distinct addresses, in resolver order (the seam tests replace).

    An IPv6 address embedding an IPv4 one is checked as both (SSRF bypasses), see
    :func:`_policy`.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))


def _pinned(url: str, address: Address) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """Return *url* aimed at the checked *address*, its ``Host`` header and request extensions.

    The request then connects to *address* without resolving the name again, while ``Host``,
    TLS SNI and the certificate check still use the URL's host name.
    """
    original = httpx.URL(url)
    host = original.raw_host.decode("ascii")
    return (
        original.copy_with(host=str(address)),
        {"Host": original.netloc.decode("ascii")},
        {"sni_hostname": host},
    )


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(
    address: Address,
) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 one reaches through mapping, 6to4, Teredo or NAT64."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    teredo = address.teredo
    found = [address.ipv4_mapped, address.sixtofour, teredo[1] if teredo else None]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


@dataclass
class Delivery:
    """One webhook delivery and its attempts (for tests and the control API)."""

    delivery_id: str
    event: str
    job_id: str
    url: str
    outcome: Literal["pending", "delivered", "failed"] = "pending"
    attempts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready copy."""
        return {
            "delivery_id": self.delivery_id,
            "event": self.event,
            "job_id": self.job_id,
            "url": self.url,
            "outcome": self.outcome,
            "attempts": list(self.attempts),
        }


class WebhookDispatcher:
    """Send webhooks on background threads, retrying with the given delays.

    Parameters
    ----------
    retry_delays
        Seconds to wait before each retry; ``len(retry_delays) + 1`` attempts at most.
    timeout
        Seconds per attempt.
    allow_local
        The submission policy's ``allow_local``, applied again before every attempt.
    """

    def __init__(
        self,
        *,
        retry_delays: Sequence[float] = (1, 2, 4, 8, 16),
        timeout: float = 10.0,
        allow_local: bool = False,
    ):
        self._delays = tuple(retry_delays)
        self._timeout = timeout
        self._allow_local = allow_local
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deliveries: list[Delivery] = []

    def send(self, request: WebhookRequest) -> None:
        """Deliver *request* in the background."""
        delivery = Delivery(
            delivery_id=str(uuid.uuid4()),
            event=request.event,
            job_id=str(request.payload.get("job_id")),
            url=request.url,
        )
        thread = threading.Thread(
            target=self._deliver,
            args=(request, delivery),
            name=f"mm-sandbox-webhook-{delivery.job_id}",
            daemon=True,
        )
        with self._lock:
            if self._stop.is_set():
                return
            self._deliveries.append(delivery)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def deliveries(self) -> list[dict[str, Any]]:
        """Return every delivery so far, oldest first."""
        with self._lock:
            return [d.as_dict() for d in self._deliveries]

    def close(self, timeout: float = 5.0) -> None:
        """Cancel pending retries and wait (bounded) for attempts in flight."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def reset(self) -> None:
        """Cancel everything in flight and forget past deliveries."""
        self.close()
        with self._lock:
            self._deliveries.clear()
            self._threads.clear()
        self._stop = threading.Event()

    def _deliver(self, request: WebhookRequest, delivery: Delivery) -> None:
        stop = self._stop
        body = orjson.dumps(request.payload)
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            for attempt, delay in enumerate((0.0, *self._delays)):
                if delay and stop.wait(delay):
                    break
                if stop.is_set():
                    break
                outcome = self._attempt(client, request, delivery, body)
                with self._lock:
                    delivery.attempts.append(outcome)
                if outcome.isdigit() and 200 <= int(outcome) < 300:
                    delivery.outcome = "delivered"
                    return
                if not _retryable(outcome):
                    break
                log.info("webhook %s attempt %d: %s", delivery.delivery_id, attempt + 1, outcome)
        delivery.outcome = "failed"

    def _attempt(
        self, client: httpx.Client, request: WebhookRequest, delivery: Delivery, body: bytes
    ) -> str:
        problem, addresses = resolve_webhook_url(request.url, allow_local=self._allow_local)
        if problem is not None:
            if not addresses and problem.endswith("does not resolve"):
                return "error: " + problem  # DNS trouble may pass: retried
            log.warning("webhook %s refused at send time: %s", delivery.delivery_id, problem)
            return _REFUSED + problem
        url, host_header, extensions = _pinned(request.url, addresses[0])
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "MarketMatch-Sandbox-Webhooks/1",
            "X-Timestamp": str(timestamp),
            "X-Delivery-ID": delivery.delivery_id,
            "X-Event-Type": request.event,
            **host_header,
        }
        if request.secret:
            headers["X-Signature"] = signature(request.secret, timestamp, body)
        try:
            response = client.post(url, content=body, headers=headers, extensions=extensions)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}"
        return str(response.status_code)


def _retryable(outcome: str) -> bool:
    if outcome.startswith(_REFUSED):
        return False
    if not outcome.isdigit():
        return True
    status = int(outcome)
    return status in _RETRY_STATUSES or status >= 500
