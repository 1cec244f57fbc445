"""``mm-pipeline batch``: submit, inspect, list and download batch ranking jobs."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from mm_pipeline import BatchClient, BatchJob

__all__ = ["api_options", "batch", "fail_cleanly", "make_client"]

F = TypeVar("F", bound=Callable[..., Any])

_STATUS_FILTERS = ("all", "active", "completed", "failed")


#: The command line's patience with an API that does not answer: each request, retries
#: included, gets this many seconds (a refused connection gives up after about that long).
DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_RETRIES = 4


def api_options(command: F) -> F:
    """Add ``--api-key``, ``--base-url`` (from the environment), ``--timeout``, ``--max-retries``.

    The command receives them as ``api``, a dict of :class:`MarketMatchClient` keywords.
    """

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        **kwargs: Any,
    ) -> Any:
        api = {
            "api_key": api_key,
            "base_url": base_url,
            "timeout": timeout,
            "retry_deadline": timeout,
            "max_retries": max_retries,
        }
        return command(*args, api=api, **kwargs)

    options = [
        click.option(
            "--api-key",
            envvar="MARKETCHECK_API_KEY",
            show_envvar=True,
            default=None,
            show_default=False,
            help="MarketMatch API key (prefer the environment variable: flags show in `ps`).",
        ),
        click.option(
            "--base-url",
            envvar="MARKETCHECK_BASE_URL",
            show_envvar=True,
            default=None,
            help="API base URL (default https://api.marketcheck.com).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds one request may take, retries included; then the command gives up.",
        ),
        click.option(
            "--max-retries",
            type=click.IntRange(min=0),
            default=DEFAULT_MAX_RETRIES,
            show_default=True,
            help="Retries of a request that failed (timeouts, 429, 5xx, dropped connections).",
        ),
    ]
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def _render(exc: BaseException, secrets: list[str]) -> str:
    """Return the message of ``exc`` for the command line, with its hints named as flags.

    A hint given in a note rather than in the message (the note saying why a ranking run
    stopped) brings that note along, as a second line.
    """
    from mm_pipeline._redact import redact  # noqa: PLC0415

    hints = getattr(exc, "hints", ())
    text = str(exc)
    for hint in hints:
        text = hint.for_command_line(text)
    lines = [f"{type(exc).__name__}: {redact(text, *secrets)}"]
    notes = [redact(note, *secrets) for note in getattr(exc, "__notes__", [])]
    for hint in hints:
        if hint.flag not in text:
            lines += [
                "note: " + hint.for_command_line(note.removeprefix("mm_pipeline: "))
                for note in notes
                if hint.argument in note
            ]
    return "\n".join(lines).replace("\n", "\n  ")


def fail_cleanly(command: F) -> F:
    """Turn library and file errors into one clear line on stderr and exit code 1.

    The message is scrubbed of the API key (and any ``api_key=`` value) before printing, and
    the options it suggests are named as this command's flags.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mm_pipeline import MarketMatchError  # noqa: PLC0415 (keeps --help fast)
        from mm_pipeline._redact import registered_secrets  # noqa: PLC0415

        key = (kwargs.get("api") or {}).get("api_key") or ""
        try:
            return command(*args, **kwargs)
        except (MarketMatchError, ValueError, OSError) as exc:
            secrets = [s for s in (key, *registered_secrets()) if s]
            raise click.ClickException(_render(exc, secrets)) from None

    return wrapper  # type: ignore[return-value]


def make_client(api: dict[str, Any]) -> Any:
    """Build a ``MarketMatchClient`` from the flags of :func:`api_options`."""
    import mm_pipeline as mm  # noqa: PLC0415

    return mm.MarketMatchClient(**api)


def _batch_client(api: dict[str, Any], cache_dir: Path | None) -> BatchClient:
    jobs: BatchClient = make_client(api).batch
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


@click.group(short_help="Submit, inspect, list and download batch jobs.")
def batch() -> None:
    """Batch ranking jobs: upload a .csv.gz of vin,price,miles,source,zip pairs."""


@batch.command(short_help="Submit a .csv.gz of pairs as a batch job.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reference", default=None, help="Your client_reference (a prefix of the job's).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job to finish.")
@click.option("--wait-timeout", default=6 * 3600.0, show_default=True, help="Seconds --wait waits.")
@click.option("--webhook-url", default=None, help="HTTPS URL notified when the job ends.")
@click.option("--webhook-secret", default=None, help="Secret that signs the webhook.")
@api_options
@fail_cleanly
def submit(
    *,
    file: Path,
    reference: str | None,
    wait_: bool,
    wait_timeout: float,
    webhook_url: str | None,
    webhook_secret: str | None,
    api: dict[str, Any],
) -> None:
    """Submit FILE (.csv.gz), or adopt the job already submitted for the same content.

    The file's header is checked for the columns vin, price, miles, source and zip before
    anything is uploaded.
    """
    jobs = _batch_client(api, None)
    job = jobs.submit(
        file, client_reference=reference, webhook_url=webhook_url, webhook_secret=webhook_secret
    )
    verb = "adopted existing" if job.adopted else "submitted"
    click.echo(f"{verb} job {job.job_id} ({job.status})")
    if wait_:
        job = jobs.wait(job.job_id, timeout=wait_timeout)
        click.echo(_describe(job))


@batch.command(short_help="Show a job's status.")
@click.argument("job_id")
@api_options
@fail_cleanly
def status(job_id: str, api: dict[str, Any]) -> None:
    """Show the status of JOB_ID."""
    click.echo(_describe(_batch_client(api, None).status(job_id)))


@batch.command(name="list", short_help="List the account's jobs, newest first.")
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
def list_jobs(status_filter: str, api: dict[str, Any]) -> None:
    """List the account's jobs, newest first (every page)."""
    jobs = _batch_client(api, None).list(status=status_filter)  # type: ignore[arg-type]
    if not jobs:
        click.echo("no jobs")
        return
    rows = [
        (
            job.job_id,
            job.status,
            "" if job.progress_percent is None else f"{job.progress_percent}%",
            "" if job.item_count is None else f"{job.item_count:,}",
            str(job.created_at or ""),
            job.client_reference or "",
        )
        for job in jobs
    ]
    click.echo(_table(_LIST_HEADER, rows, right=_LIST_RIGHT))


_LIST_HEADER = ("job_id", "status", "progress", "items", "created_at", "client_reference")
_LIST_RIGHT = frozenset({"progress", "items"})


def _table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, right: frozenset[str]
) -> str:
    """Align ``rows`` under ``header``, two spaces apart, numbers to the right.

    Examples
    --------
    >>> print(_table(("name", "n"), [("a", "10"), ("bb", "2")], right=frozenset({"n"})))
    name   n
    a     10
    bb     2
    """
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for cells in (header, *rows):
        parts = [
            cell.rjust(width) if name in right else cell.ljust(width)
            for name, cell, width in zip(header, cells, widths, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


@batch.command(short_help="Download a job's verified result file.")
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
    api: dict[str, Any],
) -> None:
    """Download the result of JOB_ID, verified; a cached copy spends no download slot.

    The output says which it was: read from the cache, or downloaded (spending one of the
    job's download slots for each download request sent).
    """
    from mm_pipeline._batch import BatchSession  # noqa: PLC0415 (keeps --help fast)
    from mm_pipeline._sync import run_sync  # noqa: PLC0415

    client = make_client(api)

    async def fetch() -> tuple[Path, int]:
        async with client.session() as session:
            jobs = BatchSession(session=session, cache_dir=cache_dir)
            path = await jobs.download(job_id, output)
            return path, jobs.downloads

    path, spent = run_sync(fetch)
    if spent:
        slots = f"{spent} download slot{'s' if spent > 1 else ''}"
        click.echo(f"wrote {path} (downloaded and verified; spent {slots})")
    else:
        click.echo(f"wrote {path} (verified copy from the cache; no download slot spent)")
