"""``mm-pipeline batch``: submit, inspect, list and download batch ranking jobs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from mm_pipeline import BatchClient, BatchJob

__all__ = ["api_options", "batch", "fail_cleanly", "make_client"]

F = TypeVar("F", bound=Callable[..., Any])

_STATUS_FILTERS = ("all", "active", "completed", "failed")


def api_options(command: F) -> F:
    """Add ``--api-key`` and ``--base-url`` (read from the environment by default)."""
    command = click.option(
        "--base-url",
        envvar="MARKETCHECK_BASE_URL",
        show_envvar=True,
        default=None,
        help="API base URL (default https://api.marketcheck.com).",
    )(command)
    return click.option(
        "--api-key",
        envvar="MARKETCHECK_API_KEY",
        show_envvar=True,
        default=None,
        show_default=False,
        help="MarketMatch API key (prefer the environment variable: flags show in `ps`).",
    )(command)


def fail_cleanly(command: F) -> F:
    """Turn library and file errors into one clear line on stderr and exit code 1.

    The message is scrubbed of the API key (and any ``api_key=`` value) before printing.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mm_pipeline import MarketMatchError  # noqa: PLC0415 (keeps --help fast)
        from mm_pipeline._redact import redact, registered_secrets  # noqa: PLC0415

        key = kwargs.get("api_key") or ""
        try:
            return command(*args, **kwargs)
        except (MarketMatchError, ValueError, OSError) as exc:
            secrets = [s for s in (key, *registered_secrets()) if s]
            text = redact(str(exc), *secrets).replace("\n", "\n  ")
            raise click.ClickException(f"{type(exc).__name__}: {text}") from None

    return wrapper  # type: ignore[return-value]


def make_client(api_key: str | None, base_url: str | None) -> Any:
    """Build a ``MarketMatchClient`` from the flags (or the environment)."""
    import mm_pipeline as mm  # noqa: PLC0415

    return mm.MarketMatchClient(api_key=api_key, base_url=base_url)


def _batch_client(api_key: str | None, base_url: str | None, cache_dir: Path | None) -> BatchClient:
    client = make_client(api_key, base_url)
    jobs: BatchClient = client.batch
    return jobs.configure(cache_dir=cache_dir) if cache_dir is not None else jobs


def _describe(job: BatchJob) -> str:
    fields = {
        "job_id": job.job_id,
        "status": job.status,
        "progress_percent": job.progress_percent,
        "item_count": job.item_count,
        "successful_count": job.successful_count,
        "failed_count": job.failed_count,
        "client_reference": job.client_reference,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "remaining_downloads": job.remaining_downloads,
        "error_code": job.error_code,
        "error_message": job.error_message,
    }
    width = max(len(name) for name in fields)
    return "\n".join(
        f"{name:<{width}}  {value}" for name, value in fields.items() if value is not None
    )


_cache_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where verified result files are cached (default: the user cache directory).",
)


@click.group()
def batch() -> None:
    """Batch ranking jobs: upload a .csv.gz of vin,price,miles,source,zip pairs."""


@batch.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reference", default=None, help="Your client_reference (a prefix of the job's).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job to finish.")
@click.option("--timeout", default=6 * 3600.0, show_default=True, help="Seconds --wait waits.")
@click.option("--webhook-url", default=None, help="HTTPS URL notified when the job ends.")
@click.option("--webhook-secret", default=None, help="Secret that signs the webhook.")
@api_options
@fail_cleanly
def submit(
    *,
    file: Path,
    reference: str | None,
    wait_: bool,
    timeout: float,
    webhook_url: str | None,
    webhook_secret: str | None,
    api_key: str | None,
    base_url: str | None,
) -> None:
    """Submit FILE (.csv.gz), or adopt the job already submitted for the same content."""
    jobs = _batch_client(api_key, base_url, None)
    job = jobs.submit(
        file, client_reference=reference, webhook_url=webhook_url, webhook_secret=webhook_secret
    )
    verb = "adopted existing" if job.adopted else "submitted"
    click.echo(f"{verb} job {job.job_id} ({job.status})")
    if wait_:
        job = jobs.wait(job.job_id, timeout=timeout)
        click.echo(_describe(job))


@batch.command()
@click.argument("job_id")
@api_options
@fail_cleanly
def status(job_id: str, api_key: str | None, base_url: str | None) -> None:
    """Show the status of JOB_ID."""
    click.echo(_describe(_batch_client(api_key, base_url, None).status(job_id)))


@batch.command(name="list")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(_STATUS_FILTERS),
    default="all",
    show_default=True,
    help="Which jobs to list.",
)
@api_options
@fail_cleanly
def list_jobs(status_filter: str, api_key: str | None, base_url: str | None) -> None:
    """List the account's jobs, newest first (every page)."""
    jobs = _batch_client(api_key, base_url, None).list(status=status_filter)  # type: ignore[arg-type]
    if not jobs:
        click.echo("no jobs")
        return
    click.echo(f"{'job_id':<36}  {'status':<10}  {'progress':>8}  {'items':>9}  created_at")
    for job in jobs:
        progress = "" if job.progress_percent is None else f"{job.progress_percent}%"
        items = "" if job.item_count is None else f"{job.item_count:,}"
        click.echo(
            f"{job.job_id:<36}  {job.status:<10}  {progress:>8}  {items:>9}  "
            f"{job.created_at or ''}  {job.client_reference or ''}".rstrip()
        )


@batch.command()
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="File (or directory) to write the verified result .csv.gz to.",
)
@_cache_option
@api_options
@fail_cleanly
def download(
    *,
    job_id: str,
    output: Path,
    cache_dir: Path | None,
    api_key: str | None,
    base_url: str | None,
) -> None:
    """Download the result of JOB_ID, verified; a cached copy spends no download slot."""
    path = _batch_client(api_key, base_url, cache_dir).download(job_id, output)
    click.echo(f"wrote {path}")
