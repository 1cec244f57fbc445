"""``mm-pipeline sandbox serve``: run the MarketMatch sandbox in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from mm_pipeline.sandbox import DEMO_API_KEY, FAULT_KINDS, SandboxConfig
from mm_pipeline.sandbox._faults import DEFAULT_RANDOM_KINDS, parse_fault_kind

__all__ = ["sandbox"]


@click.group(short_help="Run the local MarketMatch sandbox (an API emulator).")
def sandbox() -> None:
    """Run the local MarketMatch sandbox (an emulator of the published API)."""


@sandbox.command("serve", short_help="Serve the sandbox until Ctrl-C or SIGTERM.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port (0: a free one).")
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    metavar="KEY[=ACCOUNT]",
    help=f"Accepted key (repeatable); KEY=ACCOUNT shares an account. Default: {DEMO_API_KEY}.",
)
@click.option(
    "--no-access-key",
    "no_access_keys",
    multiple=True,
    metavar="KEY[=ACCOUNT]",
    help="A key that authenticates but has no MarketMatch access (403). Repeatable.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep jobs, uploads and results here across restarts (default: a temporary dir).",
)
@click.option("--rate-limit", default=20.0, show_default=True, help="Requests/s per account.")
@click.option("--quota", default=1_000_000, show_default=True, help="Calls per month per account.")
@click.option("--latency-ms", default=0.0, show_default=True, help="Latency added to responses.")
@click.option(
    "--fault-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Fraction of API requests answered with a random fault.",
)
@click.option(
    "--fault-kind",
    "fault_kinds",
    multiple=True,
    type=click.Choice(FAULT_KINDS),
    help="Kinds drawn by --fault-rate (repeatable; default: 429, 429_no_retry_after, 500, 502, "
    "503, drop).",
)
@click.option("--slow-ms", default=3000.0, show_default=True, help="Delay of a 'slow' fault.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random faults.")
@click.option("--max-file-mb", default=100.0, show_default=True, help="Batch upload size cap.")
@click.option(
    "--allow-local-webhooks",
    is_flag=True,
    help="Accept webhook URLs on loopback/private addresses (and http:// to loopback).",
)
@click.option(
    "--job-seconds",
    default=2.0,
    show_default=True,
    help="Minimum processing time of a batch job.",
)
@click.option("--hold-jobs", is_flag=True, help="Keep batch jobs PROCESSING until released.")
@click.option("--enable-control", is_flag=True, help="Serve the /_sandbox/* control API.")
@click.option("--quiet", is_flag=True, help="No access log.")
def serve_command(
    *,
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    no_access_keys: tuple[str, ...],
    state_dir: Path | None,
    rate_limit: float,
    quota: int,
    latency_ms: float,
    fault_rate: float,
    fault_kinds: tuple[str, ...],
    slow_ms: float,
    seed: int,
    max_file_mb: float,
    allow_local_webhooks: bool,
    job_seconds: float,
    hold_jobs: bool,
    enable_control: bool,
    quiet: bool,
) -> None:
    """Serve the sandbox; print its base URL and block until Ctrl-C / SIGTERM."""
    try:
        config = SandboxConfig(
            api_keys=api_keys,
            no_access_keys=no_access_keys,
            state_dir=state_dir,
            rate_limit=rate_limit,
            quota=quota,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            slow_ms=slow_ms,
            seed=seed,
            max_file_mb=max_file_mb,
            allow_local_webhooks=allow_local_webhooks,
            job_seconds=job_seconds,
            hold_jobs=hold_jobs,
            enable_control=enable_control,
            fault_kinds=tuple(map(parse_fault_kind, fault_kinds)) or DEFAULT_RANDOM_KINDS,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def announce(base_url: str) -> None:
        click.echo(f"MarketMatch sandbox listening on {base_url}")
        if not api_keys:
            click.echo(f"Demo API key: {DEMO_API_KEY}")
        click.echo("Press Ctrl-C to stop.")

    try:
        from mm_pipeline.sandbox import serve  # noqa: PLC0415 (the server stack: extra sandbox)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        serve(config, host=host, port=port, echo=announce, access_log=not quiet)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
