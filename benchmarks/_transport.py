"""An in-process httpx transport answering ``/dealers/rank`` instantly from precomputed responses.

It serves both httpx clients (the library's ``AsyncClient`` and the baseline's ``Client``). The
``httpx.Response`` for every VIN is built, and its body read, before anything is timed, so the
cost per request left to either side is finding the VIN near the start of the body: the
server's side of an exchange is not the client's work. A response is handed out again when its
VIN is asked again (a warm-up, a repeated run): its body is already read, so that is harmless.
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
        headers = [
            (b"Content-Type", b"application/json"),
            (b"RateLimit-Limit", str(rate_limit).encode()),
        ]
        self._responses = {
            vin.encode(): httpx.Response(200, content=body, headers=headers)
            for vin, body in bodies.items()
        }
        self.requests = 0

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        found = _VIN.search(request.content, 0, _SEARCH_BYTES)
        response = self._responses.get(found.group(1)) if found else None
        if response is None:
            return httpx.Response(404, json={"code": 404, "message": "no precomputed answer"})
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a sync request."""
        return self._answer(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer an async request."""
        return self._answer(request)
