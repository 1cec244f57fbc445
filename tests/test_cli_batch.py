"""``mm-pipeline batch ...`` against the sandbox: submit/adopt, status, list, download, errors."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mm_pipeline._batch._files import write_batch_files
from mm_pipeline.cli import cli
from mm_pipeline.sandbox import Sandbox
from tests._support.batch import make_pairs
from tests.conftest import server_jobs


def _run(sb: Sandbox, *args: str, key: str | None = None) -> Result:
    env = {
        "MARKETCHECK_API_KEY": key if key is not None else sb.api_key,
        "MARKETCHECK_BASE_URL": sb.base_url,
    }
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    """A small valid .csv.gz upload."""
    (batch_file,) = write_batch_files(make_pairs(4), tmp_path / "upload")
    return batch_file.path


@pytest.mark.parametrize("command", ["submit", "status", "list", "download"])
def test_every_batch_command_has_help(command: str) -> None:
    """Each batch subcommand answers --help with its usage."""
    result = CliRunner().invoke(cli, ["batch", command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli batch {command}" in result.output
    assert "MARKETCHECK_API_KEY" in result.output


def test_submit_wait_then_adopt(clean_sandbox: Sandbox, upload: Path) -> None:
    """submit --wait prints the job and its final status; submitting again adopts it."""
    first = _run(clean_sandbox, "batch", "submit", str(upload), "--wait", "--reference", "cli")
    assert first.exit_code == 0, first.output
    match = re.search(r"submitted job (\S+) \(PROCESSING\)", first.output)
    assert match, first.output
    job_id = match.group(1)
    assert re.search(r"status\s+COMPLETED", first.output)
    assert re.search(r"client_reference\s+cli:mm-", first.output)
    again = _run(clean_sandbox, "batch", "submit", str(upload))
    assert again.exit_code == 0, again.output
    assert f"adopted existing job {job_id}" not in again.output  # another reference: new work
    same = _run(clean_sandbox, "batch", "submit", str(upload), "--reference", "cli")
    assert f"adopted existing job {job_id} (COMPLETED)" in same.output
    assert len(server_jobs(clean_sandbox)) == 2


def test_status_list_and_download(clean_sandbox: Sandbox, upload: Path, tmp_path: Path) -> None:
    """status and list show the job; download writes the verified file, twice for one slot."""
    submitted = _run(clean_sandbox, "batch", "submit", str(upload), "--wait")
    job_id = submitted.output.split()[2]
    status = _run(clean_sandbox, "batch", "status", job_id)
    assert status.exit_code == 0
    assert re.search(rf"job_id\s+{job_id}", status.output)
    assert re.search(r"remaining_downloads\s+3", status.output)
    listed = _run(clean_sandbox, "batch", "list", "--status", "completed")
    assert job_id in listed.output
    assert _run(clean_sandbox, "batch", "list", "--status", "active").output.strip() == "no jobs"
    out = tmp_path / "result.csv.gz"
    cache = tmp_path / "cache"
    for _ in range(2):
        done = _run(
            clean_sandbox, "batch", "download", job_id, "-o", str(out), "--cache-dir", str(cache)
        )
        assert done.exit_code == 0, done.output
        assert f"wrote {out}" in done.output
    assert gzip.decompress(out.read_bytes()).startswith(b"vin,price,miles,source,zip")
    assert clean_sandbox.job(job_id)["download_count"] == 1


def test_errors_are_one_line_without_key(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """Failures print one clear line (no traceback, no key) and exit non-zero."""
    unknown = _run(clean_sandbox, "batch", "status", "no-such-job")
    assert unknown.exit_code == 1
    assert "NotFoundError" in unknown.output
    assert "Traceback" not in unknown.output
    assert clean_sandbox.api_key not in unknown.output
    plain = tmp_path / "plain.csv"
    plain.write_text("vin,price,miles,source,zip\n")
    refused = _run(clean_sandbox, "batch", "submit", str(plain))
    assert refused.exit_code == 1
    assert "not gzip-compressed" in refused.output
    bad_key = _run(clean_sandbox, "batch", "list", key="mc_test_wrong_key_123456")
    assert bad_key.exit_code == 1
    assert "AuthenticationError" in bad_key.output
    assert "mc_test_wrong_key_123456" not in bad_key.output
    no_key = _run(clean_sandbox, "batch", "list", key="")
    assert no_key.exit_code == 1
    assert "no MarketMatch API key" in no_key.output


def test_console_script_flags_and_exit_code(clean_sandbox: Sandbox) -> None:
    """The real entry point takes --api-key/--base-url; a refused key: one line, exit 1."""
    secret = "mc_test_flag_key_not_configured"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mm_pipeline",
            "batch",
            "list",
            "--api-key",
            secret,
            "--base-url",
            clean_sandbox.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: AuthenticationError")
    assert len(done.stderr.strip().splitlines()) == 1
    assert secret not in done.stderr + done.stdout
