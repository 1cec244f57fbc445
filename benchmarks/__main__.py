"""``python -m benchmarks [--quick] [--only N ...] [--out DIR]``: run, print and save the table.

The full run (``make bench``) writes ``benchmarks/results/latest.md`` and ``latest.json``; the
quick run (``make bench QUICK=1``: every scenario at a small size, under a minute) writes
``latest-quick.*`` so that it never replaces the full figures. Scenario 2 also writes a
pyinstrument profile of ours beside them (``latest-profile.txt``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import assign, batch, cost, fanout, large, overhead, throughput
from benchmarks._report import Report, Row
from benchmarks._signals import exit_on_signals

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = (1, 2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """How big each scenario runs."""

    fanout_requests: int
    overhead_vehicles: tuple[int, ...]
    """Vehicles of 100 dealers per scaling step; the largest is scenario 2."""
    batch_rows: int
    throughput_seconds: float
    assign_vehicles: tuple[int, ...]
    """Vehicles of scenario 6 (each with its exact top-10 of 1,000 dealers)."""
    cost_sizes: dict[str, tuple[int, ...]]
    """Group sizes per endpoint of scenario 7."""
    large_pairs: tuple[int, ...]
    """Pairs of scenario 8 (frames bigger than memory), smallest first."""


FULL = Sizes(
    fanout_requests=160,
    overhead_vehicles=(100, 1_000, 10_000),
    batch_rows=1_000_000,
    throughput_seconds=5.0,
    assign_vehicles=(10_000, 100_000),
    cost_sizes=cost.FULL_SIZES,
    large_pairs=(1_000_000, 3_000_000, 10_000_000),
)
QUICK = Sizes(
    fanout_requests=24,
    overhead_vehicles=(10, 100),
    batch_rows=20_000,
    throughput_seconds=1.0,
    assign_vehicles=(1_000,),
    cost_sizes=cost.QUICK_SIZES,
    large_pairs=(1_000_000, 2_000_000),
)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _run(sizes: Sizes, only: set[int], work: Path, out: Path, stem: str, report: Report) -> None:
    steps: list[tuple[set[int], str, Callable[[], tuple[list[Row], list[str]]]]] = [
        ({1}, "1 fan-out", lambda: fanout.run(sizes.fanout_requests, progress=_say)),
        (
            {2, 5},
            "2+5 overhead and scaling",
            lambda: overhead.run(
                [
                    overhead.prepare(work / f"overhead-{v}", v)
                    for v in (
                        sizes.overhead_vehicles if 5 in only else sizes.overhead_vehicles[-1:]
                    )
                ],
                profile_to=out / f"{stem}-profile.txt",
                progress=_say,
            ),
        ),
        (
            {3},
            "3 batch",
            lambda: batch.run(batch.prepare(work / "batch", sizes.batch_rows), progress=_say),
        ),
        (
            {4},
            "4 sandbox throughput",
            lambda: throughput.run(sizes.throughput_seconds, progress=_say),
        ),
        (
            {6},
            "6 placement under capacity",
            lambda: assign.run(list(sizes.assign_vehicles), progress=_say),
        ),
        ({7}, "7 request cost", lambda: cost.run(sizes.cost_sizes, progress=_say)),
        (
            {8},
            "8 frames bigger than memory",
            lambda: large.run(list(sizes.large_pairs), work / "large", progress=_say),
        ),
    ]
    for numbers, label, step in steps:
        if not numbers & only:
            continue
        _say(f"scenario {label} ...")
        started = time.perf_counter()
        rows, notes = step()
        report.add([r for r in rows if int(r.scenario.split()[0]) in only], notes)
        _say(f"scenario {label}: {time.perf_counter() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the table; write the results files."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument(
        "--only", type=int, nargs="+", choices=SCENARIOS, default=SCENARIOS, help="scenarios"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument(
        "--large-pairs",
        type=int,
        nargs="+",
        help="sizes of scenario 8 (default 1M 3M 10M; --quick: 1M 2M), smallest first",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.large_pairs:
        sizes = dataclasses.replace(sizes, large_pairs=tuple(sorted(args.large_pairs)))
    report = Report(mode="quick" if args.quick else "full")
    started = time.perf_counter()
    stem = "latest-quick" if args.quick else "latest"
    args.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C: child processes (sandbox servers, workers) are stopped.
    with exit_on_signals(), tempfile.TemporaryDirectory(prefix="mm-bench-") as tmp:
        _run(sizes, set(args.only), Path(tmp), args.out, stem, report)
    report.seconds = time.perf_counter() - started
    if args.quick:
        report.notes.insert(
            0, "Quick mode: small sizes, a smoke test; the targets are for the full run."
        )
    print(report.markdown())
    md, js = report.write(args.out, stem)
    _say(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
