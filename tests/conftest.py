"""Shared fixtures: one MarketMatch sandbox per test session, served over loopback.

Fixtures
--------
``sandbox``
    The session's sandbox (a real uvicorn server on a free 127.0.0.1 port). Generous rate limit
    and quota, short jobs (``job_seconds=0.2``), fast webhook retries, local webhooks allowed.
    Keys: ``sandbox.api_key`` (account A), :data:`TEAMMATE_KEY` (also account A),
    :data:`OTHER_KEY` (account B), :data:`NO_ACCESS_KEY` (403).
``clean_sandbox``
    The same sandbox, reset before the test (no jobs, faults, webhooks; job timing restored).
``api``
    An ``httpx.Client`` on ``clean_sandbox`` with account A's key as the ``api_key`` parameter.
``webhook_receiver``
    A tiny local HTTP server recording every POST; ``statuses`` scripts its answers.
``trickle_server``
    A raw-socket HTTP server on loopback that answers every request with its headers at once,
    then its body one byte every 0.4 s; it records each request and each client that gave up.
``unwritable_dir``
    An existing directory that refuses new files, even to root.

Every test runs with ``MM_PIPELINE_CACHE_DIR`` set to a fresh folder of its own (the library's
default cache), so no test reads another's answers or the home folder's cache.

Helpers: :func:`csv_gz` builds an upload, :func:`wait_until` polls a condition with a deadline,
:func:`make_vins` makes distinct decodable VINs from :data:`PUBLISHED_VINS`.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import os
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import polars as pl
import pytest

from mm_pipeline._vin import check_digit
from mm_pipeline.sandbox import Sandbox, running

PRIMARY_KEY = "mc_test_primary_account_key"
TEAMMATE_KEY = "mc_test_teammate_key"
OTHER_KEY = "mc_test_other_account_key"
NO_ACCESS_KEY = "mc_test_no_marketmatch_access"
SANDBOX_OPTIONS: dict[str, Any] = {
    "api_keys": [PRIMARY_KEY, f"{TEAMMATE_KEY}={PRIMARY_KEY}", OTHER_KEY],
    "no_access_keys": [NO_ACCESS_KEY],
    "rate_limit": 100_000,
    "quota": 1_000_000_000,
    "job_seconds": 0.2,
    "allow_local_webhooks": True,
    "webhook_retry_delays": (0.05, 0.1, 0.2),
    "webhook_timeout": 2.0,
}
#: The VINs of the published API text (all decodable, valid check digits).
PUBLISHED_VINS = (
    "WP1BE2AY5PDA28064",
    "5FNYF8H54SB000197",
    "JTJBM7FX1K5236458",
    "YV4L12RL4R1757085",
    "JTMDFREV7JJ214231",
    "7YAKN4DA1SY001014",
    "KL79MPSL8SB184667",
    "1FMCU0GD0JUD56190",
    "4T1C11BKXNU065125",
)
PAIRS_HEADER = ("vin", "price", "miles", "source", "zip")
TLS = ssl.create_default_context()
"""One TLS context for every test client (building one per client costs ~80 ms)."""

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _cache_dir_of_the_test(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Give each test its own default cache (batch files, the CLI's answers), not the home's."""
    monkeypatch.setenv("MM_PIPELINE_CACHE_DIR", str(tmp_path_factory.mktemp("mm-cache")))


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The session's sandbox server."""
    with running(**SANDBOX_OPTIONS) as sb:
        yield sb


@pytest.fixture
def clean_sandbox(sandbox: Sandbox) -> Sandbox:
    """The session's sandbox, reset to a fresh state."""
    sandbox.reset()
    return sandbox


@pytest.fixture
def api(clean_sandbox: Sandbox) -> Iterator[httpx.Client]:
    """An httpx client for account A of the (reset) session sandbox."""
    with client_for(clean_sandbox) as client:
        yield client


def client_for(sb: Sandbox, key: str | None = None, *, timeout: float = 10.0) -> httpx.Client:
    """Return an httpx client on *sb* sending *key* (default: ``sb.api_key``) as ``api_key``."""
    return httpx.Client(
        base_url=sb.base_url,
        params={"api_key": key if key is not None else sb.api_key},
        timeout=timeout,
        verify=TLS,
    )


def make_vins(count: int, *, offset: int = 0) -> list[str]:
    """Distinct decodable VINs: the published ones with new serial numbers and check digits."""
    vins = []
    for i in range(offset, offset + count):
        draft = PUBLISHED_VINS[i % len(PUBLISHED_VINS)][:11] + f"{i:06d}"
        vins.append(draft[:8] + check_digit(draft) + draft[9:])
    return vins


def csv_gz(rows: Iterable[Iterable[object]], header: Iterable[str] = PAIRS_HEADER) -> bytes:
    """Return a gzip-compressed CSV with *header* and *rows*."""
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def wait_until(probe: Callable[[], T], accept: Callable[[T], bool], *, timeout: float = 15.0) -> T:
    """Call *probe* until *accept* likes its result; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s; last value: {value!r}")
        threading.Event().wait(0.02)


def wait_for_job(client: httpx.Client, job_id: str, *, timeout: float = 15.0) -> dict[str, Any]:
    """Poll a job's status until it is no longer PROCESSING; return the final status."""

    def probe() -> dict[str, Any]:
        response = client.get(f"/v2/batch/marketmatch/rank/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return wait_until(probe, lambda s: s["status"] != "PROCESSING", timeout=timeout)


@dataclass
class ReceivedWebhook:
    """One request the receiver got."""

    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A local HTTP server that records POSTs and answers with scripted statuses."""

    url: str
    received: list[ReceivedWebhook] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """Statuses for the next requests, in order; 200 once exhausted."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[ReceivedWebhook]:
        """Wait until *count* requests have arrived; return them."""
        wait_until(lambda: len(self.received), lambda n: n >= count, timeout=timeout)
        with self.lock:
            return list(self.received)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A recording webhook receiver on a free loopback port."""
    receiver = WebhookReceiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.received.append(ReceivedWebhook(self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class TrickleServer:
    """A loopback HTTP server whose answers trickle: headers at once, then 1 byte every 0.4 s."""

    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers (besides ``Content-Length: 1000`` and a JSON content type)."""
    requests: list[str] = field(default_factory=list)
    """The request line of every request received."""
    abandoned: list[str] = field(default_factory=list)
    """The request line of every request whose client closed the connection mid-answer."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def trickle_server() -> Iterator[TrickleServer]:
    """A server that never finishes an answer in reasonable time (a trickling body)."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = TrickleServer(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def answer(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            line = head.split(b"\r\n", 1)[0].decode()
            with server.lock:
                server.requests.append(line)
                extra = "".join(f"{k}: {v}\r\n" for k, v in server.headers.items())
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + extra.encode()
                + b"Content-Length: 1000\r\n\r\n"
            )
            for _ in range(1000):
                if stop.is_set():
                    return
                readable, _, _ = select.select([conn], [], [], 0.4)  # the server's pace
                try:
                    gone = bool(readable) and not conn.recv(65536)
                    if not gone:
                        conn.sendall(b" ")
                except OSError:
                    gone = True
                if gone:
                    with server.lock:
                        server.abandoned.append(line)
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=answer, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """An existing directory in which no file can be created, whoever runs the tests.

    Not root: a directory of mode 0555. Root (whom modes do not stop): ``/sys``, which refuses
    new files to root too (sysfs; read-only in containers). A probe proves the refusal.
    """
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
    else:
        folder = Path("/sys")
    probe = folder / f"mm-probe-{uuid.uuid4().hex}"
    try:
        probe.touch(exist_ok=False)
    except OSError:
        pass
    else:
        probe.unlink()
        pytest.fail(f"{folder} accepted a new file; no unwritable directory on this machine")
    try:
        yield folder
    finally:
        if folder.is_relative_to(tmp_path):
            folder.chmod(0o755)


def server_jobs(sb: Sandbox, key: str | None = None) -> list[dict[str, Any]]:
    """Every job of the key's account, straight from the API (no client logic)."""
    with client_for(sb, key) as http:
        body = http.get("/v2/batch/marketmatch/rank/jobs", params={"rows": 100}).json()
    jobs: list[dict[str, Any]] = body["jobs"]
    return jobs


class SubsetRanker:
    """Ranks chunks by a fixed fit per item (ties by id), as the ranking contract promises.

    Records every chunk it was asked for. ``failing`` items are never ranked; ``fail_on_repeat``
    items are ranked the first time and fail whenever they are sent again (an API contradicting
    an earlier answer).
    """

    def __init__(
        self,
        fit: dict[int, float],
        *,
        failing: frozenset[int] = frozenset(),
        fail_on_repeat: frozenset[int] = frozenset(),
    ) -> None:
        self.fit = fit
        self.failing = failing
        self.fail_on_repeat = fail_on_repeat
        self.seen: set[int] = set()
        self.chunks: list[list[int]] = []

    async def __call__(self, chunk: list[int]) -> list[int]:
        self.chunks.append(list(chunk))
        again = self.fail_on_repeat & self.seen
        self.seen.update(chunk)
        ranked = [item for item in chunk if item not in self.failing and item not in again]
        return sorted(ranked, key=lambda item: (-self.fit[item], item))

    def truth(self, items: list[int]) -> list[int]:
        """The order one request holding ``items`` would give (failing items left out)."""
        kept = [item for item in items if item not in self.failing]
        return sorted(kept, key=lambda item: (-self.fit[item], item))


# -- frames bigger than memory: collects past a bound are refused ---------------------------

BOUND = 40_000
"""No frame the streaming functions materialise may hold more rows than this."""


@pytest.fixture
def bounded_collect(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ``LazyFrame.collect`` of the test that returns more than ``BOUND`` rows raises."""
    return refuse_large_collects(monkeypatch)


def refuse_large_collects(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every ``LazyFrame.collect`` that returns more than ``BOUND`` rows raise.

    Polars 2 collects through its streaming engine, so a guard at the source alone cannot see
    a collect: this one checks what each collect returns (the heights are recorded).
    """
    heights: list[int] = []
    collect = pl.LazyFrame.collect

    def guarded(self: pl.LazyFrame, *args: object, **kwargs: object) -> pl.DataFrame:
        frame = collect(self, *args, **kwargs)  # type: ignore[call-overload]
        assert isinstance(frame, pl.DataFrame)
        heights.append(frame.height)
        if frame.height > BOUND:
            raise AssertionError(f"a LazyFrame of {frame.height} rows was collected")
        return frame

    monkeypatch.setattr(pl.LazyFrame, "collect", guarded)
    return heights


def scan_in_small_batches(frame: pl.DataFrame, directory: Path) -> pl.LazyFrame:
    """A Parquet scan of ``frame`` whose every batch is checked to hold at most ``BOUND`` rows."""
    path = directory / "pairs.parquet"
    frame.write_parquet(path, row_group_size=10_000)

    def at_most_bound(batch: pl.DataFrame) -> pl.DataFrame:
        if batch.height > BOUND:
            raise AssertionError(f"a batch of {batch.height} rows reached the writer")
        return batch

    return pl.scan_parquet(path).map_batches(at_most_bound, schema=frame.schema, streamable=True)
