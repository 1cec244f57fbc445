"""The ``mm-pipeline`` command line.

Each command group lives in its own module and is registered here.
"""

from __future__ import annotations

import click

from mm_pipeline.cli._assign import assign
from mm_pipeline.cli._batch import batch
from mm_pipeline.cli._rank import rank
from mm_pipeline.cli._sandbox import sandbox

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mm-pipeline")
def cli() -> None:
    """Rank vehicles and dealers with MarketMatch, place vehicles, or run the local sandbox."""


cli.add_command(sandbox)
cli.add_command(batch)
cli.add_command(rank)
cli.add_command(assign)


def main() -> None:
    """Run the command line (the ``mm-pipeline`` console script)."""
    cli()
