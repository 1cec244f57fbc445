"""``mm-pipeline rank``: the answer cache on by default, ``--no-cache``, ``--max-requests``."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from click.testing import CliRunner, Result

import mm_pipeline as mm
from mm_pipeline.cli import cli
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.conftest import make_vins
from tests.reliability._support import ServedRequests


def _pairs_file(folder: Path) -> Path:
    cars = pl.DataFrame(
        {"vin": make_vins(3, offset=90), "price": [30_000, 31_000, 32_000], "miles": [10, 20, 30]}
    )
    rooftops = Market.default().dealers.slice(700, 30).select("source", "zip")
    source = folder / "pairs.csv"
    mm.cross_pairs(cars, rooftops).write_csv(source)
    return source


def _rank(sb: Sandbox, cache: Path, *args: str) -> Result:
    env = {
        "MARKETCHECK_API_KEY": sb.api_key,
        "MARKETCHECK_BASE_URL": sb.base_url,
        "MM_PIPELINE_CACHE_DIR": str(cache),
    }
    return CliRunner().invoke(cli, ["rank", *args, "--no-progress"], env=env)


def test_a_rerun_sends_nothing_by_default(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """Without options the CLI keeps answers in the default cache; a rerun sends 0 requests."""
    source = _pairs_file(tmp_path)
    cache = tmp_path / "default-cache"
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        first = _rank(clean_sandbox, cache, "dealers", str(source), str(tmp_path / "a.parquet"))
        assert first.exit_code == 0, first.output
        sent = served()
        second = _rank(clean_sandbox, cache, "vins", str(source), str(tmp_path / "v.parquet"))
        third = _rank(clean_sandbox, cache, "dealers", str(source), str(tmp_path / "b.parquet"))
        assert third.exit_code == 0, third.output
        assert served() == sent + 30  # only rank vins (30 dealers, a request each) was sent
    assert second.exit_code == 0, second.output
    assert sent == 3
    assert (cache / "answers").is_dir()
    assert pl.read_parquet(tmp_path / "a.parquet").equals(pl.read_parquet(tmp_path / "b.parquet"))


def test_no_cache_sends_again_and_cache_dir_is_used(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """--no-cache sends every request; --cache-dir puts the answers where it says."""
    source = _pairs_file(tmp_path)
    cache, chosen = tmp_path / "default-cache", tmp_path / "chosen"
    out = str(tmp_path / "out.csv")
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        for _ in range(2):
            result = _rank(clean_sandbox, cache, "dealers", str(source), out, "--no-cache")
            assert result.exit_code == 0, result.output
        assert served() == 6
        for _ in range(2):
            result = _rank(
                clean_sandbox, cache, "vins", str(source), out, "--cache-dir", str(chosen)
            )
            assert result.exit_code == 0, result.output
        assert served() == 6 + 30
    assert not cache.exists()
    assert (chosen / "answers").is_dir()
    both = _rank(
        clean_sandbox, cache, "dealers", str(source), out, "--no-cache", "--cache-dir", "."
    )
    assert both.exit_code == 2
    assert "--no-cache and --cache-dir contradict" in both.output


def test_max_requests_refuses_before_sending(clean_sandbox: Sandbox, tmp_path: Path) -> None:
    """--max-requests below the plan: one clear line, exit 1, nothing sent; at the plan: ranked."""
    args = ["dealers", str(_pairs_file(tmp_path)), str(tmp_path / "out.csv"), "--max-requests"]
    with ServedRequests.on(clean_sandbox, clean_sandbox.api_key) as served:
        refused = _rank(clean_sandbox, tmp_path / "cache", *args, "2")
        assert served() == 0
        fits = _rank(clean_sandbox, tmp_path / "cache", *args, "3")
        assert served() == 3
    assert refused.exit_code == 1
    assert "max_requests=2 is too low: the online route needs 3 requests" in refused.output
    assert clean_sandbox.api_key not in refused.output
    assert fits.exit_code == 0, fits.output
