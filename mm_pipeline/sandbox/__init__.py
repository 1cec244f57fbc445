"""A faithful local emulator of the published MarketMatch API, served over real HTTP.

Start it from Python with :func:`running` (a background thread on a free loopback port) or from a
shell with ``mm-pipeline sandbox serve``. The behaviour where the published text is silent is
documented in ``docs/api-contract.md``.

Examples
--------
>>> import httpx
>>> from mm_pipeline.sandbox import running
>>> with running() as sb:
...     r = httpx.post(
...         sb.url("/v2/marketmatch/dealers/rank"),
...         params={"api_key": sb.api_key},
...         json={"vin": {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000},
...               "dealers": [{"source": "mbofaugusta.com", "zip": "30907"}]},
...     )
>>> r.status_code, r.json()["ranked_matches"][0]["vin_rank"]
(200, 1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mm_pipeline.sandbox._accounts import DEMO_API_KEY
from mm_pipeline.sandbox._config import SandboxConfig, SandboxOptions
from mm_pipeline.sandbox._faults import FAULT_KINDS, FaultKind

if TYPE_CHECKING:
    from mm_pipeline.sandbox._server import Sandbox, running, serve

__all__ = [
    "DEMO_API_KEY",
    "FAULT_KINDS",
    "FaultKind",
    "Sandbox",
    "SandboxConfig",
    "SandboxOptions",
    "running",
    "serve",
]

_SERVER_NAMES = frozenset({"Sandbox", "running", "serve"})
_EXTRA_MODULES = frozenset({"starlette", "uvicorn", "python_multipart", "multipart", "zipcodes"})
"""What the ``sandbox`` extra installs (by import name): the server stack and the ZIP data."""


def __getattr__(name: str) -> Any:
    # The server loads on first use: `mm-pipeline --help` and the client need none of its stack.
    if name not in _SERVER_NAMES:
        raise AttributeError(f"module 'mm_pipeline.sandbox' has no attribute {name!r}")
    try:
        from mm_pipeline.sandbox import _server  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _EXTRA_MODULES:
            raise
        raise ImportError(
            f"the MarketMatch sandbox needs its server stack ({exc.name} is not installed): "
            "pip install 'mm-pipeline[sandbox]'"
        ) from exc
    return getattr(_server, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
