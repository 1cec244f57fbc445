"""Resources: the MarketMatch client configuration and the location of the source files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

import mm_pipeline as mm
from mm_pipeline.cli._rank import read_pairs

__all__ = ["SOURCE_FORMATS", "MarketMatchResource", "SourceData", "read_table"]

SOURCE_FORMATS = (".csv", ".csv.gz", ".parquet")
"""File name endings :func:`read_table` understands (a folder is read file by file)."""


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

    def rank_dealers(self, pairs: pl.DataFrame, *, client_reference: str) -> mm.RankResult:
        """Rank the dealers of each vehicle; invalid rows go to ``failed`` instead of raising.

        ``client_reference`` names the batch job, so a retried run adopts the job it started.
        """
        return mm.rank_dealers(
            pairs,
            client=self.client(),
            mode=self.mode,
            exact_top_k=self.exact_top_k,
            on_invalid="fail",
            progress=False,
            client_reference=client_reference,
            cache_dir=self.cache_dir,
        )

    def rank_vins(self, pairs: pl.DataFrame) -> mm.RankResult:
        """Rank the vehicles of each dealer (always online); invalid rows go to ``failed``."""
        return mm.rank_vins(
            pairs,
            client=self.client(),
            exact_top_k=self.exact_top_k,
            on_invalid="fail",
            progress=False,
        )


class SourceData(ConfigurableResource):  # type: ignore[type-arg]
    """Where the day's input files are: one path per input, each a file or a folder of files.

    Paths are relative to ``root`` unless absolute; ``{partition}`` in ``root`` or a path is
    replaced by the partition key (for example ``landing/{partition}/vehicles.parquet``). CSV,
    gzip CSV and Parquet are read; a folder is read file by file and concatenated.

    Examples
    --------
    >>> SourceData(root="sample_data").path("vehicles", partition_key="2026-11-28")
    PosixPath('sample_data/vehicles.csv')
    """

    root: str = Field(default="sample_data", description="Folder the input paths are relative to.")
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


def read_table(path: Path) -> pl.DataFrame:
    r"""Read a CSV / gzip CSV / Parquet file, or every such file in a folder, as one frame.

    Identifier columns (``vin``, ``source``, ``zip``, ``mc_location_id``) are read from CSV as
    text, so ZIP codes keep their leading zeros.

    Parameters
    ----------
    path
        A file, or a folder whose matching files (sorted by name) are concatenated.

    Returns
    -------
    pl.DataFrame
        The rows of every file, columns unified by name.

    Raises
    ------
    FileNotFoundError
        When the file, or every input file of the folder, is missing.
    ValueError
        When the file name has none of the :data:`SOURCE_FORMATS` endings.
    mm_pipeline.InvalidInputError
        When a file cannot be read as its format (not UTF-8, ragged rows, empty, corrupt gzip
        or Parquet); the message names the file and why.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = Path(folder, "a.csv").write_text("vin,zip\nV1,02134\n")
    ...     pl.DataFrame({"vin": ["V2"]}).write_parquet(Path(folder, "b.parquet"))
    ...     read_table(Path(folder)).to_dicts()
    [{'vin': 'V1', 'zip': '02134'}, {'vin': 'V2', 'zip': None}]
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(SOURCE_FORMATS))
        if not files:
            raise FileNotFoundError(f"{path}: no {', '.join(SOURCE_FORMATS)} files in this folder")
        return pl.concat([read_table(p) for p in files], how="diagonal_relaxed")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: input file not found")
    if not path.name.endswith(SOURCE_FORMATS):
        raise ValueError(f"{path}: unsupported input format (expected {', '.join(SOURCE_FORMATS)})")
    return read_pairs(path)
