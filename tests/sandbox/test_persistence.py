"""Jobs, files and download counts survive a restart with the same state directory."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mm_pipeline.sandbox import running
from tests.conftest import OTHER_KEY, SANDBOX_OPTIONS, client_for, csv_gz, wait_for_job

JOBS = "/v2/batch/marketmatch/rank/jobs"
ROWS = [
    ("WP1BE2AY5PDA28064", 20000, 3000, "mbofaugusta.com", "30907"),
    ("JTMDFREV7JJ214231", 25990, 34307, "carvana.com", "95765"),
]


def test_restart_keeps_jobs_files_and_download_counts(tmp_path: Path) -> None:
    """After a restart: the completed job, its file, checksum and count; the held job resumes."""
    options = {**SANDBOX_OPTIONS, "state_dir": tmp_path}
    with running(**options, hold_jobs=True) as sb:
        with client_for(sb) as client:
            done = client.post(
                JOBS,
                files={"file": ("a.csv.gz", csv_gz(ROWS))},
                headers={"Idempotency-Key": "nightly"},
                data={"client_reference": "done"},
            ).json()["job_id"]
            sb.complete_job(done)
            first = client.post(f"{JOBS}/{done}/download")
            assert first.headers["X-Download-Count"] == "1"
        with client_for(sb, OTHER_KEY) as other:
            pending = other.post(JOBS, files={"file": ("b.csv.gz", csv_gz(ROWS))}).json()["job_id"]
            assert other.get(f"{JOBS}/{pending}").json()["status"] == "PROCESSING"

    with running(**options) as sb:
        with client_for(sb) as client:
            status = client.get(f"{JOBS}/{done}").json()
            assert status["status"] == "COMPLETED"
            assert (status["download_count"], status["remaining_downloads"]) == (1, 2)
            assert status["client_reference"] == "done"
            second = client.post(f"{JOBS}/{done}/download")
            assert second.headers["X-Download-Count"] == "2"
            assert second.content == first.content
            assert hashlib.sha256(second.content).hexdigest() == second.headers["X-File-Checksum"]
            replay = client.post(
                JOBS,
                files={"file": ("a.csv.gz", csv_gz(ROWS))},
                headers={"Idempotency-Key": "nightly"},
            )
            assert replay.json()["job_id"] == done
        with client_for(sb, OTHER_KEY) as other:
            assert wait_for_job(other, pending)["status"] == "COMPLETED"
            assert [j["job_id"] for j in other.get(JOBS).json()["jobs"]] == [pending]


def test_without_state_dir_the_temporary_state_is_removed() -> None:
    """A sandbox without state_dir keeps its files in a temporary directory removed on stop."""
    with running(**SANDBOX_OPTIONS) as sb:
        root: Path = sb._state.root
        with client_for(sb) as client:
            job_id = client.post(JOBS, files={"file": ("a.csv.gz", csv_gz(ROWS))}).json()["job_id"]
            wait_for_job(client, job_id)
        assert any(root.rglob("*.csv.gz"))
    assert not root.exists()


def test_unreadable_job_record_is_skipped(tmp_path: Path) -> None:
    """A corrupt job record does not stop the sandbox from starting with the others."""
    options = {**SANDBOX_OPTIONS, "state_dir": tmp_path}
    with running(**options) as sb, client_for(sb) as client:
        job_id = client.post(JOBS, files={"file": ("a.csv.gz", csv_gz(ROWS))}).json()["job_id"]
        wait_for_job(client, job_id)
    (tmp_path / "jobs" / "broken.json").write_text("{not json")
    with running(**options) as sb, client_for(sb) as client:
        assert client.get(JOBS).json()["total"] == 1
