"""The download cache: storage proved before a slot is spent; one download per job when shared.

A batch job's result may be downloaded three times, ever. These tests hold the library to
spending a slot only on a file it can keep: a cache folder that refuses files or has no room
stops the run with one :class:`~mm_pipeline.CacheStorageError` (at most the one slot a disk
filling mid-transfer could not avoid), and a rerun with a usable folder adopts the job and
finishes. Four real client processes sharing one cache folder download the result once.

The read-only folder is one even root cannot write (``unwritable_dir``); a full disk is
simulated (no filesystem of a chosen size can be mounted on a CI machine): the free space the
library reads, or the file it writes, reports ``ENOSPC``.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

import mm_pipeline as mm
from mm_pipeline import _download_cache
from mm_pipeline.cli import cli
from mm_pipeline.sandbox import Sandbox
from tests.conftest import wait_until
from tests.reliability._proxy import DOWNLOAD, StallingProxy, address
from tests.reliability._support import account_jobs, placement_pairs

REPO = Path(__file__).resolve().parents[2]
PAIRS = placement_pairs(12, 10)  # 143 pairs: a result file of a few KB
PROCESSES = 4
WAITING = "another download of its result is in progress"  # logged by a process that waits


def _client(sb: Sandbox) -> mm.MarketMatchClient:
    return mm.MarketMatchClient(sb.api_key, sb.base_url)


def _rank(sb: Sandbox, cache_dir: Path) -> mm.RankResult:
    return mm.rank_dealers(
        PAIRS, client=_client(sb), mode="batch", cache_dir=cache_dir, progress=False
    )


def _only_job(sb: Sandbox) -> dict[str, Any]:
    (job,) = account_jobs(sb, sb.api_key)
    return job


def _completed_job(sb: Sandbox) -> str:
    jobs = _client(sb).batch
    job = jobs.submit(PAIRS.select("vin", "price", "miles", "source", "zip"))
    return jobs.wait(job.job_id, progress=False).job_id


def test_an_unwritable_cache_spends_no_slot_and_a_rerun_finishes(
    clean_sandbox: Sandbox, unwritable_dir: Path, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """One clear error naming the folder, 0 slots spent; the rerun adopts the job, 1 download."""
    with pytest.raises(mm.CacheStorageError) as caught:
        _rank(clean_sandbox, unwritable_dir)
    error = caught.value
    assert error.folder == str(unwritable_dir)
    assert f"the cache folder {unwritable_dir} cannot hold the result" in str(error)
    assert "no download slot was spent" in str(error)
    assert "\n" not in str(error)
    job = _only_job(clean_sandbox)
    assert (job["status"], job["download_count"]) == ("COMPLETED", 0)
    rerun = _rank(clean_sandbox, tmp_path / "cache")
    assert rerun.stats.batch_job_ids == (job["job_id"],)
    assert rerun.ranked.height + rerun.failed.height == PAIRS.height
    assert _only_job(clean_sandbox)["download_count"] == 1
    figures["cache_storage"] = {"unwritable_cache_slots_spent": 0, "rerun_downloads": 1}


def test_the_cli_reports_an_unwritable_cache_in_one_line(
    clean_sandbox: Sandbox, unwritable_dir: Path, tmp_path: Path
) -> None:
    """``batch download --cache-dir <read-only>``: exit 1, one line, no slot spent."""
    job_id = _completed_job(clean_sandbox)
    env = {
        "MARKETCHECK_API_KEY": clean_sandbox.api_key,
        "MARKETCHECK_BASE_URL": clean_sandbox.base_url,
    }
    args = ["batch", "download", job_id, "-o", str(tmp_path / "out.csv.gz")]
    refused = CliRunner().invoke(cli, [*args, "--cache-dir", str(unwritable_dir)], env=env)
    assert refused.exit_code == 1
    (line,) = refused.output.strip().splitlines()
    assert line.startswith("Error: CacheStorageError: ")
    assert str(unwritable_dir) in line
    assert _only_job(clean_sandbox)["download_count"] == 0
    done = CliRunner().invoke(cli, [*args, "--cache-dir", str(tmp_path / "cache")], env=env)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out.csv.gz").stat().st_size > 0
    assert _only_job(clean_sandbox)["download_count"] == 1


def test_too_little_free_space_spends_no_slot(
    clean_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder reporting 4 KB free is refused before the download is asked for."""
    job_id = _completed_job(clean_sandbox)
    jobs = _client(clean_sandbox).batch.configure(cache_dir=tmp_path / "cache")
    real = shutil.disk_usage
    monkeypatch.setattr(
        "mm_pipeline._download_cache.shutil.disk_usage",
        lambda path: real(path)._replace(free=4096),
    )
    with pytest.raises(mm.CacheStorageError, match="ENOSPC") as caught:
        jobs.download(job_id)
    assert "no download slot was spent" in str(caught.value)
    assert _only_job(clean_sandbox)["download_count"] == 0
    assert not list((tmp_path / "cache").glob("*.part"))
    monkeypatch.undo()
    assert jobs.download(job_id).stat().st_size > 0
    assert _only_job(clean_sandbox)["download_count"] == 1


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle

    def write(self, block: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        self._handle.close()


def test_a_disk_filling_mid_download_stops_at_once(
    clean_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot being written is spent, no other: the error at once, then a rerun finishes."""
    job_id = _completed_job(clean_sandbox)
    jobs = _client(clean_sandbox).batch.configure(cache_dir=tmp_path / "cache")
    opener: Callable[..., Any] = builtins.open
    monkeypatch.setattr(
        _download_cache, "open", lambda *a, **k: _FullDisk(opener(*a, **k)), raising=False
    )
    with pytest.raises(mm.CacheStorageError, match="ENOSPC") as caught:
        jobs.download(job_id)
    assert "one download slot was spent on it" in str(caught.value)
    assert _only_job(clean_sandbox)["download_count"] == 1  # not retried on another slot
    assert not list((tmp_path / "cache").glob("*.part"))  # its own part removed
    monkeypatch.undo()
    assert jobs.download(job_id).stat().st_size > 0
    assert _only_job(clean_sandbox)["download_count"] == 2


def test_only_parts_of_processes_that_ended_are_removed(
    clean_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A ``.part`` of a live process is left alone; one of an ended process is removed."""
    job_id = _completed_job(clean_sandbox)
    cache = tmp_path / "cache"
    cache.mkdir()
    live = cache / f"{job_id}.csv.gz.{os.getppid()}.0a0a0a0a.part"  # pytest's parent runs
    dead = cache / f"{job_id}.csv.gz.{_ended_pid()}.0b0b0b0b.part"
    for part in (live, dead):
        part.write_bytes(b"in flight")
    jobs = _client(clean_sandbox).batch.configure(cache_dir=cache)
    assert jobs.download(job_id).stat().st_size > 0
    assert live.read_bytes() == b"in flight"
    assert not dead.exists()


def _ended_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def _start(sb_url: str, key: str, tmp_path: Path, number: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "tests.reliability._crash_client",
        sb_url,
        str(tmp_path / "pairs.parquet"),
        str(tmp_path / "cache"),
        "batch",
        "4",
        str(tmp_path / f"ranked-{number}.parquet"),
    ]
    log = (tmp_path / f"client-{number}.log").open("wb")
    env = {**os.environ, "MARKETCHECK_API_KEY": key}
    with log:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)


def _waiting(tmp_path: Path) -> int:
    logs = (tmp_path / f"client-{n}.log" for n in range(PROCESSES))
    return sum(WAITING in path.read_text(errors="replace") for path in logs)


def test_four_processes_sharing_a_cache_download_once(
    clean_sandbox: Sandbox, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Four processes rank the same frame on one cache: one download, four identical results.

    The first download is held half-way by a proxy (its process holds the job's lock) until
    each of the others is waiting for that lock -- or has downloaded on its own, or ended,
    which is the defect -- so the processes meet at the download whatever their pace.
    """
    sb = clean_sandbox
    PAIRS.write_parquet(tmp_path / "pairs.parquet")
    with StallingProxy(address(sb.base_url)) as proxy:
        proxy.stall(DOWNLOAD, body_bytes=1024)
        processes = [_start(proxy.base_url, sb.api_key, tmp_path, n) for n in range(PROCESSES)]
        try:

            def met() -> bool:
                jobs = account_jobs(sb, sb.api_key) if proxy.stalled.is_set() else []
                granted = sum(job.get("download_count", 0) for job in jobs)
                ended = any(p.poll() is not None for p in processes)
                return ended or granted + _waiting(tmp_path) >= PROCESSES

            wait_until(met, bool, timeout=120)
            proxy.release()
            codes = [p.wait(timeout=120) for p in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    logs = [(tmp_path / f"client-{n}.log").read_text(errors="replace") for n in range(PROCESSES)]
    assert codes == [0] * PROCESSES, "\n\n".join(log[-1500:] for log in logs)
    assert _waiting(tmp_path) == PROCESSES - 1  # the others waited for the first one's file
    job = _only_job(sb)
    assert job["download_count"] == 1
    first = pl.read_parquet(tmp_path / "ranked-0.parquet")
    assert first.height > 0
    for n in range(1, PROCESSES):
        assert_frame_equal(pl.read_parquet(tmp_path / f"ranked-{n}.parquet"), first)
    assert not list((tmp_path / "cache").glob("*.part"))
    figures["shared_cache"] = {"processes": PROCESSES, "downloads": 1, "waited": PROCESSES - 1}
