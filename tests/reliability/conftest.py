"""Fixtures of the reliability suite.

``fast_backoff``
    Retry backoffs of zero seconds (the rate limiter still honours ``Retry-After``).
``attempts``
    Every HTTP attempt the library made during the test, as ``(method, path, outcome)``,
    read from its debug log (``outcome`` is the status or the transport failure's kind).
``figures``
    A dict the tests fill with what they measured; written as JSON to the file named by
    ``MM_RELIABILITY_FIGURES`` at the end of the session (the source of docs/reliability.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mm_pipeline._session import set_backoff_scale

_ATTEMPT = re.compile(r"^(?P<method>[A-Z]+) (?P<url>\S+) -> (?P<outcome>\S+) \(attempt ")


@pytest.fixture
def fast_backoff() -> Iterator[None]:
    """Retry backoffs of zero seconds."""
    with set_backoff_scale(0.0):
        yield


class _Attempts(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = _ATTEMPT.match(record.getMessage())
        if match:
            path = match["url"].split("?", 1)[0].split("://", 1)[-1]
            path = path[path.find("/") :] if "/" in path else path
            self.seen.append((match["method"], path, match["outcome"]))


@pytest.fixture
def attempts() -> Iterator[list[tuple[str, str, str]]]:
    """Every HTTP attempt of the library during the test: (method, path, outcome)."""
    handler = _Attempts()
    logger = logging.getLogger("mm_pipeline.client")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


_FIGURES: dict[str, Any] = {}


@pytest.fixture
def figures() -> dict[str, Any]:
    """The session's measured figures (written out when MM_RELIABILITY_FIGURES is set)."""
    return _FIGURES


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the measured figures, if asked to."""
    target = os.environ.get("MM_RELIABILITY_FIGURES")
    if target and _FIGURES:
        Path(target).write_text(json.dumps(_FIGURES, indent=2, sort_keys=True) + "\n")
