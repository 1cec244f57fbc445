"""The API key appears nowhere: every error path run with a recognisable key, all output searched.

Each scenario runs one error path (or a successful run that writes files) against a sandbox
served over loopback, with the key ``mc_test_SECRET_9f8e7d``. Afterwards the key (and the
unknown key of the 401 path) is searched for in: the exception, its repr, every exception
chained to it, ``traceback.format_exception`` and its pickle; every log record at DEBUG (the
root logger, so httpx/httpcore/stamina/dagster records too, with their extras and tracebacks);
stdout and stderr at the file-descriptor level (progress bars, CLI output, anything printed);
warnings; result frames and their reprs; and every file written (cache, result files, Parquet,
DAGSTER_HOME), gzip members decompressed.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import pickle
import threading
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest
from click.testing import CliRunner
from dagster import EnvVar, instance_for_test, materialize

import mm_pipeline as mm
from dagster_defs.assets import ALL_ASSETS
from mm_pipeline._client import set_backoff_scale
from mm_pipeline._rank import Mode
from mm_pipeline._sync import run_sync
from mm_pipeline.cli import cli
from mm_pipeline.dagster import MarketMatchResource, PolarsParquetIOManager, SourceData
from mm_pipeline.sandbox import Sandbox, running
from tests.bad_input.corpus import GOOD, OTHER_DEALER, UNDECODABLE_VIN
from tests.conftest import WebhookReceiver, wait_until

KEY = "mc_test_SECRET_9f8e7d"
UNKNOWN_KEY = "mc_test_SECRET_unknown_4c3b2a"
NO_ACCESS_KEY = "mc_test_SECRET_noaccess_77e1"
SECRETS = (KEY, UNKNOWN_KEY, NO_ACCESS_KEY)
SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"
DEALERS = "/v2/marketmatch/dealers/rank"
VINS = "/v2/marketmatch/vins/rank"
ECHO = f"processing failed for key {KEY}; echoed {KEY}"
PAIRS = pl.DataFrame([GOOD, {**GOOD, **OTHER_DEALER}])


@pytest.fixture(scope="module")
def secret_sandbox() -> Iterator[Sandbox]:
    """A sandbox that knows KEY (and a key without access); small upload cap, fast jobs."""
    with running(
        api_keys=[KEY],
        no_access_keys=[NO_ACCESS_KEY],
        rate_limit=100_000,
        slow_ms=1_000,
        job_seconds=0.2,
        max_file_mb=0.01,
        allow_local_webhooks=True,
        webhook_retry_delays=(0.05, 0.05),
        webhook_timeout=1.0,
    ) as sb:
        yield sb


@dataclass
class Run:
    """What a scenario may use and leave behind."""

    sb: Sandbox
    folder: Path
    receiver: WebhookReceiver
    monkeypatch: pytest.MonkeyPatch
    artifacts: list[Any] = field(default_factory=list)
    """Objects to search besides the raised exception (results, texts, folders)."""

    def client(self, key: str = KEY, **options: Any) -> mm.MarketMatchClient:
        return mm.MarketMatchClient(key, self.sb.base_url, **options)

    def jobs(self, **options: Any) -> mm.BatchClient:
        return self.client().batch.configure(cache_dir=self.folder / "cache", **options)

    def rank(
        self, key: str = KEY, *, mode: Mode = "online", progress: bool = False, **options: Any
    ) -> mm.RankResult:
        """rank_dealers of PAIRS with ``key`` (``options`` configure the client)."""
        client = self.client(key, **options)
        result = mm.rank_dealers(
            PAIRS, client=client, mode=mode, progress=progress, cache_dir=self.folder / "cache"
        )
        self.artifacts.append(result)
        return result

    def cli(self, *args: str, key: str | None = KEY) -> None:
        env = {"MARKETCHECK_BASE_URL": self.sb.base_url, "MARKETCHECK_API_KEY": key}
        outcome = CliRunner().invoke(cli, list(args), env=env)
        self.artifacts.append(outcome.output)
        assert outcome.exit_code == 1, outcome.output  # each CLI scenario is an error path
        assert "Traceback" not in outcome.output


# -- scenarios: each raises the error of its path (or returns, leaving artifacts) ---------------


def unknown_key(run: Run) -> None:
    run.rank(UNKNOWN_KEY)


def no_access(run: Run) -> None:
    run.rank(NO_ACCESS_KEY)


def malformed_request(run: Run) -> None:
    async def post() -> Any:
        async with run.client().session() as session:
            return await session.post_json(DEALERS, b'{"vin": {"vin": "short"}}')

    run_sync(post)


def unprocessable_pairs(run: Run) -> None:
    pairs = PAIRS.with_columns(source=pl.lit("nowhere.example"))
    result = mm.rank_dealers(pairs, client=run.client(), progress=False, mode="online")
    run.artifacts.append(result)
    assert set(result.failed.get_column("error_code")) == {"dealer_not_found"}


def quota_exhausted(run: Run) -> None:
    with running(api_keys=[KEY], quota=0) as sb:
        mm.rank_dealers(PAIRS, client=mm.MarketMatchClient(KEY, sb.base_url), progress=False)


def server_errors(run: Run) -> None:
    run.sb.inject("503", count=10)
    run.rank(max_retries=2)


def dropped_connections(run: Run) -> None:
    run.sb.inject("drop", count=10)
    run.rank(max_retries=2)


def timeouts(run: Run) -> None:
    run.sb.inject("slow", count=10)
    run.rank(max_retries=1, timeout=0.2)


def connection_refused(run: Run) -> None:
    with running() as gone:
        base_url = gone.base_url
    client = mm.MarketMatchClient(KEY, base_url, max_retries=1)
    mm.rank_dealers(PAIRS, client=client, progress=False, mode="online")


def batch_job_failed(run: Run) -> None:
    """A FAILED job whose error message (and code) echo the key: BatchJobFailed is clean."""
    run.sb.hold_jobs()
    jobs = run.jobs(poll_interval=0.05)
    job = jobs.submit(PAIRS)
    run.sb.fail_job(job.job_id, error_code=KEY, error_message=ECHO)
    jobs.wait(job.job_id, timeout=10, progress=True)


def batch_job_failed_into_failed(run: Run) -> None:
    """The same FAILED job with ``on_job_failed="fail"``: its pairs' messages are clean."""
    run.sb.hold_jobs()

    def fail_when_submitted() -> None:
        job = wait_until(run.jobs().list, bool, timeout=30)[0]
        run.sb.fail_job(job.job_id, error_code="processing_failed", error_message=ECHO)

    failer = threading.Thread(target=fail_when_submitted)
    failer.start()
    result = mm.rank_dealers(
        PAIRS,
        client=run.client(),
        mode="batch",
        on_job_failed="fail",
        progress=False,
        cache_dir=run.folder / "cache",
    )
    failer.join(30)
    run.artifacts.append(result)
    assert result.failed["error_message"].str.contains("echoed REDACTED").all()
    result.failed.write_parquet(run.folder / "failed.parquet")


def key_echoed_in_failed_items(run: Run) -> None:
    """A ranking answer quoting the key in failed_items[].error_message (the echo_key fault)."""
    run.sb.inject("echo_key", count=5, path_prefix=VINS)
    pairs = pl.DataFrame([GOOD, {**GOOD, "vin": UNDECODABLE_VIN}])
    result = mm.rank_vins(pairs, client=run.client(), progress=False)
    run.artifacts.append(result)
    assert result.failed["error_code"].to_list() == ["vin_decode_failed"]
    assert result.failed["error_message"].to_list() == [
        "VIN could not be decoded (request key REDACTED)"
    ]
    result.failed.write_parquet(run.folder / "failed.parquet")


def batch_timeout(run: Run) -> None:
    run.sb.hold_jobs()
    jobs = run.jobs(poll_interval=0.05)
    jobs.wait(jobs.submit(PAIRS).job_id, timeout=0.3, progress=True)


def corrupt_downloads(run: Run) -> None:
    run.sb.inject("corrupt_download", count=3)
    jobs = run.jobs(poll_interval=0.05)
    job = jobs.wait(jobs.submit(PAIRS).job_id, timeout=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            jobs.download(job.job_id)
        finally:
            run.artifacts.extend(str(w.message) for w in caught)


def foreign_job(run: Run) -> None:
    run.jobs().status("770a9622-a4bd-63f6-c938-668877662222")


def refused_webhook_url(run: Run) -> None:
    run.jobs().submit(PAIRS, webhook_url="ftp://hooks.example/x", webhook_secret="s")


def upload_too_large(run: Run) -> None:
    path = run.folder / "big.csv.gz"
    # A valid header (checked before upload), then 25 KB stored uncompressed: over the 10 KB cap.
    body = b"vin,price,miles,source,zip\n" + bytes(range(256)) * 100
    path.write_bytes(gzip.compress(body, compresslevel=0))
    run.jobs().submit(path)


def failing_webhook_receiver(run: Run) -> None:
    run.receiver.statuses[:] = [500, 500, 500]
    jobs = run.jobs(poll_interval=0.05)
    job = jobs.submit(PAIRS, webhook_url=run.receiver.url, webhook_secret="whsec-x")
    jobs.wait(job.job_id, timeout=10)
    run.receiver.wait_for(3)
    for request in run.receiver.received:
        run.artifacts.extend([request.path, repr(dict(request.headers)), request.body])
    run.artifacts.append(orjson.dumps(run.sb.webhook_deliveries()))


def cli_errors(run: Run) -> None:
    source = run.folder / "pairs.csv"
    PAIRS.write_csv(source)
    run.cli("rank", "dealers", str(source), str(run.folder / "out.csv"), key=UNKNOWN_KEY)
    run.cli("rank", "dealers", str(source), str(run.folder / "out.csv"), "--api-key", UNKNOWN_KEY)
    run.cli("batch", "status", "no-such-job")
    run.cli("batch", "download", "no-such-job", "-o", str(run.folder / "x.csv.gz"))
    run.sb.inject("503", count=40)
    run.cli("batch", "list")


def progress_and_files(run: Run) -> None:
    """Successful online and batch runs with progress bars; results and cache written to disk."""
    online = run.rank(mode="online", progress=True)
    batch = run.rank(mode="batch", progress=True)
    assert online.ranked.height == batch.ranked.height == 2
    batch.ranked.write_parquet(run.folder / "ranked.parquet")
    source = run.folder / "pairs.csv"
    PAIRS.write_csv(source)
    outcome = CliRunner().invoke(
        cli,
        ["rank", "dealers", str(source), str(run.folder / "cli" / "out.parquet"), "--progress"],
        env={"MARKETCHECK_BASE_URL": run.sb.base_url, "MARKETCHECK_API_KEY": KEY},
    )
    assert outcome.exit_code == 0, outcome.output
    run.artifacts.append(outcome.output)


def dagster_runs(run: Run) -> None:
    """A run that materializes with the key, then one whose resource is refused (401)."""
    run.monkeypatch.setenv("MARKETCHECK_BASE_URL", run.sb.base_url)
    resources = {
        "marketmatch": MarketMatchResource(api_key=EnvVar("MARKETCHECK_API_KEY")),
        "source_data": SourceData(root=str(SAMPLE_DATA), max_rows=5),
        "io_manager": PolarsParquetIOManager(base_dir=str(run.folder / "data")),
    }
    home = run.folder / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        for key, succeeds in ((KEY, True), (UNKNOWN_KEY, False)):
            run.monkeypatch.setenv("MARKETCHECK_API_KEY", key)
            result = materialize(
                ALL_ASSETS,
                resources=resources,
                partition_key="2026-06-01",
                instance=instance,
                raise_on_error=False,
            )
            assert result.success is succeeds
            logs = instance.all_logs(result.run_id)
            run.artifacts.extend(repr(entry) for entry in logs)
            run.artifacts.append(repr(instance.get_run_by_id(result.run_id)))
        failures = [e for e in logs if e.dagster_event and e.dagster_event.is_step_failure]
        assert "AuthenticationError" in repr(failures)  # the failing path was taken
    run.artifacts.append(home)


SCENARIOS: dict[str, tuple[Callable[[Run], None], type[BaseException] | None]] = {
    "401": (unknown_key, mm.AuthenticationError),
    "403": (no_access, mm.PermissionDeniedError),
    "400": (malformed_request, mm.InvalidRequestError),
    "422": (unprocessable_pairs, None),
    "429-quota": (quota_exhausted, mm.QuotaExhaustedError),
    "5xx-after-retries": (server_errors, mm.ServerError),
    "dropped-connections": (dropped_connections, mm.TransportError),
    "timeouts": (timeouts, mm.TransportError),
    "connection-refused": (connection_refused, mm.TransportError),
    "batch-job-failed": (batch_job_failed, mm.BatchJobFailed),
    "batch-job-failed-into-failed": (batch_job_failed_into_failed, None),
    "key-echoed-in-failed-items": (key_echoed_in_failed_items, None),
    "batch-timeout": (batch_timeout, mm.BatchTimeoutError),
    "batch-corrupt-downloads": (corrupt_downloads, mm.ChecksumMismatchError),
    "batch-foreign-job": (foreign_job, mm.NotFoundError),
    "batch-refused-webhook-url": (refused_webhook_url, mm.InvalidRequestError),
    "batch-upload-too-large": (upload_too_large, mm.PayloadTooLargeError),
    "webhook-receiver-failing": (failing_webhook_receiver, None),
    "cli-errors": (cli_errors, None),
    "progress-and-files": (progress_and_files, None),
    "dagster": (dagster_runs, None),
}


# -- the search -----------------------------------------------------------------------------------


def exception_texts(exc: BaseException) -> Iterator[str | bytes]:
    """Every rendering of an exception and of everything chained to it."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(vars(current))
        yield "".join(traceback.format_exception(current))
        yield pickle.dumps(current)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def file_contents(folder: Path) -> Iterator[bytes]:
    """Every file under ``folder`` (and, for gzip files, its decompressed content)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield path.name.encode() + b"\n" + data
        if data[:2] == b"\x1f\x8b":
            with contextlib.suppress(OSError, EOFError, zlib.error):  # e.g. a fake upload
                yield gzip.decompress(data)
        if path.suffix == ".parquet":  # compressed pages: search the values and the metadata
            yield pl.read_parquet(path).write_csv().encode()
            yield repr(pl.read_parquet_metadata(path)).encode()


def artifact_texts(artifact: Any) -> Iterator[str | bytes]:
    if isinstance(artifact, Path):
        yield from file_contents(artifact)
    elif isinstance(artifact, mm.RankResult):
        yield repr(artifact)
        yield artifact._repr_html_()
        yield repr(artifact.stats.as_dict())
        for frame in (artifact.ranked, artifact.failed):
            yield frame.write_csv()
    elif isinstance(artifact, str | bytes):
        yield artifact
    else:
        yield repr(artifact)


class RecordAll(logging.Handler):
    """Formats every record reaching the root logger, with its extras and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(vars(record)))


@contextmanager
def root_at_debug() -> Iterator[RecordAll]:
    root = logging.getLogger()
    handler, level = RecordAll(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def leaks(texts: Iterator[str | bytes]) -> list[str]:
    """The secrets found in ``texts`` (one entry per text holding one)."""
    found: list[str] = []
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
        found.extend(secret for secret in SECRETS if secret.encode() in data)
    return found


@pytest.fixture(autouse=True)
def fast_backoff() -> Iterator[None]:
    """Retries do not wait."""
    with set_backoff_scale(0.0):
        yield


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_key_appears_nowhere(
    name: str,
    secret_sandbox: Sandbox,
    webhook_receiver: WebhookReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The scenario's error (and everything it logged, printed or wrote) never holds a key."""
    secret_sandbox.reset()
    monkeypatch.setenv("MM_PIPELINE_CACHE_DIR", str(tmp_path / "default-cache"))
    caplog.set_level(logging.DEBUG)
    scenario, expected = SCENARIOS[name]
    run = Run(secret_sandbox, tmp_path, webhook_receiver, monkeypatch)
    texts: list[str | bytes] = []
    with root_at_debug() as records:
        if expected is None:
            scenario(run)
        else:
            with pytest.raises(expected) as info:
                scenario(run)
            texts.extend(exception_texts(info.value))
    captured = capfd.readouterr()
    texts += [captured.out, captured.err, *records.texts, caplog.text]
    texts += [repr(vars(record)) for record in caplog.records]
    for artifact in [*run.artifacts, tmp_path]:
        texts.extend(artifact_texts(artifact))
    assert records.texts  # the path was logged (at DEBUG, at least the requests)
    assert not leaks(iter(texts))


def test_the_search_finds_a_planted_key(tmp_path: Path) -> None:
    """The search is not blind: a key in a file, a chained error or a log is found."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "x.csv.gz").write_bytes(gzip.compress(f"url?api_key={KEY}".encode()))
    inner = httpx.ConnectError(f"cannot reach http://h/?api_key={KEY}")
    chained = mm.TransportError("failed", kind="ConnectError")
    chained.__cause__ = inner
    assert set(leaks(exception_texts(chained))) == {KEY}
    assert leaks(file_contents(tmp_path)) == [KEY]
    with root_at_debug() as records:
        logging.getLogger("somewhere.else").debug("key %s", UNKNOWN_KEY)
    assert leaks(iter(records.texts)) == [UNKNOWN_KEY, UNKNOWN_KEY]
