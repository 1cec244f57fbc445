"""The client process the crash tests kill: one ``rank_dealers`` call, as a nightly job runs it.

``python -m tests.reliability._crash_client BASE_URL PAIRS.parquet CACHE_DIR MODE CONCURRENCY
[RESULT.parquet]`` (the key comes from ``MARKETCHECK_API_KEY``, as in a deployment). It prints
the number of ranked rows when it finishes -- which, in the crash tests, it is not meant to do.
With ``RESULT.parquet`` it also writes the ranked rows there and logs the library's INFO
messages to stderr (the shared-cache test reads both).

``MODE`` ``large`` scans the pairs file (``output=`` beside the cache: streamed through VIN
buckets, Parquet out) with an upload cap of :data:`LARGE_FILE_BYTES`, so the work takes
several jobs.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import polars as pl

import mm_pipeline as mm
from mm_pipeline import _options
from mm_pipeline._batch._route import BatchOptions

CLIENT_REFERENCE = "nightly-placement"
LARGE_FILE_BYTES = 6_000
"""An upload cap that splits the crash tests' batch work into three files."""


_BATCH_OPTIONS = _options.batch_options


def capped_batch_options(options: _options.RankOptions) -> BatchOptions:
    """The batch route's options, with the upload cap :data:`LARGE_FILE_BYTES`."""
    return dataclasses.replace(_BATCH_OPTIONS(options), max_file_bytes=LARGE_FILE_BYTES)


def main(argv: list[str]) -> int:
    """Rank the pairs file; return the exit status."""
    base_url, pairs_path, cache_dir, mode, concurrency, *output = argv
    if output:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if mode not in ("online", "batch", "large"):
        raise SystemExit(f"mode must be online, batch or large, got {mode!r}")
    if mode == "large":
        _options.batch_options = capped_batch_options
        large = mm.rank_dealers(
            pl.scan_parquet(pairs_path),
            client=mm.MarketMatchClient(base_url=base_url),
            mode="batch",
            client_reference=CLIENT_REFERENCE,
            cache_dir=cache_dir,
            progress=False,
            output=Path(cache_dir).parent / "output",
        )
        print(large.stats.ranked, flush=True)
        return 0
    client = mm.MarketMatchClient(base_url=base_url, max_concurrency=int(concurrency))
    result = mm.rank_dealers(
        pl.read_parquet(pairs_path),
        client=client,
        mode="batch" if mode == "batch" else "online",
        client_reference=CLIENT_REFERENCE,
        cache_dir=cache_dir,
        progress=False,
    )
    if output:
        result.ranked.write_parquet(output[0])
    print(result.ranked.height, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
