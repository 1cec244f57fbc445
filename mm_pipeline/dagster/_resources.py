"""Resources: the MarketMatch client configuration, and input files read per partition."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final, Literal, overload

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

import mm_pipeline as mm
from mm_pipeline._files import read_table
from mm_pipeline.dagster._io_manager import DEFAULT_BASE_DIR

__all__ = ["DEFAULT_CACHE_DIR", "MarketMatchResource", "SourceData"]

_QUIET: dict[str, Any] = {"on_invalid": "fail", "progress": False}

DEFAULT_CACHE_DIR: Final = str(Path(DEFAULT_BASE_DIR, ".mm_cache"))
"""The resource's cache folder by default (without ``$MM_PIPELINE_CACHE_DIR``): under the IO
manager's default data folder."""


class MarketMatchResource(ConfigurableResource):  # type: ignore[type-arg]
    """How the assets reach MarketMatch: key, base URL and ranking options.

    The key is meant to come from ``EnvVar("MARKETCHECK_API_KEY")``: Dagster then shows the
    variable's name, never its value, in the UI and the run config, and no asset puts it in
    metadata or logs.

    Examples
    --------
    >>> from dagster import EnvVar
    >>> MarketMatchResource(api_key=EnvVar("MARKETCHECK_API_KEY"), mode="online").mode
    'online'
    """

    api_key: str = Field(
        description="MarketMatch API key; configure it as EnvVar('MARKETCHECK_API_KEY').",
        repr=False,
    )
    base_url: str | None = Field(
        default=None,
        description=(
            "API base URL. None: the library's default (env MARKETCHECK_BASE_URL, else "
            "https://api.marketcheck.com)."
        ),
    )
    max_concurrency: int = Field(default=8, description="Requests in flight at once.")
    mode: Literal["auto", "online", "batch"] = Field(
        default="auto",
        description="Placement route: online requests, the batch API, or chosen by size (auto).",
    )
    exact_top_k: int | None = Field(
        default=None,
        description="Ranks 1..K exact across chunks (None: the library's default).",
    )
    cache_dir: str | None = Field(
        default=None,
        description=(
            "Where ranking answers (the answer cache) and verified batch result files are kept, "
            "so a re-executed partition spends no request on what it already ranked. None: "
            "$MM_PIPELINE_CACHE_DIR if set, else data/.mm_cache (under the IO manager's "
            "default data folder, relative to the working directory)."
        ),
    )
    use_answer_cache: bool = Field(
        default=True,
        description=(
            "Serve repeated ranking requests from cache_dir. False: every request is sent and "
            "cache_dir is not passed (batch result files go to the library's default cache)."
        ),
    )
    cache_ttl: float | None = Field(
        default=None,
        description="Seconds a cached answer serves (None: the rest of its UTC day).",
    )
    max_requests: int | None = Field(
        default=None,
        description=(
            "The most requests one ranking may send (refused before sending when the plan "
            "needs more; mm.BudgetExceededError). None: no limit."
        ),
    )

    def client(self) -> mm.MarketMatchClient:
        """Build the (cheap, immutable) client for one run."""
        return mm.MarketMatchClient(
            api_key=self.api_key,
            base_url=self.base_url,
            max_concurrency=self.max_concurrency,
        )

    def answer_cache_dir(self) -> str | None:
        """Return the ``cache_dir`` the rankings get (``None`` with the answer cache off).

        Examples
        --------
        >>> MarketMatchResource(api_key="k", cache_dir="/tmp/mm").answer_cache_dir()
        '/tmp/mm'
        >>> MarketMatchResource(api_key="k", use_answer_cache=False).answer_cache_dir() is None
        True
        """
        if not self.use_answer_cache:
            return None
        return self.cache_dir or os.environ.get("MM_PIPELINE_CACHE_DIR") or DEFAULT_CACHE_DIR

    def _defaults(self) -> dict[str, Any]:
        """Return the options both ranking functions take from this resource."""
        return {
            **_QUIET,
            "exact_top_k": self.exact_top_k,
            "cache_dir": self.answer_cache_dir(),
            "cache_ttl": self.cache_ttl,
            "max_requests": self.max_requests,
        }

    @overload
    def rank_dealers(
        self, pairs: pl.DataFrame | pl.LazyFrame, *, output: None = None, **options: Any
    ) -> mm.RankResult[pl.DataFrame]: ...
    @overload
    def rank_dealers(
        self, pairs: pl.DataFrame | pl.LazyFrame, *, output: str | Path, **options: Any
    ) -> mm.RankResult[pl.LazyFrame]: ...
    def rank_dealers(
        self,
        pairs: pl.DataFrame | pl.LazyFrame,
        *,
        output: str | Path | None = None,
        **options: Any,
    ) -> mm.RankResult[pl.DataFrame] | mm.RankResult[pl.LazyFrame]:
        """``mm.rank_dealers`` with this resource's client and defaults, overridden by ``options``.

        The defaults: this resource's ``mode``, ``exact_top_k``, ``cache_dir`` (the answer
        cache, unless ``use_answer_cache`` is off), ``cache_ttl`` and ``max_requests``,
        ``on_invalid="fail"`` (invalid rows go to ``failed``, where the checks report them) and
        no progress bar. A ``client_reference`` names the batch job, so a retried run adopts the
        job it started. With ``output`` (a folder) the pairs stream through the library's
        ``output=`` route and the result's frames are LazyFrames scanning the Parquet files
        written there.
        """
        merged = {**self._defaults(), "mode": self.mode, **options}
        if output is None:
            return mm.rank_dealers(pairs, client=self.client(), **merged)
        return mm.rank_dealers(pairs, client=self.client(), output=output, **merged)

    def rank_vins(self, pairs: pl.DataFrame | pl.LazyFrame, **options: Any) -> mm.RankResult:
        """``mm.rank_vins`` (always online) with this resource's client and defaults.

        The defaults: as for :meth:`rank_dealers` (no ``mode``); ``options`` override them.
        """
        return mm.rank_vins(pairs, client=self.client(), **{**self._defaults(), **options})


class SourceData(ConfigurableResource):  # type: ignore[type-arg]
    """Where the day's input files are: one path per input, each a file or a folder of files.

    Paths are relative to ``root`` unless absolute; ``{partition}`` in ``root`` or a path is
    replaced by the partition key (for example ``landing/{partition}/vehicles.parquet``). CSV,
    gzip CSV and Parquet are read; a folder is read file by file and concatenated.

    Examples
    --------
    >>> SourceData(root="landing/{partition}").path("vehicles", partition_key="2026-11-28")
    PosixPath('landing/2026-11-28/vehicles.csv')
    """

    root: str = Field(default=".", description="Folder the input paths are relative to.")
    vehicles: str = Field(default="vehicles.csv", description="Vehicles to place.")
    dealers: str = Field(default="dealers.csv", description="Candidate dealers for placement.")
    acquisitions: str = Field(
        default="acquisitions.csv", description="Dealers' acquisition candidates (pairs)."
    )
    max_rows: int | None = Field(
        default=None, description="Read at most this many rows of each input (None: all)."
    )

    def path(
        self, name: Literal["vehicles", "dealers", "acquisitions"], *, partition_key: str
    ) -> Path:
        """Resolve the path of input ``name`` for ``partition_key``."""
        raw = Path(self.root, getattr(self, name))
        return Path(str(raw).replace("{partition}", partition_key))

    def read(
        self, name: Literal["vehicles", "dealers", "acquisitions"], *, partition_key: str
    ) -> pl.DataFrame:
        """Read input ``name`` for ``partition_key`` (at most ``max_rows`` rows)."""
        frame = read_table(self.path(name, partition_key=partition_key))
        return frame if self.max_rows is None else frame.head(self.max_rows)
