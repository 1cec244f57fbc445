"""BatchClient against the sandbox over loopback: submit/adopt, list, wait, download, webhooks."""

from __future__ import annotations

import asyncio
import gzip
import inspect
import logging
from pathlib import Path

import httpx
import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._batch._files import sha256_file, write_batch_files
from mm_pipeline._batch._job import work_reference
from mm_pipeline._batch._results import read_result_file
from mm_pipeline._batch._session import BatchSession
from mm_pipeline._session import set_backoff_scale
from mm_pipeline.sandbox import Sandbox
from tests._support.batch import EXAMPLE_VEHICLES, JOBS, make_pairs
from tests.conftest import OTHER_KEY, TEAMMATE_KEY, WebhookReceiver, server_jobs


@pytest.fixture
def jobs(clean_sandbox: Sandbox, tmp_path: Path) -> mm.BatchClient:
    """A BatchClient on account A of a reset sandbox, polling fast, caching under tmp_path."""
    client = mm.MarketMatchClient(api_key=clean_sandbox.api_key, base_url=clean_sandbox.base_url)
    return client.batch.configure(
        cache_dir=tmp_path / "cache", poll_interval=0.02, max_poll_interval=0.2
    )


def test_submit_wait_download_end_to_end(jobs: mm.BatchClient, clean_sandbox: Sandbox) -> None:
    """A frame is submitted, completes, and downloads as a verified file with every row."""
    pairs = make_pairs(20)
    job = jobs.submit(pairs, client_reference="e2e")
    assert job.status == "PROCESSING"
    assert not job.adopted
    assert job.client_reference is not None
    assert job.client_reference.startswith("e2e:mm-")
    done = jobs.wait(job.job_id, timeout=30)
    assert done.status == "COMPLETED"
    assert (done.item_count, done.successful_count) == (pairs.height, len(EXAMPLE_VEHICLES))
    path = jobs.download(job.job_id)
    result = read_result_file(path)
    assert result.height == pairs.height
    assert result.filter(pl.col("error_code").is_null()).height == pairs.height
    assert clean_sandbox.job(job.job_id)["download_count"] == 1


def test_resubmitting_the_same_work_adopts_the_job(
    jobs: mm.BatchClient, clean_sandbox: Sandbox
) -> None:
    """The same content submitted again (while processing and once completed) adopts one job."""
    clean_sandbox.hold_jobs()
    pairs = make_pairs(5)
    first = jobs.submit(pairs)
    again = jobs.submit(pairs)
    assert (again.job_id, again.adopted, again.status) == (first.job_id, True, "PROCESSING")
    clean_sandbox.complete_job(first.job_id)
    third = jobs.submit(pairs)
    assert (third.job_id, third.status) == (first.job_id, "COMPLETED")
    assert len(server_jobs(clean_sandbox)) == 1


def test_teammate_key_on_same_account_adopts_too(
    jobs: mm.BatchClient, clean_sandbox: Sandbox
) -> None:
    """Another key of the same account running the same work finds the same job."""
    pairs = make_pairs(5)
    first = jobs.submit(pairs)
    teammate = mm.MarketMatchClient(api_key=TEAMMATE_KEY, base_url=clean_sandbox.base_url)
    assert teammate.batch.submit(pairs).job_id == first.job_id


def test_submit_a_file_path(jobs: mm.BatchClient, tmp_path: Path) -> None:
    """A .csv.gz path is submitted as is; its reference is derived from the file's hash."""
    (batch_file,) = write_batch_files(make_pairs(4), tmp_path / "upload")
    job = jobs.submit(batch_file.path, client_reference="nightly")
    assert job.client_reference == work_reference(sha256_file(batch_file.path), "nightly")


def test_frame_is_validated_before_upload(jobs: mm.BatchClient, clean_sandbox: Sandbox) -> None:
    """A frame with an invalid row raises InvalidInputError naming it; nothing is submitted."""
    bad = make_pairs(2).with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(-1).otherwise(pl.col("price")).alias("price")
    )
    with pytest.raises(mm.InvalidInputError, match="row 1: price must be a positive"):
        jobs.submit(bad)
    assert server_jobs(clean_sandbox) == []


def test_plain_csv_is_refused_before_upload(jobs: mm.BatchClient, tmp_path: Path) -> None:
    """A file that is not gzip gives a local error naming it, without a request."""
    plain = tmp_path / "pairs.csv"
    plain.write_text("vin,price,miles,source,zip\n")
    with pytest.raises(ValueError, match=r"pairs\.csv is not gzip-compressed"):
        jobs.submit(plain)


async def test_retried_submit_creates_one_job(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """A POST answered 503, then dropped, is retried with the same derived key: one job.

    Submitting the same file again (without the listing) replays the same key: the same job.
    """
    (batch_file,) = write_batch_files(make_pairs(3), tmp_path / "upload")
    client = mm.MarketMatchClient(api_key=clean_sandbox.api_key, base_url=clean_sandbox.base_url)
    clean_sandbox.inject("503", path_prefix=JOBS)
    clean_sandbox.inject("drop", path_prefix=JOBS)
    with set_backoff_scale(0.0):
        async with client.session() as session:
            ops = BatchSession(session=session)
            job = await ops.submit(batch_file.path, adopt=False)
            replay = await ops.submit(batch_file.path, adopt=False)
            assert session.stats.retries == 2
    assert replay.job_id == job.job_id
    assert [j["job_id"] for j in server_jobs(clean_sandbox)] == [job.job_id]


def test_list_pages_through_every_cursor(jobs: mm.BatchClient, clean_sandbox: Sandbox) -> None:
    """With a page size of 1, list still returns every job, newest first, and filters."""
    ids = []
    for offset in range(3):
        job = jobs.submit(make_pairs(2, offset=offset))
        jobs.wait(job.job_id, timeout=30)
        ids.append(job.job_id)
    listed = jobs.list(rows=1)
    assert [j.job_id for j in listed] == ids[::-1]
    assert {j.status for j in jobs.list(status="completed", rows=2)} == {"COMPLETED"}
    assert jobs.list(status="active") == []


def test_status_of_unknown_or_foreign_job(jobs: mm.BatchClient, clean_sandbox: Sandbox) -> None:
    """Another account's job, like an unknown one, is NotFoundError (job_not_found)."""
    other = mm.MarketMatchClient(api_key=OTHER_KEY, base_url=clean_sandbox.base_url).batch
    job = other.submit(make_pairs(2))
    with pytest.raises(mm.NotFoundError) as info:
        jobs.status(job.job_id)
    assert info.value.error_code == "job_not_found"
    assert clean_sandbox.api_key not in str(info.value)


def test_second_download_spends_no_slot(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A verified result is cached: downloading again (to another place) uses no slot."""
    job = jobs.submit(make_pairs(6))
    jobs.wait(job.job_id, timeout=30)
    first = jobs.download(job.job_id, tmp_path / "out" / "first.csv.gz")
    second = jobs.download(job.job_id, tmp_path / "out")
    assert first.read_bytes() == second.read_bytes()
    assert second.name == f"{job.job_id}.csv.gz"
    assert clean_sandbox.job(job.job_id)["download_count"] == 1


@pytest.mark.parametrize("fault", ["corrupt_download", "truncate_download"])
def test_bad_download_is_detected_and_retried(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, fault: str
) -> None:
    """A corrupted or cut-off body fails verification, warns that a slot went, and is retried."""
    job = jobs.submit(make_pairs(30))
    jobs.wait(job.job_id, timeout=30)
    clean_sandbox.inject(fault, path_prefix=f"{JOBS}/{job.job_id}/download")  # type: ignore[arg-type]
    with pytest.warns(mm.BatchDownloadWarning, match="a download slot was spent; slots left: 2"):
        path = jobs.download(job.job_id)
    assert read_result_file(path).height == 30 * len(EXAMPLE_VEHICLES)  # complete gzip + CSV
    assert clean_sandbox.job(job.job_id)["download_count"] == 2


def test_download_slots_exhausted(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Three bad downloads exhaust the slots: a clear error naming the job; no cache, no retry."""
    job = jobs.submit(make_pairs(4))
    jobs.wait(job.job_id, timeout=30)
    clean_sandbox.inject("corrupt_download", count=3, path_prefix=f"{JOBS}/{job.job_id}/download")
    with pytest.warns(mm.BatchDownloadWarning), pytest.raises(mm.ChecksumMismatchError) as info:
        jobs.download(job.job_id)
    assert info.value.job_id == job.job_id
    assert "no slot remains" in str(info.value)
    fresh = jobs.configure(cache_dir=tmp_path / "empty-cache")
    with pytest.raises(mm.DownloadError, match=f"batch job {job.job_id}: every download slot"):
        fresh.download(job.job_id)
    assert clean_sandbox.job(job.job_id)["download_count"] == 3


def test_download_before_completion(jobs: mm.BatchClient, clean_sandbox: Sandbox) -> None:
    """Downloading a job still processing is a ConflictError job_not_completed, no file cached."""
    clean_sandbox.hold_jobs()
    job = jobs.submit(make_pairs(2))
    with pytest.raises(mm.ConflictError) as info:
        jobs.download(job.job_id)
    assert info.value.error_code == "job_not_completed"
    assert not list((jobs.cache_dir or Path()).glob("*.csv.gz"))


def test_failed_job_raises_and_is_not_adopted(jobs: mm.BatchClient, clean_sandbox: Sandbox) -> None:
    """FAILED raises BatchJobFailed with the job's code; the same work then gets a new job."""
    clean_sandbox.hold_jobs()
    pairs = make_pairs(3)
    job = jobs.submit(pairs)
    clean_sandbox.fail_job(job.job_id, error_code="processing_failed", error_message="boom")
    with pytest.raises(mm.BatchJobFailed) as info:
        jobs.wait(job.job_id, timeout=30)
    assert (info.value.job_id, info.value.error_code, info.value.error_message) == (
        job.job_id,
        "processing_failed",
        "boom",
    )
    retry = jobs.submit(pairs)
    assert retry.job_id != job.job_id
    assert not retry.adopted
    again = jobs.submit(pairs)
    assert again.job_id == retry.job_id


def test_wait_times_out_with_a_clear_error(jobs: mm.BatchClient, clean_sandbox: Sandbox) -> None:
    """A job that outlasts the deadline raises BatchTimeoutError naming it (it keeps running)."""
    clean_sandbox.hold_jobs()
    job = jobs.submit(make_pairs(2))
    with pytest.raises(mm.BatchTimeoutError, match=f"batch job {job.job_id} is still PROCESSING"):
        jobs.wait(job.job_id, timeout=0.3)
    assert clean_sandbox.job(job.job_id)["status"] == "PROCESSING"


def test_active_job_of_another_client_times_out(
    jobs: mm.BatchClient, clean_sandbox: Sandbox
) -> None:
    """409 active_job_exists for someone else's job: wait up to the deadline, then name it."""
    clean_sandbox.hold_jobs()
    teammate = mm.MarketMatchClient(api_key=TEAMMATE_KEY, base_url=clean_sandbox.base_url)
    theirs = teammate.batch.submit(make_pairs(2, offset=50))
    impatient = jobs.configure(active_job_timeout=0.3)
    with pytest.raises(mm.BatchError, match=f"another batch job \\({theirs.job_id}\\) is active"):
        impatient.submit(make_pairs(2))
    assert len(server_jobs(clean_sandbox)) == 1


async def test_active_job_of_another_client_is_waited_for(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the other job finishes, the waiting submit goes through: two jobs, no error."""
    clean_sandbox.hold_jobs()
    teammate = mm.MarketMatchClient(api_key=TEAMMATE_KEY, base_url=clean_sandbox.base_url)
    theirs = await teammate.batch.asubmit(make_pairs(2, offset=50))
    caplog.set_level(logging.INFO, logger="mm_pipeline.batch")
    ours = asyncio.create_task(jobs.asubmit(make_pairs(2)))
    waiting = f"another batch job ({theirs.job_id}) is active"
    while waiting not in caplog.text:
        assert not ours.done(), ours
        await asyncio.sleep(0.01)
    clean_sandbox.hold_jobs(False)
    await asyncio.to_thread(clean_sandbox.complete_job, theirs.job_id)
    job = await asyncio.wait_for(ours, 30)
    assert job.job_id != theirs.job_id
    assert not job.adopted
    assert len(server_jobs(clean_sandbox)) == 2


async def test_409_for_our_own_active_job_adopts_it(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """When the submit meets 409 and the active job carries our reference, it is adopted."""
    clean_sandbox.hold_jobs()
    (batch_file,) = write_batch_files(make_pairs(3), tmp_path / "upload")
    first = await jobs.asubmit(batch_file.path)
    client = mm.MarketMatchClient(api_key=clean_sandbox.api_key, base_url=clean_sandbox.base_url)
    async with client.session() as session:
        ops = BatchSession(session=session, poll_interval=0.02)
        # skip the listing, use another key: the server answers 409 active_job_exists
        found = await ops.submit(batch_file.path, adopt=False, idempotency_key="other-key")
    assert (found.job_id, found.adopted) == (first.job_id, True)
    assert len(server_jobs(clean_sandbox)) == 1


def test_webhook_received_and_verified(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    """The completion webhook reaches a local receiver and verifies; tampering is caught."""
    secret = "whsec-batch-test"
    job = jobs.submit(make_pairs(3), webhook_url=webhook_receiver.url, webhook_secret=secret)
    jobs.wait(job.job_id, timeout=30)
    (delivery,) = webhook_receiver.wait_for(1)
    event = mm.webhooks.verify(delivery.body, delivery.headers, secret)
    assert (event.event, event.job_id, event.status) == ("job.completed", job.job_id, "COMPLETED")
    assert event.item_count == 3 * len(EXAMPLE_VEHICLES)
    assert event.delivery_id
    with pytest.raises(mm.WebhookVerificationError, match="signature does not match"):
        mm.webhooks.verify(delivery.body.replace(b"COMPLETED", b"FAILED"), delivery.headers, secret)
    with pytest.raises(mm.WebhookVerificationError, match="signature does not match"):
        mm.webhooks.verify(delivery.body, delivery.headers, "not-the-secret")
    with pytest.raises(mm.WebhookVerificationError, match="old"):
        mm.webhooks.verify(delivery.body, delivery.headers, secret, now=event.timestamp + 301)
    with pytest.raises(mm.WebhookVerificationError, match="in the future"):
        mm.webhooks.verify(delivery.body, delivery.headers, secret, now=event.timestamp - 301)
    unsigned = {k: v for k, v in delivery.headers.items() if k.lower() != "x-signature"}
    with pytest.raises(mm.WebhookVerificationError, match="missing X-Signature"):
        mm.webhooks.verify(delivery.body, unsigned, secret)


def test_failure_webhook_verified(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    """A job.failed webhook carries the job's error code and verifies."""
    clean_sandbox.hold_jobs()
    secret = "whsec-failure"
    job = jobs.submit(make_pairs(2), webhook_url=webhook_receiver.url, webhook_secret=secret)
    clean_sandbox.fail_job(job.job_id)
    (delivery,) = webhook_receiver.wait_for(1)
    event = mm.webhooks.verify(delivery.body, delivery.headers, secret)
    assert (event.event, event.error_code) == ("job.failed", "processing_failed")


def test_key_never_in_errors_or_logs(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Batch errors and DEBUG logs never show the API key."""
    caplog.set_level(logging.DEBUG)
    messages = []
    for action in (lambda: jobs.status("no-such-job"), lambda: jobs.download("no-such-job")):
        with pytest.raises(mm.MarketMatchError) as info:
            action()
        messages.append(f"{info.value!s} {info.value!r}")
    assert clean_sandbox.api_key not in " ".join(messages) + caplog.text
    assert "no-such-job" in messages[0]


def test_result_is_gzip_csv_with_published_columns(
    jobs: mm.BatchClient, clean_sandbox: Sandbox
) -> None:
    """The downloaded file is gzip CSV holding the input columns plus the ranking columns."""
    job = jobs.submit(make_pairs(2))
    jobs.wait(job.job_id, timeout=30)
    header = gzip.decompress(jobs.download(job.job_id).read_bytes()).decode().splitlines()[0]
    for column in ("vin", "price", "miles", "source", "zip", "vin_score", "vin_rank"):
        assert column in header.split(",")


def test_sync_api_inside_running_loop(jobs: mm.BatchClient, clean_sandbox: Sandbox) -> None:
    """The sync methods work when called from inside a running event loop (notebooks)."""

    async def inside() -> str:
        return jobs.submit(make_pairs(2)).job_id

    job_id = asyncio.run(inside())
    assert jobs.status(job_id).job_id == job_id


def test_http_client_is_not_needed_for_cached_result(
    jobs: mm.BatchClient, clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A cached result is served even when the server is unreachable (no request at all)."""
    job = jobs.submit(make_pairs(2))
    jobs.wait(job.job_id, timeout=30)
    cached = jobs.download(job.job_id)
    offline = mm.MarketMatchClient(api_key="mc_test_offline_key", base_url="http://127.0.0.1:9")
    served = offline.batch.configure(cache_dir=jobs.cache_dir).download(job.job_id)
    assert served == cached
    with httpx.Client() as http, pytest.raises(httpx.ConnectError):
        http.get("http://127.0.0.1:9/")


def test_blocking_twins_are_made_from_the_async_methods() -> None:
    """Each blocking method has its coroutine's parameters and docstring, under its own name."""
    twins = {
        "submit": "asubmit",
        "status": "astatus",
        "list": "alist",
        "wait": "await_job",
        "download": "adownload",
    }
    for name, coroutine in twins.items():
        blocking, source = getattr(mm.BatchClient, name), getattr(mm.BatchClient, coroutine)
        assert not inspect.iscoroutinefunction(blocking), name
        assert blocking.__name__ == name
        assert blocking.__doc__ == source.__doc__
        assert inspect.signature(blocking) == inspect.signature(source)


def test_await_underscore_is_a_deprecated_name_of_await_job(
    jobs: mm.BatchClient, clean_sandbox: Sandbox
) -> None:
    """``await_`` still waits for the job, and says to use ``await_job``."""
    job = jobs.submit(make_pairs(3, vehicles=1))
    with pytest.warns(DeprecationWarning, match="await_job"):
        done = asyncio.run(jobs.await_(job.job_id, timeout=60))
    assert (done.job_id, done.status) == (job.job_id, "COMPLETED")
