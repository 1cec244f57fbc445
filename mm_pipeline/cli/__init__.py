"""The ``mm-pipeline`` command line.

Each command group lives in its own module and is registered here.
"""

from __future__ import annotations

import logging
import sys

import click

from mm_pipeline.cli._assign import assign
from mm_pipeline.cli._batch import batch
from mm_pipeline.cli._rank import rank
from mm_pipeline.cli._sandbox import sandbox

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mm-pipeline")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log to stderr: -v the library's requests and retries, -vv also httpx's.",
)
def cli(verbose: int) -> None:
    """Rank vehicles and dealers with MarketMatch, place vehicles, or run the local sandbox."""
    if verbose:
        _log_to_stderr(("mm_pipeline", "httpx") if verbose > 1 else ("mm_pipeline",))


def _log_to_stderr(names: tuple[str, ...]) -> None:
    """Send the named loggers' DEBUG records to stderr (each already scrubs the API key)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)


cli.add_command(sandbox)
cli.add_command(batch)
cli.add_command(rank)
cli.add_command(assign)


def main() -> None:
    """Run the command line (the ``mm-pipeline`` console script)."""
    cli()
