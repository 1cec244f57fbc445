"""The options of one ranking call (:class:`RankOptions`), and the sync twins of the async calls."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import polars as pl

from mm_pipeline._batch._route import DEFAULT_POLL_TIMEOUT, BatchOptions
from mm_pipeline._client import MarketMatchClient
from mm_pipeline._normalize import OnInvalid
from mm_pipeline._online._run import OnRequestFailed
from mm_pipeline._plan import Mode
from mm_pipeline._sync import run_sync

Frame = pl.DataFrame | pl.LazyFrame
P = ParamSpec("P")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankOptions:
    """The options of one ranking call, as given (validated and resolved by the router).

    Built once by the public functions and carried to the routes; the defaults are the public
    functions' defaults.
    """

    client: MarketMatchClient | None = None
    mode: Mode = "online"
    exact_top_k: int | None = None
    chunk_size: int | None = None
    on_invalid: OnInvalid = "raise"
    on_request_failed: OnRequestFailed = "raise"
    progress: bool | None = None
    client_reference: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    poll_timeout: float = DEFAULT_POLL_TIMEOUT
    cache_dir: str | Path | None = None
    cache_ttl: timedelta | float | None = None
    on_job_failed: Literal["raise", "fail"] = "raise"
    max_requests: int | None = None
    output: str | Path | None = None


def sync_twin(
    afunc: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[[Callable[[], None]], Callable[P, T]]:
    """Make the synchronous twin of ``afunc``: same parameters, the decorated stub's docstring.

    The parameters are spelled once, on the async function; ``inspect.signature`` (and so the
    docs) reads them through ``__wrapped__``, and type checkers through the ``ParamSpec``.
    """

    def twin_of(stub: Callable[[], None]) -> Callable[P, T]:
        @functools.wraps(afunc)
        def twin(*args: P.args, **kwargs: P.kwargs) -> T:
            return run_sync(lambda: afunc(*args, **kwargs))

        twin.__name__, twin.__qualname__ = stub.__name__, stub.__qualname__
        twin.__doc__ = stub.__doc__
        return twin

    return twin_of


def batch_options(options: RankOptions) -> BatchOptions:
    """Return the batch route's options of a ranking call."""
    cache_dir = options.cache_dir
    return BatchOptions(
        client_reference=options.client_reference,
        webhook_url=options.webhook_url,
        webhook_secret=options.webhook_secret,
        poll_timeout=options.poll_timeout,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        on_job_failed=options.on_job_failed,
    )
