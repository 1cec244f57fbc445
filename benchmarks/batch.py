"""Scenario 3: the batch route for a large frame (client side and sandbox side).

Client side, each step in a fresh worker process (peak RSS measured from the worker's RSS after
its imports, so it includes the frame the step holds):

- write: ours ``write_batch_files`` (polars CSV + zlib level 1, streamed, hashed); baseline
  pandas ``to_csv(..., compression="gzip")``; bound pyarrow alone (``pyarrow.csv.write_csv`` +
  gzip level 1 of the whole buffer);
- parse: ours ``read_result_file`` (typed frame, streamed: gunzip in a worker thread, blocks
  of about 2 MB of whole records parsed and typed one at a time); baseline ``pandas.read_csv``;
  bound ``pyarrow.csv.read_csv`` with the column types (the whole file at once).

Sandbox side: the written file is uploaded to a sandbox process (``--job-seconds 0``) and the
job is polled every 50 ms from submission until COMPLETED; its bound is polars alone reading
the upload and writing the result file (the I/O any job must do). Last, the whole route:
``rank_dealers(frame, mode="batch")`` against the same sandbox.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from benchmarks._data import BATCH_DEALERS, KEY_COLUMNS, canonical, pairs
from benchmarks._measure import measured, rss_mb, run_worker
from benchmarks._report import Row
from benchmarks._sandbox import SandboxProcess, sandbox_process

__all__ = ["prepare", "run", "task_client"]

SEED = 3
WRITE_SECONDS = 2.0
PARSE_SECONDS = 2.0
MEMORY_FACTOR = 3.0
JOB_SECONDS = 20.0
_JOBS = "/v2/batch/marketmatch/rank/jobs"
_POLL = 0.05
_JOB_TIMEOUT = 300.0


def prepare(directory: Path, rows: int) -> Path:
    """Write *rows* batch-shaped pairs (10-150 dealers per vehicle) to ``pairs.parquet``."""
    directory.mkdir(parents=True, exist_ok=True)
    vehicles = rows // ((BATCH_DEALERS[0] + BATCH_DEALERS[1]) // 2) + 1
    frame = pairs(vehicles, dealers=BATCH_DEALERS, seed=SEED)
    while frame.height < rows:  # pragma: no cover - the estimate above is generous
        vehicles *= 2
        frame = pairs(vehicles, dealers=BATCH_DEALERS, seed=SEED)
    frame.head(rows).write_parquet(directory / "pairs.parquet")
    return directory


# -- worker side ---------------------------------------------------------------------------


def _write(which: str, directory: Path) -> dict[str, Any]:
    out = directory / f"{which}-upload.csv.gz"
    if which == "ours":
        from mm_pipeline._batch._files import write_batch_files  # noqa: PLC0415

        frame = pl.read_parquet(directory / "pairs.parquet")
        with measured() as m:
            (written,) = write_batch_files(frame, directory / "ours-files")
        written.path.replace(out)
        size = frame.estimated_size()
    elif which == "baseline":
        import pandas as pd  # noqa: PLC0415

        table = pd.read_parquet(directory / "pairs.parquet")
        with measured() as m:
            table.to_csv(out, index=False, compression="gzip")
        size = int(table.memory_usage(deep=True).sum())
    else:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.csv as pa_csv  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        arrow = pq.read_table(directory / "pairs.parquet")
        with measured() as m:
            sink = pa.BufferOutputStream()
            pa_csv.write_csv(arrow, sink)
            packed = pa.Codec("gzip", compression_level=1).compress(sink.getvalue())
            out.write_bytes(packed.to_pybytes())
        size = arrow.nbytes
    return {"m": m, "input_mb": size / 2**20, "file_mb": out.stat().st_size / 2**20}


def _parse(which: str, directory: Path) -> dict[str, Any]:
    path = directory / "result.csv.gz"
    if which == "ours":
        from mm_pipeline._batch._results import read_result_file  # noqa: PLC0415

        with measured() as m:
            frame = read_result_file(path)
        parsed = canonical(frame)
        size = frame.estimated_size()
    elif which == "baseline":
        import pandas as pd  # noqa: PLC0415

        with measured() as m:
            table = pd.read_csv(path, dtype={"zip": str, "mc_location_id": str})
        parsed = canonical(pl.from_pandas(table))
        size = int(table.memory_usage(deep=True).sum())
    else:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.csv as pa_csv  # noqa: PLC0415

        types = {"zip": pa.string(), "mc_location_id": pa.string(), "price": pa.int64()}
        with measured() as m:
            arrow = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
        parsed = canonical(pl.DataFrame(pl.from_arrow(arrow)))
        size = arrow.nbytes
    parsed.write_parquet(directory / f"{which}-parsed.parquet")
    return {"m": m, "rows": parsed.height, "frame_mb": size / 2**20}


def _route(directory: Path, base_url: str, api_key: str) -> dict[str, Any]:
    import mm_pipeline as mm  # noqa: PLC0415

    frame = pl.read_parquet(directory / "pairs.parquet")
    client = mm.MarketMatchClient(api_key, base_url)
    with measured() as m:
        result = mm.rank_dealers(
            frame, client=client, mode="batch", progress=False, cache_dir=directory / "cache"
        )
    return {"m": m, "ranked": result.ranked.height, "failed": result.failed.height}


def task_client(args: dict[str, Any]) -> dict[str, Any]:
    """Worker: one client-side batch step (``write``, ``parse`` or ``route``) for ``which``."""
    directory, which, step = Path(args["data"]), args["which"], args["step"]
    imported = rss_mb()
    if step == "write":
        out = _write(which, directory)
    elif step == "parse":
        out = _parse(which, directory)
    else:
        out = _route(directory, args["base_url"], args["api_key"])
    m = out.pop("m")
    return {
        **out,
        "seconds": m.seconds,
        "peak_added_mb": m.peak_added_mb,
        "peak_over_imports_mb": m.peak_mb - imported,
    }


# -- driver side ---------------------------------------------------------------------------


def _run_job(sandbox: SandboxProcess, upload: Path, result: Path) -> float:
    """Submit *upload*, poll until it completes; save the result; return submit->done seconds."""
    params = {"api_key": sandbox.api_key}
    with httpx.Client(base_url=sandbox.base_url, params=params, timeout=120.0) as http:
        with upload.open("rb") as handle:
            response = http.post(
                _JOBS, files={"file": ("pairs.csv.gz", handle, "application/gzip")}
            )
        started = time.perf_counter()
        if response.status_code != 202:
            raise RuntimeError(f"job submission answered {response.status_code}: {response.text}")
        job_id = response.json()["job_id"]
        while True:
            status = http.get(f"{_JOBS}/{job_id}").json()
            if status["status"] != "PROCESSING":
                break
            if time.perf_counter() - started > _JOB_TIMEOUT:
                raise RuntimeError(f"batch job {job_id} still PROCESSING after {_JOB_TIMEOUT} s")
            time.sleep(_POLL)  # polling the job, bounded by the timeout above
        seconds = time.perf_counter() - started
        if status["status"] != "COMPLETED":
            raise RuntimeError(f"batch job {job_id} ended {status}")
        result.write_bytes(http.post(f"{_JOBS}/{job_id}/download").content)
    return seconds


def _job_bound(upload: Path, result: Path) -> float:
    """Polars alone: read the upload and write a result file of the same rows (gzip level 1)."""
    answer = pl.read_csv(result, infer_schema=False)
    with measured() as m:
        pl.read_csv(upload, infer_schema=False)
        answer.write_csv(result.with_name("bound.csv.gz"), compression="gzip", compression_level=1)
    return m.seconds


def _same(directory: Path, kind: str, names: tuple[str, ...]) -> bool:
    frames = [pl.read_parquet(directory / f"{name}-{kind}.parquet") for name in names]
    return all(frames[0].equals(other) for other in frames[1:])


def _uploads_equal(directory: Path) -> bool:
    frames = [
        pl.read_csv(directory / f"{which}-upload.csv.gz", schema_overrides={"zip": pl.String})
        .select(KEY_COLUMNS)
        .cast({"price": pl.Int64, "miles": pl.Int64})
        for which in ("ours", "baseline", "bound")
    ]
    return all(frames[0].equals(other) for other in frames[1:])


def run(directory: Path, *, progress: Any = print) -> tuple[list[Row], list[str]]:
    """Run scenario 3 on the prepared *directory*."""
    n = pl.scan_parquet(directory / "pairs.parquet").select(pl.len()).collect().item()
    name = f"3 batch ({n:,} pairs)"
    progress(f"  batch: writing {n:,} pairs ...")
    write = {
        w: run_worker("batch_client", {"data": str(directory), "which": w, "step": "write"})
        for w in ("ours", "baseline", "bound")
    }
    progress("  batch: sandbox job ...")
    with sandbox_process(rate_limit=1_000_000, job_seconds=0.0) as sandbox:
        job_seconds = _run_job(
            sandbox, directory / "ours-upload.csv.gz", directory / "result.csv.gz"
        )
        job_bound = _job_bound(directory / "ours-upload.csv.gz", directory / "result.csv.gz")
        progress("  batch: parsing the result ...")
        parse = {
            w: run_worker("batch_client", {"data": str(directory), "which": w, "step": "parse"})
            for w in ("ours", "baseline", "bound")
        }
        progress("  batch: rank_dealers(mode='batch') end to end ...")
        sandbox.reset()
        route = run_worker(
            "batch_client",
            {
                "data": str(directory),
                "which": "ours",
                "step": "route",
                "base_url": sandbox.base_url,
                "api_key": sandbox.api_key,
            },
        )
    input_mb = write["ours"]["input_mb"]
    peak = max(write["ours"]["peak_over_imports_mb"], parse["ours"]["peak_over_imports_mb"])
    base_peak = max(
        write["baseline"]["peak_over_imports_mb"], parse["baseline"]["peak_over_imports_mb"]
    )
    bound_peak = max(write["bound"]["peak_over_imports_mb"], parse["bound"]["peak_over_imports_mb"])
    parsed_same = _same(directory, "parsed", ("ours", "baseline", "bound"))
    uploads_same = _uploads_equal(directory)
    rows = [
        Row(
            scenario=name,
            figure="write .csv.gz",
            unit="s",
            ours=write["ours"]["seconds"],
            baseline=write["baseline"]["seconds"],
            bound=write["bound"]["seconds"],
            target=f"≤ {WRITE_SECONDS:g} s",
            met=write["ours"]["seconds"] <= WRITE_SECONDS and uploads_same,
        ),
        Row(
            scenario=name,
            figure="parse result into typed frame",
            unit="s",
            ours=parse["ours"]["seconds"],
            baseline=parse["baseline"]["seconds"],
            bound=parse["bound"]["seconds"],
            target=f"≤ {PARSE_SECONDS:g} s",
            met=parse["ours"]["seconds"] <= PARSE_SECONDS and parsed_same,
        ),
        Row(
            scenario=name,
            figure="client peak RSS ÷ input frame",
            unit="x",
            ours=peak / input_mb,
            baseline=base_peak / input_mb,
            bound=bound_peak / input_mb,
            target=f"≤ {MEMORY_FACTOR:g}",
            met=peak <= MEMORY_FACTOR * input_mb,
        ),
        Row(
            scenario=name,
            figure="sandbox ranks the job",
            unit="s",
            ours=job_seconds,
            bound=job_bound,
            target=f"≤ {JOB_SECONDS:g} s",
            met=job_seconds <= JOB_SECONDS,
        ),
        Row(
            scenario=name,
            figure="rank_dealers(mode='batch') end to end",
            unit="s",
            ours=route["seconds"],
            bound=write["ours"]["seconds"] + job_seconds + parse["ours"]["seconds"],
            target="reported (bound: write + job + parse)",
            met=None if route["failed"] == 0 and route["ranked"] == n else False,
        ),
    ]
    notes = [
        f"Scenario 3: the input frame of {n:,} pairs takes {input_mb:.0f} MB in memory "
        f"(upload {write['ours']['file_mb']:.1f} MB gzip); client peak RSS is the worker's peak "
        f"above its RSS after imports: write {write['ours']['peak_over_imports_mb']:.0f} MB, "
        f"parse {parse['ours']['peak_over_imports_mb']:.0f} MB; the whole route peaked at "
        f"{route['peak_over_imports_mb']:.0f} MB. Uploads hold the same rows across ours, "
        f"pandas and pyarrow: {uploads_same}; parsed results are equal: {parsed_same}."
    ]
    parse_peak = parse["ours"]["peak_over_imports_mb"]
    notes.append(
        f"Scenario 3 memory: read_result_file streams the result file (gunzip in a worker "
        f"thread; blocks of about 2 MB of whole records parsed and typed one at a time; one "
        f"copy of a VIN's text per run of rows), so it holds the typed frame plus about one "
        f"block: the parse peaked at {parse_peak:.0f} MB = {parse_peak / input_mb:.1f}x the "
        f"input frame (pyarrow reading the whole file: "
        f"{parse['bound']['peak_over_imports_mb'] / input_mb:.1f}x). The typed frame alone is "
        f"{parse['ours']['frame_mb'] / input_mb:.1f}x by polars' estimate, which leaves out the "
        f"16-byte view of every string value; the rest is polars code paged in on first use "
        f"and memory its allocator keeps for reuse. The write peak is "
        f"{write['ours']['peak_over_imports_mb'] / input_mb:.1f}x."
    )
    return rows, notes
