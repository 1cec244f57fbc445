"""What the command line says: flags in hints, aligned tables, cache or slot, columns checked."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import mm_pipeline as mm
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


def test_missing_key_hint_names_the_flag(sandbox: Sandbox) -> None:
    """No key: the CLI names --api-key and the variable; nothing reads 'REDACTED'."""
    result = _run(sandbox, "batch", "list", key="")
    assert result.exit_code == 1
    assert "pass --api-key KEY or set the MARKETCHECK_API_KEY environment variable" in (
        result.output
    )
    assert "REDACTED" not in result.output


def test_missing_key_message_in_python() -> None:
    """The library's own message keeps its placeholder (the redactor leaves it alone)."""
    from mm_pipeline._redact import redact  # noqa: PLC0415

    with pytest.raises(mm.ConfigurationError) as raised:
        mm.MarketMatchClient(api_key="  ")
    assert 'pass api_key="..." or set the MARKETCHECK_API_KEY' in str(raised.value)
    assert redact(str(raised.value), "mc_test_x") == str(raised.value)


def test_unauthorised_run_suggests_no_on_request_failed(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A 401 stops every run: neither the library nor the CLI suggests on_request_failed."""
    pairs = make_pairs(2)
    with pytest.raises(mm.AuthenticationError) as raised:
        mm.rank_dealers(
            pairs,
            client=mm.MarketMatchClient("mc_test_not_a_key_0000", clean_sandbox.base_url),
            mode="online",
            progress=False,
        )
    assert raised.value.hints == ()
    assert not any("on_request_failed" in note for note in raised.value.__notes__)
    source = tmp_path / "pairs.csv"
    pairs.drop("mc_location_id").write_csv(source)
    out = str(tmp_path / "out.csv")
    result = _run(clean_sandbox, "rank", "dealers", str(source), out, key="mc_test_not_a_key_0")
    assert result.exit_code == 1
    assert "AuthenticationError" in result.output
    assert "on-request-failed" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_failed_request_hint_names_the_flag(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """A request that fails after retries: the note suggests --on-request-failed fail."""
    source = tmp_path / "pairs.csv"
    make_pairs(2).drop("mc_location_id").write_csv(source)
    clean_sandbox.inject("500", count=10)
    out = str(tmp_path / "out.csv")
    result = _run(
        clean_sandbox, "rank", "dealers", str(source), out, "--max-retries", "0", "--no-progress"
    )
    assert result.exit_code == 1
    assert "ServerError: HTTP 500" in result.output
    assert "note: ranking stopped" in result.output
    assert "Pass --on-request-failed fail to rank the other groups" in result.output
    assert "on_request_failed=" not in result.output


def test_help_summaries_are_whole() -> None:
    """No command summary in a --help listing is cut short with '...'."""
    for group in ([], ["batch"], ["rank"], ["sandbox"]):
        result = CliRunner().invoke(cli, [*group, "--help"])
        assert result.exit_code == 0
        commands = result.output.split("Commands:", 1)[1]
        assert "..." not in commands, commands
        assert len(commands.strip().splitlines()) >= 1


def test_batch_list_has_a_header_for_every_column(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """The client_reference column has a header, and every row lines up under it."""
    (batch_file,) = write_batch_files(make_pairs(3), tmp_path / "upload")
    submitted = _run(clean_sandbox, "batch", "submit", str(batch_file.path), "--reference", "ref")
    assert submitted.exit_code == 0, submitted.output
    listed = _run(clean_sandbox, "batch", "list")
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.rstrip("\n").splitlines()
    assert header.split() == [
        "job_id",
        "status",
        "progress",
        "items",
        "created_at",
        "client_reference",
    ]
    assert row[header.index("client_reference") :].startswith("ref:mm-")
    assert row[header.index("status") :].startswith("PROCESSING")


def test_download_says_slot_or_cache(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """The first download spends a slot and says so; the second reads the cache and says so."""
    (batch_file,) = write_batch_files(make_pairs(3), tmp_path / "upload")
    submitted = _run(clean_sandbox, "batch", "submit", str(batch_file.path), "--wait")
    job_id = submitted.output.split()[2]
    args = ["batch", "download", job_id, "-o", str(tmp_path / "r.csv.gz")]
    args += ["--cache-dir", str(tmp_path / "cache")]
    first = _run(clean_sandbox, *args)
    assert first.exit_code == 0, first.output
    assert "downloaded and verified; spent 1 download slot" in first.output
    second = _run(clean_sandbox, *args)
    assert "verified copy from the cache; no download slot spent" in second.output
    assert clean_sandbox.job(job_id)["download_count"] == 1


def test_submit_checks_columns_before_upload(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """A .csv.gz without the zip column is refused with the missing column named; no job."""
    upload = tmp_path / "no-zip.csv.gz"
    upload.write_bytes(
        gzip.compress(b"vin,price,miles,source\nWP1BE2AY5PDA28064,20000,3000,mbofaugusta.com\n")
    )
    result = _run(clean_sandbox, "batch", "submit", str(upload))
    assert result.exit_code == 1
    assert re.search(r"lacks the batch column\(s\) zip: its header has vin, price", result.output)
    assert "Nothing was uploaded" in result.output
    assert server_jobs(clean_sandbox) == []
