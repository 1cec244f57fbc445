"""The sandbox's server stack is the `sandbox` extra: the client and --help never load it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXTRA = ("starlette", "uvicorn", "python_multipart", "multipart", "zipcodes")
# A meta-path finder that makes the sandbox extra look uninstalled.
BLOCK_EXTRA = f"""
import sys
class _NoExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRA!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NoExtra())
"""


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_EXTRA + code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_client_and_help_load_none_of_the_sandbox_stack() -> None:
    """`import mm_pipeline` and `mm-pipeline --help` work without the extra and never import it."""
    out = _run(f"""
import mm_pipeline
from click.testing import CliRunner
from mm_pipeline.cli import cli
result = CliRunner().invoke(cli, ["--help"])
print(result.exit_code, "sandbox" in result.output)
print(sorted({{m.partition(".")[0] for m in sys.modules}} & set({EXTRA!r})))
""")
    assert out.splitlines() == ["0 True", "[]"]


def test_using_the_sandbox_without_the_extra_names_it() -> None:
    """`from mm_pipeline.sandbox import running` and `sandbox serve` say what to install."""
    out = _run("""
from click.testing import CliRunner
from mm_pipeline.cli import cli
try:
    from mm_pipeline.sandbox import running
except ImportError as exc:
    print(exc)
result = CliRunner().invoke(cli, ["sandbox", "serve", "--port", "0"])
print(result.exit_code, result.output.strip())
""")
    library, command = out.splitlines()
    assert library.startswith("the MarketMatch sandbox needs its server stack")
    assert library.endswith("pip install 'mm-pipeline[sandbox]'")
    assert command.startswith("1 Error: the MarketMatch sandbox needs its server stack")
    assert command.endswith("pip install 'mm-pipeline[sandbox]'")
