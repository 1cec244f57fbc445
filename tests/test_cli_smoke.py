"""The console entry points exist and answer --help."""

from click.testing import CliRunner

from mm_pipeline.cli import cli


def test_help_lists_the_command() -> None:
    """`mm-pipeline --help` prints usage and exits 0."""
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
