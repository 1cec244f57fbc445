"""Dataframe-native MarketMatch ranking for polars and Dagster.

The public names are re-exported here; every module behind them is private.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from typing import TYPE_CHECKING, Any

from mm_pipeline import _namespace, webhooks
from mm_pipeline._assign import assign, check_plan
from mm_pipeline._assign_result import AssignResult, AssignStats
from mm_pipeline._batch._client import BatchClient
from mm_pipeline._batch._download import BatchDownloadWarning
from mm_pipeline._batch._job import BatchJob
from mm_pipeline._client import MarketMatchClient
from mm_pipeline._exceptions import (
    APIError,
    AuthenticationError,
    BatchError,
    BatchJobFailed,
    BatchTimeoutError,
    BudgetExceededError,
    CacheStorageError,
    ChecksumMismatchError,
    ConfigurationError,
    ConflictError,
    DeadlineExceededError,
    DownloadError,
    InvalidInputError,
    InvalidRequestError,
    MarketMatchError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TransportError,
    UnprocessableError,
    WebhookVerificationError,
)
from mm_pipeline._normalize import normalize
from mm_pipeline._plan import Plan, plan
from mm_pipeline._rank import arank_dealers, arank_vins, cross_pairs, rank_dealers, rank_vins
from mm_pipeline._result import RankResult, RankStats
from mm_pipeline._session import RequestStats, Session

if TYPE_CHECKING:
    from mm_pipeline import charts, schemas

__all__ = [
    "APIError",
    "AssignResult",
    "AssignStats",
    "AuthenticationError",
    "BatchClient",
    "BatchDownloadWarning",
    "BatchError",
    "BatchJob",
    "BatchJobFailed",
    "BatchTimeoutError",
    "BudgetExceededError",
    "CacheStorageError",
    "ChecksumMismatchError",
    "ConfigurationError",
    "ConflictError",
    "DeadlineExceededError",
    "DownloadError",
    "InvalidInputError",
    "InvalidRequestError",
    "MarketMatchClient",
    "MarketMatchError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Plan",
    "QuotaExhaustedError",
    "RankResult",
    "RankStats",
    "RateLimitError",
    "RequestStats",
    "ServerError",
    "Session",
    "TransportError",
    "UnprocessableError",
    "WebhookVerificationError",
    "__version__",
    "arank_dealers",
    "arank_vins",
    "assign",
    "charts",
    "check_plan",
    "cross_pairs",
    "normalize",
    "plan",
    "rank_dealers",
    "rank_vins",
    "schemas",
    "webhooks",
]

# Reprs, tracebacks and docs say ``mm_pipeline.MarketMatchClient`` and
# ``mm_pipeline.rank_dealers``, as httpx does.
for _name in __all__:
    _public = globals().get(_name)
    if isinstance(_public, type) or inspect.isfunction(_public):
        _public.__module__ = "mm_pipeline"
del _name, _public, _namespace  # the namespace registers itself on import


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return importlib.metadata.version("mm-pipeline")
    if name == "schemas":  # pandera (and pandas with it) load on first use: 0.7 s
        return importlib.import_module("mm_pipeline.schemas")
    if name == "charts":  # Altair is optional (the plot extra) and loads on first use
        return importlib.import_module("mm_pipeline.charts")
    raise AttributeError(f"module 'mm_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})  # the lazy names too, for tab completion
