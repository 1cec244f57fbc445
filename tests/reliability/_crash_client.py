"""The client process the crash tests kill: one ``rank_dealers`` call, as a nightly job runs it.

``python -m tests.reliability._crash_client BASE_URL PAIRS.parquet CACHE_DIR MODE CONCURRENCY
[RESULT.parquet]`` (the key comes from ``MARKETCHECK_API_KEY``, as in a deployment). It prints
the number of ranked rows when it finishes -- which, in the crash tests, it is not meant to do.
With ``RESULT.parquet`` it also writes the ranked rows there and logs the library's INFO
messages to stderr (the shared-cache test reads both).
"""

from __future__ import annotations

import logging
import sys

import polars as pl

import mm_pipeline as mm

CLIENT_REFERENCE = "nightly-placement"


def main(argv: list[str]) -> int:
    """Rank the pairs file; return the exit status."""
    base_url, pairs_path, cache_dir, mode, concurrency, *output = argv
    if output:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if mode not in ("online", "batch"):
        raise SystemExit(f"mode must be online or batch, got {mode!r}")
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
