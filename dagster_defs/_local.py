"""The local environment of ``python -m dagster_defs.demo`` and ``python -m dagster_defs.ui``.

* ``DAGSTER_HOME``: kept if set, else ``.dagster_home/`` in the working directory; it receives a
  copy of ``instance/dagster.yaml`` (pools, run retries) when it has no ``dagster.yaml`` yet.
* The API: with ``MARKETCHECK_BASE_URL`` set, that API is used as is (``MARKETCHECK_API_KEY``
  must be set too); otherwise the embedded sandbox is started on a free loopback port (with
  :data:`LOCAL_SANDBOX` settings) and both variables point at it for as long as the context
  lasts. Its batch results are then cached in a temporary folder that goes with it (unless
  ``MM_PIPELINE_CACHE_DIR`` is set): the sandbox's jobs do not outlive it either.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mm_pipeline import sandbox
from mm_pipeline.sandbox import SandboxOptions

__all__ = ["INSTANCE_TEMPLATE", "LOCAL_SANDBOX", "LocalApi", "dagster_home", "local_api"]

INSTANCE_TEMPLATE = Path(__file__).with_name("instance") / "dagster.yaml"
_KEY, _URL, _HOME = "MARKETCHECK_API_KEY", "MARKETCHECK_BASE_URL", "DAGSTER_HOME"
_CACHE = "MM_PIPELINE_CACHE_DIR"

LOCAL_SANDBOX = SandboxOptions(rate_limit=100.0, job_seconds=0.2)
"""The embedded sandbox's account: 100 requests/s (an enterprise-sized plan; the sandbox serves
several hundred on this kind of machine) and batch jobs of 0.2 s at least, so the demo ranks the
whole sample data -- 384,000 vehicle-dealer pairs -- in seconds."""


@dataclass(frozen=True)
class LocalApi:
    """Which API the local run talks to (never holds the key)."""

    base_url: str
    sandbox: bool

    def describe(self) -> str:
        """One line for the terminal."""
        where = "embedded sandbox" if self.sandbox else "MARKETCHECK_BASE_URL"
        return f"{self.base_url} ({where})"


def dagster_home() -> Path:
    """Set ``DAGSTER_HOME`` (default ``./.dagster_home``) and give it the instance settings."""
    home = Path(os.environ.get(_HOME) or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ[_HOME] = str(home)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    return home


@contextmanager
def local_api() -> Iterator[LocalApi]:
    """Use ``MARKETCHECK_BASE_URL`` if set, else run the sandbox and point the environment at it."""
    if os.environ.get(_URL):
        if not os.environ.get(_KEY):
            raise SystemExit(f"{_URL} is set, so {_KEY} must be set too (the API key to use).")
        yield LocalApi(base_url=os.environ[_URL], sandbox=False)
        return
    saved = {name: os.environ.get(name) for name in (_KEY, _URL, _CACHE)}
    with (
        sandbox.running(port=0, **LOCAL_SANDBOX) as sb,
        tempfile.TemporaryDirectory(prefix="mm-sandbox-results-") as cache,
    ):
        os.environ[_KEY], os.environ[_URL] = sb.api_key, sb.base_url
        os.environ.setdefault(_CACHE, cache)
        try:
            yield LocalApi(base_url=sb.base_url, sandbox=True)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
