"""Profile scenario 2 (ours) with pyinstrument and split its time into where it goes.

The split is by the innermost matching category on each sampled stack (so orjson decoding is not
counted as our code), except that everything under the benchmark's own transport counts as the
transport; from the same session whose text profile is written beside the results. Garbage
collection is charged to whatever allocated at the time (``make bench`` reports it separately).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.frame import Frame

from benchmarks._measure import pin_to_one_core

__all__ = ["CATEGORIES", "breakdown", "task_profile"]

_TRANSPORT = "benchmark transport (the fake server)"
#: (category, file path fragment or None, function names or None): first match wins per frame.
CATEGORIES: tuple[tuple[str, str | None, frozenset[str] | None], ...] = (
    ("idle (event loop waiting: rate-limiter start-up)", "selectors.py", None),
    ("idle (event loop waiting: rate-limiter start-up)", None, frozenset({"epoll.poll", "poll"})),
    (_TRANSPORT, "benchmarks/_transport", None),
    ("JSON decode (the bound)", None, frozenset({"loads", "Decoder.decode", "decode"})),
    ("httpx request/response machinery", "/httpx/", None),
    ("retries (stamina/tenacity)", "/stamina/", None),
    ("retries (stamina/tenacity)", "/tenacity/", None),
    ("rate limiter", "_ratelimit.py", None),
    ("normalise + validate input (pandera)", "/pandera/", None),
    ("normalise + validate input (pandera)", "_normalize.py", None),
    ("normalise + validate input (pandera)", "mm_pipeline/_validate.py", None),
    (
        "match answers to pairs",
        None,
        frozenset({"record_echo", "match_ranked", "absorb", "take", "refused_ranks"}),
    ),
    ("request bodies", None, frozenset({"_body", "json_fragments"})),
    (
        "groups, per-pair lists and result frames",
        None,
        frozenset({"_groups", "_chunk_json", "empty", "frames", "_result"}),
    ),
)


def _category(frame: Frame) -> str | None:
    path = frame.file_path or ""
    for name, fragment, functions in CATEGORIES:
        if fragment is not None and fragment not in path:
            continue
        if functions is not None and frame.function not in functions:
            continue
        return name
    return None


def breakdown(root: Frame) -> dict[str, float]:
    """Seconds per category (innermost match wins; the rest is "other")."""
    totals: dict[str, float] = {}

    def walk(frame: Frame, current: str) -> None:
        if current != _TRANSPORT:  # the fake server's frames stay the fake server's
            current = _category(frame) or current
        children = frame.children
        own = frame.time - sum(child.time for child in children)
        totals[current] = totals.get(current, 0.0) + max(own, 0.0)
        for child in children:
            walk(child, current)

    walk(root, "other (asyncio, polars glue, GC)")
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def task_profile(args: dict[str, Any]) -> dict[str, Any]:
    """Worker: profile ``rank_dealers`` on ``args["data"]``; write the text to ``args["out"]``."""
    import mm_pipeline as mm  # noqa: PLC0415
    from benchmarks._transport import InstantTransport  # noqa: PLC0415
    from benchmarks.overhead import DEALERS_PER_VEHICLE, load  # noqa: PLC0415

    frame, bodies = load(Path(args["data"]))
    pin_to_one_core()
    client = mm.MarketMatchClient(
        "mc_test_profile", "http://bench.invalid", transport=InstantTransport(bodies)
    )
    mm.rank_dealers(frame.head(DEALERS_PER_VEHICLE), client=client, mode="online", progress=False)
    profiler = Profiler(interval=0.001, async_mode="enabled")
    profiler.start()
    mm.rank_dealers(frame, client=client, mode="online", progress=False)
    profiler.stop()
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    Path(args["out"]).write_text(text)
    root = profiler.last_session.root_frame() if profiler.last_session else None
    parts = breakdown(root) if root is not None else {}
    return {"pairs": frame.height, "seconds": sum(parts.values()), "parts": parts}
