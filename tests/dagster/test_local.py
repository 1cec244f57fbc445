"""The local environment of the demo and the UI: DAGSTER_HOME and which API to use."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from dagster_defs._local import INSTANCE_TEMPLATE, dagster_home, local_api


def test_dagster_home_gets_the_instance_settings_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new DAGSTER_HOME receives dagster.yaml; an existing (edited) one is left alone."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = dagster_home()
    assert (home / "dagster.yaml").read_text() == INSTANCE_TEMPLATE.read_text()
    (home / "dagster.yaml").write_text("# edited\n")
    dagster_home()
    assert (home / "dagster.yaml").read_text() == "# edited\n"


def test_default_dagster_home_is_project_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without DAGSTER_HOME, .dagster_home/ in the working directory is used and exported."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert dagster_home() == tmp_path / ".dagster_home"
    assert Path(os.environ["DAGSTER_HOME"]) == tmp_path / ".dagster_home"


def test_a_given_base_url_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """MARKETCHECK_BASE_URL without MARKETCHECK_API_KEY stops with a message naming both."""
    monkeypatch.setenv("MARKETCHECK_BASE_URL", "https://api.example.test")
    monkeypatch.delenv("MARKETCHECK_API_KEY", raising=False)
    message = "MARKETCHECK_BASE_URL is set, so MARKETCHECK_API_KEY"
    with pytest.raises(SystemExit, match=message), local_api():
        pass


def test_a_given_api_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """With both variables set, no sandbox starts and the environment is unchanged."""
    monkeypatch.setenv("MARKETCHECK_BASE_URL", "https://api.example.test")
    monkeypatch.setenv("MARKETCHECK_API_KEY", "mc_test_given")
    with local_api() as api:
        assert api.base_url == "https://api.example.test"
        assert not api.sandbox
        assert "mc_test_given" not in repr(api) + api.describe()


def test_the_embedded_sandbox_is_fast_and_its_results_go_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo's sandbox allows 100 req/s; its batch results are cached only while it runs."""
    for name in ("MARKETCHECK_BASE_URL", "MARKETCHECK_API_KEY", "MM_PIPELINE_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    with local_api() as api:
        assert api.sandbox
        response = httpx.get(
            f"{api.base_url}/v2/batch/marketmatch/rank/jobs",
            params={"api_key": os.environ["MARKETCHECK_API_KEY"]},
        )
        assert response.headers["RateLimit-Limit"] == "100"
        cache = Path(os.environ["MM_PIPELINE_CACHE_DIR"])
        assert cache.is_dir()
    assert not cache.exists()
    assert "MM_PIPELINE_CACHE_DIR" not in os.environ


def test_a_cache_dir_set_by_the_user_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MM_PIPELINE_CACHE_DIR given by the user is used as is, also with the embedded sandbox."""
    monkeypatch.delenv("MARKETCHECK_BASE_URL", raising=False)
    monkeypatch.setenv("MM_PIPELINE_CACHE_DIR", str(tmp_path))
    with local_api():
        assert os.environ["MM_PIPELINE_CACHE_DIR"] == str(tmp_path)
    assert os.environ["MM_PIPELINE_CACHE_DIR"] == str(tmp_path)
