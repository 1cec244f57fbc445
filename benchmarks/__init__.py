"""``make bench``: how close mm_pipeline gets to the limits, and how far ahead of a plain loop.

Run ``python -m benchmarks`` (``make bench``, ~6 minutes) or ``python -m benchmarks --quick``
(``make bench QUICK=1``, under a minute). One table is printed and written to
``benchmarks/results/latest.md`` and ``latest.json`` (quick: ``latest-quick.*``), every figure
beside its baseline and its bound, measured in the same run.

Scenarios (targets from issue 6):

1. :mod:`~benchmarks.fanout` -- fan-out against the rate limit (sandbox process, 150 ms, 20/s).
2. :mod:`~benchmarks.overhead` -- the library's own cost on 1M pairs / 10,000 requests against
   an instant in-process transport; bound = orjson encode + decode.
3. :mod:`~benchmarks.batch` -- the batch route on 1M pairs: write, sandbox job, parse, memory.
4. :mod:`~benchmarks.throughput` -- requests per second the sandbox serves to 32 clients.
5. :mod:`~benchmarks.overhead` -- scenario 2 at 10k, 100k, 1M pairs: growth against linear.
6. :mod:`~benchmarks.assign` -- ``mm.assign`` on 100k and 1M candidate pairs against the greedy
   baseline (issue 13).
7. :mod:`~benchmarks.cost` -- requests spent over a mix of group sizes and ``exact_top_k``,
   against the achievable minimum (issue 11); ``ceil(n / cap)`` as the bound; a same-day rerun
   with the answer cache (target: 0 requests).

The baseline (:mod:`benchmarks.baseline`) is what an analyst writes without the library.
Measurements that need a clean process (peak RSS, one pinned core) run in worker processes
(:mod:`benchmarks._worker`); HTTP servers run in their own process (:mod:`benchmarks._sandbox`).
"""
