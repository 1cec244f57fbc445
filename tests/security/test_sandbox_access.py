"""The sandbox's access rules and upload defences, proven through the library and raw HTTP.

- One account cannot see, poll, wait on or download another's jobs (and spends nothing of it).
- Webhook URLs that are not HTTPS, or whose host reaches a loopback, private, link-local or
  otherwise non-global address (in any spelling: decimal, hex, IPv4-mapped, NAT64, 6to4, ...)
  are refused, unless the local-testing flag is set (then ``http://`` only for loopback).
- An upload over the cap is answered 413 long before it ends, and the server's memory stays
  flat: it runs as its own process (``mm-pipeline sandbox serve``) whose RSS is sampled.
- Malformed multipart bodies get a clean 400; gzip bombs fail their job without filling memory.
"""

from __future__ import annotations

import gzip
import re
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import psutil
import pytest

import mm_pipeline as mm
from mm_pipeline._batch import JobStatusFilter
from mm_pipeline.sandbox import Sandbox, running
from tests.bad_input.corpus import GOOD, OTHER_DEALER
from tests.conftest import (
    OTHER_KEY,
    SANDBOX_OPTIONS,
    TEAMMATE_KEY,
    client_for,
    csv_gz,
    wait_until,
)

JOBS = "/v2/batch/marketmatch/rank/jobs"
PAIRS = pl.DataFrame([GOOD, {**GOOD, **OTHER_DEALER}])
SERVER_KEY = "mc_test_upload_guard"
CAP_MB = 1
MIB = 1 << 20
UPLOAD_BYTES = 256 * MIB
"""What the client offers to send; the 413 must come long before."""
MEMORY_HEADROOM = 64 * MIB  # a quarter of the upload: whole-body buffering would show 256 MiB
"""The server may grow by this much while refusing (its baseline holds polars and numpy)."""


def jobs_of(sb: Sandbox, key: str, folder: Path) -> mm.BatchClient:
    client = mm.MarketMatchClient(key, sb.base_url)
    return client.batch.configure(cache_dir=folder, poll_interval=0.05)


# -- accounts -------------------------------------------------------------------------------------


def test_another_account_can_neither_see_poll_wait_on_nor_download_a_job(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Account B gets job_not_found everywhere, cannot spend A's download slots, adopts nothing."""
    mine = jobs_of(clean_sandbox, clean_sandbox.api_key, tmp_path / "a")
    job = mine.wait(mine.submit(PAIRS).job_id, timeout=15)
    theirs = jobs_of(clean_sandbox, OTHER_KEY, tmp_path / "b")
    for attempt in (
        lambda: theirs.status(job.job_id),
        lambda: theirs.wait(job.job_id, timeout=5),
        lambda: theirs.download(job.job_id),
    ):
        with pytest.raises(mm.NotFoundError) as info:
            attempt()
        assert info.value.error_code == "job_not_found"
    statuses: tuple[JobStatusFilter, ...] = ("all", "completed", "active", "failed")
    for status in statuses:
        assert theirs.list(status=status) == []
    assert mine.status(job.job_id).remaining_downloads == 3  # B spent no slot of A's
    # The same work submitted by B is B's own new job, not A's adopted.
    own = theirs.submit(PAIRS)
    assert (own.adopted, own.job_id != job.job_id) == (False, True)
    # A teammate's key on A's account does see it: the 404 is about accounts, not keys.
    teammate = jobs_of(clean_sandbox, TEAMMATE_KEY, tmp_path / "t")
    assert teammate.status(job.job_id).status == "COMPLETED"
    assert job.job_id not in {j.job_id for j in theirs.list()}


# -- webhook URLs ---------------------------------------------------------------------------------

REFUSED_URLS = [
    "http://93.184.215.14/hook",  # not https
    "https://127.0.0.1/hook",
    "https://127.1/hook",  # short form of 127.0.0.1
    "https://2130706433/hook",  # decimal 127.0.0.1
    "https://0x7f000001/hook",  # hex
    "https://017700000001/hook",  # octal
    "https://localhost/hook",
    "https://LOCALHOST./hook",
    "https://93.184.215.14@127.0.0.1/hook",  # user info in front of the real host
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "https://[::ffff:10.0.0.1]/hook",
    "https://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",  # shared address space
    "https://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
    "https://[fe80::1]/hook",
    "https://[fc00::1]/hook",  # unique local
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",  # multicast
    "https://255.255.255.255/hook",
    "https://198.18.0.1/hook",  # benchmarking, reserved
    "https://no-such-host.invalid/hook",
    "ftp://93.184.215.14/hook",
    "https:///hook",
    "not a url",
]


@pytest.fixture(scope="module")
def strict_sandbox() -> Iterator[Sandbox]:
    """A sandbox with local webhooks refused (the production setting)."""
    with running(**{**SANDBOX_OPTIONS, "allow_local_webhooks": False}) as sb:
        yield sb


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_unsafe_webhook_urls_are_refused(url: str, strict_sandbox: Sandbox, tmp_path: Path) -> None:
    """Submitting with the URL is 400 invalid_webhook_url, and no job is created."""
    strict_sandbox.reset()
    jobs = jobs_of(strict_sandbox, strict_sandbox.api_key, tmp_path)
    with pytest.raises(mm.InvalidRequestError) as info:
        jobs.submit(PAIRS, webhook_url=url, webhook_secret="whsec")
    assert info.value.error_code == "invalid_webhook_url"
    assert jobs.list() == []


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://127.0.0.1:9/hook", True),  # the local-testing flag allows http to loopback
        ("https://10.1.2.3/hook", True),  # and private addresses over https
        ("http://10.1.2.3/hook", False),  # but http only to loopback
        ("http://93.184.215.14/hook", False),
        ("https://224.0.0.1/hook", False),  # never multicast
        ("https://0.0.0.0/hook", False),  # nor unspecified
    ],
)
def test_local_testing_flag_opens_only_local_addresses(
    url: str, accepted: bool, clean_sandbox: Sandbox
) -> None:
    """With allow_local_webhooks, local targets are accepted; plain http and the rest are not."""
    assert clean_sandbox.config.allow_local_webhooks
    clean_sandbox.hold_jobs()  # accepted jobs never finish, so no webhook is sent anywhere
    with client_for(clean_sandbox) as api:
        response = api.post(
            JOBS,
            files={"file": ("p.csv.gz", csv_gz([tuple(GOOD.values())]), "application/gzip")},
            data={"webhook_url": url},
        )
    assert response.status_code == (202 if accepted else 400), response.text
    if not accepted:
        assert response.json()["error_code"] == "invalid_webhook_url"


# -- uploads: a real server process, its memory watched -------------------------------------------


@dataclass
class Server:
    """``mm-pipeline sandbox serve`` running as a child process."""

    process: subprocess.Popen[str]
    port: int
    state_dir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def files(self) -> set[str]:
        """Every file in the server's state directory (relative names)."""
        return {
            str(p.relative_to(self.state_dir)) for p in self.state_dir.rglob("*") if p.is_file()
        }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A sandbox process with a 1 MB upload cap (20 MB decompressed) and a state directory."""
    state_dir = tmp_path_factory.mktemp("upload-guard")
    command = [
        "mm-pipeline", "sandbox", "serve", "--port", "0", "--quiet", "--api-key", SERVER_KEY,
        "--max-file-mb", str(CAP_MB), "--job-seconds", "0", "--state-dir", str(state_dir),
    ]  # fmt: skip
    bin_dir = Path(__file__).resolve().parents[2] / ".venv" / "bin"
    command[0] = str(bin_dir / command[0])
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "MarketMatch sandbox listening on http://..."
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line
        yield Server(process, int(found.group(1)), state_dir)
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def peak_growth(server: Server) -> Iterator[list[int]]:
    """Sample the server's RSS every few ms; yields a one-item list filled with the growth."""
    baseline = server.rss()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.rss())
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth = [0]
    try:
        yield growth
    finally:
        done.set()
        sampler.join()
        growth[0] = peak[0] - baseline


def offer_upload(server: Server, *, chunked: bool) -> tuple[int, bytes]:
    """Offer a 256 MiB file part over a raw socket; stop when the server answers.

    Returns the bytes sent before the answer, and the answer's first bytes.
    """
    boundary = "guard"
    head = "\r\n".join(
        [
            f"POST {JOBS}?api_key={SERVER_KEY} HTTP/1.1",
            "Host: 127.0.0.1",
            f"Content-Type: multipart/form-data; boundary={boundary}",
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {UPLOAD_BYTES + 200}",
            "",
            "",
        ]
    ).encode()
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv.gz"\r\n\r\n'
    ).encode() + b"\x1f\x8b"
    block = b"\0" * MIB
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        for data in [part, *([block] * (UPLOAD_BYTES // MIB))]:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered
            try:
                sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
            except OSError:  # it answered and closed while we were sending
                break
            sent += len(data)
        answer = _read_answer(sock)
    return sent, answer


def _read_answer(sock: socket.socket) -> bytes:
    """Read one HTTP answer: its head, then as much body as Content-Length announces."""
    answer = b""
    while True:
        data = sock.recv(65536)
        answer += data
        head, sep, body = answer.partition(b"\r\n\r\n")
        if not data:
            return answer
        if sep:
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is None or len(body) >= int(length.group(1)):
                return answer


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_upload_over_the_cap_is_refused_early_without_filling_memory(
    server: Server, chunked: bool
) -> None:
    """413 file_too_large arrives after cap + the drain allowance, not after 256 MiB; RSS flat."""
    before = server.files()
    with peak_growth(server) as growth:
        sent, answer = offer_upload(server, chunked=chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"file_too_large"' in answer
    # cap (1 MiB) + at most 64 MiB drained + socket buffers, with room for a loaded machine
    assert sent < 128 * MIB < UPLOAD_BYTES
    assert growth[0] < MEMORY_HEADROOM
    assert server.files() == before  # nothing of the refused upload stays on disk


def bomb(decompressed_mb: int) -> bytes:
    """A gzip CSV (header, then zeros) of ~decompressed_mb MB, compressed ~1000:1."""
    header = b"vin,price,miles,source,zip\n"
    return gzip.compress(header + b"0" * (decompressed_mb * MIB), compresslevel=9)


def many_members(member_mb: int, members: int) -> bytes:
    """A multi-member gzip: each member small, the whole far over the decompressed cap."""
    member = gzip.compress(b"0" * (member_mb * MIB), compresslevel=9)
    return gzip.compress(b"vin,price,miles,source,zip\n") + member * members


@pytest.mark.parametrize(
    ("make", "error_code"),
    [
        (lambda: bomb(32), "file_too_large"),  # 32 MB > the 20 MB decompressed cap
        (lambda: many_members(10, 50), "file_too_large"),  # 500 MB in 50 small members
        # A bomb inside a gzip: the CSV reader would inflate the inner layer in memory.
        (lambda: gzip.compress(many_members(10, 50)), "invalid_file_format"),
    ],
    ids=["bomb", "multi-member-bomb", "bomb-inside-a-gzip"],
)
def test_gzip_bombs_fail_their_job_cleanly(server: Server, make: Any, error_code: str) -> None:
    """The upload is accepted (small), the job ends FAILED with a clear code, memory stays flat."""
    upload = make()
    assert len(upload) < CAP_MB * MIB
    before = server.files()
    with (
        peak_growth(server) as growth,
        httpx.Client(base_url=server.base_url, params={"api_key": SERVER_KEY}) as api,
    ):
        response = api.post(JOBS, files={"file": ("b.csv.gz", upload, "application/gzip")})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        final = wait_until(
            lambda: api.get(f"{JOBS}/{job_id}").json(),
            lambda s: s["status"] != "PROCESSING",
        )
    assert (final["status"], final["error_code"]) == ("FAILED", error_code), final
    assert growth[0] < MEMORY_HEADROOM
    # Only the accepted upload and the job record stay; no decompressed or partial file.
    assert server.files() == before | {f"uploads/{job_id}.csv.gz", f"jobs/{job_id}.json"}


# -- malformed multipart --------------------------------------------------------------------------

_FILE_PART = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv.gz"\r\n\r\n'
    + gzip.compress(b"vin,price,miles,source,zip\n")
    + b"\r\n"
)
MALFORMED: dict[str, tuple[str, bytes]] = {
    "not-multipart": ("application/json", b'{"file": "x"}'),
    "no-boundary": ("multipart/form-data", _FILE_PART + b"--b--\r\n"),
    "other-boundary": ("multipart/form-data; boundary=zzz", _FILE_PART + b"--b--\r\n"),
    "no-closing-boundary": ("multipart/form-data; boundary=b", _FILE_PART),
    "part-without-name": (
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; filename="a.csv.gz"\r\n\r\nx\r\n--b--\r\n',
    ),
    "header-without-colon": (
        "multipart/form-data; boundary=b",
        b"--b\r\nthis is not a header\r\n\r\nx\r\n--b--\r\n",
    ),
    "header-of-a-megabyte": (
        "multipart/form-data; boundary=b",
        b"--b\r\nX-Filler: " + b"a" * MIB + b"\r\n\r\nx\r\n--b--\r\n",
    ),
    "only-the-closing-boundary": ("multipart/form-data; boundary=b", b"--b--\r\n"),
    "empty-body": ("multipart/form-data; boundary=b", b""),
    "binary-garbage": ("multipart/form-data; boundary=b", bytes(range(256)) * 64),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_multipart_is_refused_cleanly(name: str, api: httpx.Client) -> None:
    """Each malformed body gets 400 missing_file in the published error shape; no job appears."""
    content_type, body = MALFORMED[name]
    response = api.post(JOBS, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    error = response.json()
    assert (error["code"], error["error_code"]) == (400, "missing_file")
    assert error["message"]
    assert api.get(JOBS).json()["total"] == 0


def test_the_server_process_survived_every_attack(server: Server) -> None:
    """After the uploads and bombs, the same server process still answers."""
    with httpx.Client(base_url=server.base_url, params={"api_key": SERVER_KEY}) as api:
        assert api.get(JOBS).status_code == 200
    assert server.process.poll() is None
