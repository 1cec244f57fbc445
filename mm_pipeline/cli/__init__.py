"""The ``mm-pipeline`` command line.

Each command group lives in its own module and is registered here.
"""

from __future__ import annotations

import click

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mm-pipeline")
def cli() -> None:
    """Rank vehicles and dealers with MarketMatch, or run the local sandbox."""


def main() -> None:
    """Run the command line (the ``mm-pipeline`` console script)."""
    cli()
