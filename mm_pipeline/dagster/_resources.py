"""Resources: the MarketMatch client configuration, and input files read per partition."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

import mm_pipeline as mm
from mm_pipeline._files import read_table

__all__ = ["MarketMatchResource", "SourceData"]

_QUIET: dict[str, Any] = {"on_invalid": "fail", "progress": False}


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
            "Where verified batch result files are kept, so a rerun spends no download "
            "(None: the library's default, $MM_PIPELINE_CACHE_DIR or ~/.cache/mm_pipeline/batch)."
        ),
    )

    def client(self) -> mm.MarketMatchClient:
        """Build the (cheap, immutable) client for one run."""
        return mm.MarketMatchClient(
            api_key=self.api_key,
            base_url=self.base_url,
            max_concurrency=self.max_concurrency,
        )

    def rank_dealers(self, pairs: pl.DataFrame | pl.LazyFrame, **options: Any) -> mm.RankResult:
        """``mm.rank_dealers`` with this resource's client and defaults, overridden by ``options``.

        The defaults: this resource's ``mode``, ``exact_top_k`` and ``cache_dir``,
        ``on_invalid="fail"`` (invalid rows go to ``failed``, where the checks report them) and
        no progress bar. A ``client_reference`` names the batch job, so a retried run adopts the
        job it started.
        """
        defaults = {"mode": self.mode, "exact_top_k": self.exact_top_k, "cache_dir": self.cache_dir}
        return mm.rank_dealers(pairs, client=self.client(), **{**_QUIET, **defaults, **options})

    def rank_vins(self, pairs: pl.DataFrame | pl.LazyFrame, **options: Any) -> mm.RankResult:
        """``mm.rank_vins`` (always online) with this resource's client and defaults.

        The defaults: this resource's ``exact_top_k``, ``on_invalid="fail"``, no progress bar;
        ``options`` override them.
        """
        defaults = {"exact_top_k": self.exact_top_k}
        return mm.rank_vins(pairs, client=self.client(), **{**_QUIET, **defaults, **options})


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
