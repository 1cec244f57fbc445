"""An in-process httpx transport that answers ``/dealers/rank`` instantly from precomputed bodies.

It serves both httpx clients (the library's ``AsyncClient`` and the baseline's ``Client``), so
both pay the same, small cost per request: finding the VIN near the start of the body and
building an ``httpx.Response`` around bytes that already exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx

__all__ = ["InstantTransport"]

_VIN = re.compile(rb'"vin"\s*:\s*"([^"]{17})"')
_SEARCH_BYTES = 256


class InstantTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answer each request with the body precomputed for the VIN it names.

    Parameters
    ----------
    bodies
        VIN -> the full JSON response body.
    rate_limit
        The ``RateLimit-Limit`` every answer reports (as the real API does).
    """

    def __init__(self, bodies: Mapping[str, bytes], *, rate_limit: int = 1_000_000) -> None:
        self._bodies = {vin.encode(): body for vin, body in bodies.items()}
        # Raw header pairs: the cheapest form for httpx.Response to take (no normalising).
        self._headers = [
            (b"Content-Type", b"application/json"),
            (b"RateLimit-Limit", str(rate_limit).encode()),
        ]
        self.requests = 0

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        found = _VIN.search(request.content, 0, _SEARCH_BYTES)
        body = self._bodies.get(found.group(1)) if found else None
        if body is None:
            return httpx.Response(404, json={"code": 404, "message": "no precomputed answer"})
        return httpx.Response(200, content=body, headers=self._headers)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a sync request."""
        return self._answer(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer an async request."""
        return self._answer(request)
