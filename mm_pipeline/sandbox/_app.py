"""The Starlette ASGI app: parse a request, call accounts / faults / market / jobs, render.

Every API request goes through the same gate, after the configured latency, in this order:

1. authentication (401 missing/unknown ``api_key``, 403 key without MarketMatch access);
2. the account's token bucket (429 ``API rate limit exceeded``) and monthly quota
   (429 ``Monthly API quota exhausted``);
3. fault injection (random or targeted: a 429/500/502/503, a dropped connection, a slow
   response, or an answer quoting the key back);
4. one call is counted against the quota, and the endpoint runs.

Every response, errors included, carries the six ``RateLimit-*``/``Quota-*`` headers (requests
with no known key report a fresh account's figures). Every error body is
``{"code": status, "message": ...}`` plus the published extras.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from mm_pipeline.sandbox._accounts import Account, Limits
from mm_pipeline.sandbox._control import control_routes
from mm_pipeline.sandbox._faults import SERVED_KINDS, FaultKind
from mm_pipeline.sandbox._jobs import MAX_DOWNLOADS, BatchError, Download
from mm_pipeline.sandbox._market import Ranked, RankOutcome
from mm_pipeline.sandbox._openapi import openapi_document
from mm_pipeline.sandbox._state import SandboxState
from mm_pipeline.sandbox._upload import (
    FileTooLargeError,
    MalformedUploadError,
    UploadForm,
    drain,
    read_upload,
)
from mm_pipeline.sandbox._validation import (
    InvalidRequestError,
    parse_dealers_request,
    parse_vins_request,
)
from mm_pipeline.sandbox._webhooks import check_webhook_url

__all__ = ["CLOSE_CONNECTION", "ApiError", "create_app", "error_response"]

CLOSE_CONNECTION = "mm_pipeline.close_connection"
"""ASGI scope extension: a callable that closes the client connection (set by our server)."""

JOBS_PATH = "/v2/batch/marketmatch/rank/jobs"
_MAX_JSON_BODY = 1024 * 1024
_FORM_OVERHEAD = 64 * 1024
_DRAIN_BYTES = 64 * 1024 * 1024
_FIELD_LIMITS = {"client_reference": 255, "webhook_url": 2048, "webhook_secret": 512}
_IDEMPOTENCY_MAX = 255
_CHUNK = 64 * 1024
_CLIENT_GONE = 499
"""Status of the answer nobody reads, to a client that disconnected (nginx's convention)."""
_BATCH_STATUS = {
    "missing_file": 400,
    "invalid_file_format": 400,
    "invalid_webhook_url": 400,
    "invalid_parameter": 400,
    "active_job_exists": 409,
    "file_too_large": 413,
    "job_not_found": 404,
    "download_limit_exceeded": 403,
    "job_not_completed": 409,
    "job_not_active": 409,
}
_FAULTS: dict[str, tuple[int, str, bool]] = {
    "429": (429, "API rate limit exceeded", True),
    "429_no_retry_after": (429, "API rate limit exceeded", False),
    "500": (500, "Internal server error", False),
    "502": (502, "Bad gateway: an upstream service did not answer", False),
    "503": (503, "Service temporarily unavailable", True),
}


def error_response(
    status: int,
    message: str,
    *,
    error_code: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render the published error body ``{"code", "message", ...}``."""
    body: dict[str, Any] = {"code": status, "message": message}
    if error_code is not None:
        body["error_code"] = error_code
    if extra:
        body.update(extra)
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


class ApiError(Exception):
    """An error response raised from inside an endpoint."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.extra = extra

    @classmethod
    def from_batch(cls, exc: BatchError) -> ApiError:
        """Map a job-store refusal to its published status."""
        return cls(_BATCH_STATUS.get(exc.error_code, 400), exc.message, error_code=exc.error_code)

    def response(self) -> Response:
        """Render this error."""
        return error_response(
            self.status, self.message, error_code=self.error_code, extra=self.extra
        )


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


async def _close_connection(scope: Scope, receive: Receive) -> bool:
    """Close the client connection (our server's extension) and wait for the disconnect.

    Returns False when the app does not run behind our server and cannot close it.
    """
    close = scope.get("extensions", {}).get(CLOSE_CONNECTION)
    if close is None:
        return False
    close()
    while (await receive())["type"] != "http.disconnect":
        pass
    return True


class _DropConnection(Response):
    """Close the connection without answering (a ``drop`` fault)."""

    def __init__(self) -> None:
        super().__init__(b"", 500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await _close_connection(scope, receive):  # in-process: fail loudly instead
            msg = "sandbox fault: connection dropped"
            raise ConnectionAbortedError(msg)


class _ResultFile(Response):
    """Stream a result file from disk, optionally corrupted or cut off (download faults)."""

    def __init__(self, download: Download, headers: dict[str, str], fault: FaultKind | None):
        headers = {**headers, "Content-Length": str(download.size)}
        super().__init__(None, 200, headers=headers, media_type="application/gzip")
        self._download = download
        self._fault = fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = self._download.size
        limit = size // 2 if self._fault == "truncate_download" else size
        flip = size // 2 if self._fault == "corrupt_download" else -1
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        sent = 0
        async with await anyio.open_file(self._download.path, "rb") as fh:
            while sent < limit:
                chunk = await fh.read(min(_CHUNK, limit - sent))
                if not chunk:
                    break
                if sent <= flip < sent + len(chunk):
                    mutable = bytearray(chunk)
                    mutable[flip - sent] ^= 0xFF
                    chunk = bytes(mutable)
                sent += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self._fault == "truncate_download" and await _close_connection(scope, receive):
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


Handler = Callable[[Request, Account, FaultKind | None], Awaitable[Response]]


class _Api:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.latency = state.config.latency_ms / 1000
        self.slow = state.config.slow_ms / 1000
        self.openapi = orjson.dumps(openapi_document())

    # -- the gate ----------------------------------------------------------------------------

    def endpoint(self, handler: Handler, *, download: bool = False) -> Callable[..., Any]:
        async def run(request: Request) -> Response:
            return await self.gate(request, handler, download=download)

        return run

    async def gate(self, request: Request, handler: Handler, *, download: bool) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        accounts = self.state.accounts
        key = request.query_params.get("api_key")
        account = accounts.lookup(key)
        if account is None:
            message = "Invalid API key" if key else "Missing API key (pass it as ?api_key=...)"
            return error_response(401, message, headers=accounts.peek(None).headers())
        if not account.access:
            message = "Access denied: this API key does not have access to the MarketMatch API"
            return error_response(403, message, headers=accounts.peek(account).headers())
        admission = accounts.admit(account)
        if admission.verdict != "ok":
            headers = admission.limits.headers()
            headers["Retry-After"] = str(admission.retry_after)
            message = (
                "API rate limit exceeded"
                if admission.verdict == "rate_limited"
                else "Monthly API quota exhausted"
            )
            return error_response(429, message, headers=headers)
        fault = self.state.faults.next_fault(request.url.path, download=download)
        if fault == "slow":
            await asyncio.sleep(self.slow)
        elif fault == "drop":
            return _DropConnection()
        elif fault is not None and fault not in SERVED_KINDS:
            return self._fault(fault, admission.limits)
        limits = accounts.spend(account)
        try:
            response = await handler(request, account, fault)
        except ApiError as exc:
            response = exc.response()
        except BatchError as exc:
            response = ApiError.from_batch(exc).response()
        except ClientDisconnect:
            # The client went away before its body was read (it gave up on a slow answer):
            # nothing went wrong on our side, and this answer is never delivered.
            response = Response(status_code=_CLIENT_GONE)
        response.headers.update(limits.headers())
        return response

    @staticmethod
    def _fault(fault: FaultKind, limits: Limits) -> Response:
        status, message, retry_after = _FAULTS[fault]
        headers = limits.headers()
        headers["X-Sandbox-Fault"] = fault
        if retry_after:
            headers["Retry-After"] = "1"
        return error_response(status, message, headers=headers)

    # -- online ranking ----------------------------------------------------------------------

    async def dealers_rank(
        self, request: Request, account: Account, fault: FaultKind | None
    ) -> Response:
        body = await _read_json_body(request)
        try:
            vin, dealers = parse_dealers_request(body)
        except InvalidRequestError as exc:
            raise ApiError(400, exc.message) from None
        return _ranking(self.state.market.rank_dealers(vin, dealers), _echo(request, fault))

    async def vins_rank(
        self, request: Request, account: Account, fault: FaultKind | None
    ) -> Response:
        body = await _read_json_body(request)
        try:
            dealer, vins = parse_vins_request(body)
        except InvalidRequestError as exc:
            raise ApiError(400, exc.message) from None
        return _ranking(self.state.market.rank_vins(dealer, vins), _echo(request, fault))

    # -- batch -------------------------------------------------------------------------------

    async def submit_job(
        self, request: Request, account: Account, fault: FaultKind | None
    ) -> Response:
        config = self.state.config
        cap = config.max_file_bytes
        too_large = ApiError(
            413,
            f"The uploaded file exceeds the maximum allowed size of {config.max_file_mb:g} MB",
            error_code="file_too_large",
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap + _FORM_OVERHEAD:
            await drain(request.stream(), _DRAIN_BYTES)
            raise too_large
        target = self.state.jobs.upload_path()
        try:
            try:
                form = await read_upload(
                    request.stream(),
                    request.headers.get("content-type", ""),
                    target=target,
                    max_file_bytes=cap,
                    field_limits=_FIELD_LIMITS,
                    drain_bytes=_DRAIN_BYTES,
                )
            except FileTooLargeError:
                raise too_large from None
            except MalformedUploadError as exc:
                message = f"The file field is missing from the multipart form: {exc}"
                raise ApiError(400, message, error_code="missing_file") from None
            return await self._create_job(request, account, form, target)
        finally:
            target.unlink(missing_ok=True)

    async def _create_job(
        self,
        request: Request,
        account: Account,
        form: UploadForm,
        upload: Path,
    ) -> Response:
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= _IDEMPOTENCY_MAX:
            message = f"Idempotency-Key must be 1 to {_IDEMPOTENCY_MAX} characters"
            raise ApiError(400, message, error_code="invalid_parameter")
        if form.too_long:
            name = form.too_long[0]
            message = f"{name} exceeds the maximum length of {_FIELD_LIMITS[name]} characters"
            raise ApiError(400, message, error_code="invalid_parameter")
        if form.file_size is None:
            message = "The file field is missing from the multipart form"
            raise ApiError(400, message, error_code="missing_file")
        fields = form.fields
        webhook_url = fields.get("webhook_url") or None
        if webhook_url is not None:
            allow = self.state.config.allow_local_webhooks
            problem = await run_in_threadpool(check_webhook_url, webhook_url, allow_local=allow)
            if problem is not None:
                raise ApiError(400, problem, error_code="invalid_webhook_url")
        if form.head != b"\x1f\x8b":
            message = "The file is not gzip-compressed; upload a .csv.gz (plain CSV is rejected)"
            raise ApiError(400, message, error_code="invalid_file_format")
        body, created = self.state.jobs.submit(
            account.name,
            upload,
            client_reference=fields.get("client_reference") or None,
            webhook_url=webhook_url,
            webhook_secret=fields.get("webhook_secret") or None,
            idempotency_key=idempotency_key,
        )
        headers = None if created else {"Idempotent-Replayed": "true"}
        return _json(body, 202, headers)

    async def list_jobs(
        self, request: Request, account: Account, fault: FaultKind | None
    ) -> Response:
        query = request.query_params
        page = self.state.jobs.list(
            account.name,
            status=query.get("status"),
            rows=query.get("rows"),
            cursor=query.get("cursor"),
        )
        return _json(page)

    async def job_status(
        self, request: Request, account: Account, fault: FaultKind | None
    ) -> Response:
        return _json(self.state.jobs.status(account.name, request.path_params["job_id"]))

    async def download(
        self, request: Request, account: Account, fault: FaultKind | None
    ) -> Response:
        download = self.state.jobs.download(account.name, request.path_params["job_id"])
        headers = {
            "Content-Disposition": 'attachment; filename="output.csv.gz"',
            "X-Download-Count": str(download.download_count),
            "X-Max-Downloads": str(MAX_DOWNLOADS),
            "X-Remaining-Downloads": str(download.remaining_downloads),
            "X-File-Checksum": download.checksum,
        }
        return _ResultFile(download, headers, fault)

    # -- outside the gate --------------------------------------------------------------------

    async def openapi_json(self, request: Request) -> Response:
        headers = self.state.accounts.peek(None).headers()
        return Response(self.openapi, headers=headers, media_type="application/json")

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
        method, path = request.method, request.url.path
        if exc.status_code == 404:
            message = f"Not found: {method} {path}"
        elif exc.status_code == 405:
            message = f"Method {method} is not allowed for {path}"
        else:
            message = str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        headers.update(self._peek(request).headers())
        return error_response(exc.status_code, message, headers=headers)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        headers = self._peek(request).headers()
        return error_response(500, "Internal server error", headers=headers)

    def _peek(self, request: Request) -> Limits:
        accounts = self.state.accounts
        return accounts.peek(accounts.lookup(request.query_params.get("api_key")))


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path (Starlette names only the first's)."""
    routes = request.app.router.routes
    return ", ".join(
        sorted(
            {
                method
                for route in routes
                if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
                for method in route.methods or ()
            }
        )
    )


async def _read_json_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _MAX_JSON_BODY:
        raise ApiError(413, f"Request body exceeds {_MAX_JSON_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_JSON_BODY:
            raise ApiError(413, f"Request body exceeds {_MAX_JSON_BODY} bytes")
    return bytes(body)


def _echo(request: Request, fault: FaultKind | None) -> str | None:
    """Return the request's API key when the ``echo_key`` fault asks to quote it back."""
    return request.query_params.get("api_key") if fault == "echo_key" else None


def _ranking(outcome: RankOutcome, echo: str | None = None) -> Response:
    if isinstance(outcome, Ranked):
        failed = outcome.failed_items
        if echo is not None:
            message = f"VIN could not be decoded (request key {echo})"
            failed = [item | {"error_message": message} for item in failed]
        return _json({"ranked_matches": outcome.ranked_matches, "failed_items": failed})
    extra = {
        name: value
        for name in ("failed_vins", "missing_dealers", "multi_location_sources")
        if (value := getattr(outcome, name))
    }
    raise ApiError(422, outcome.message, extra=extra)


def create_app(state: SandboxState) -> Starlette:
    """Build the ASGI app over *state* (control routes only with ``enable_control``)."""
    api = _Api(state)
    routes = [
        Route("/v2/marketmatch/dealers/rank", api.endpoint(api.dealers_rank), methods=["POST"]),
        Route("/v2/marketmatch/vins/rank", api.endpoint(api.vins_rank), methods=["POST"]),
        Route(JOBS_PATH, api.endpoint(api.submit_job), methods=["POST"]),
        Route(JOBS_PATH, api.endpoint(api.list_jobs), methods=["GET"]),
        Route(f"{JOBS_PATH}/{{job_id}}", api.endpoint(api.job_status), methods=["GET"]),
        Route(
            f"{JOBS_PATH}/{{job_id}}/download",
            api.endpoint(api.download, download=True),
            methods=["POST"],
        ),
        Route("/openapi.json", api.openapi_json, methods=["GET"]),
    ]
    if state.config.enable_control:
        routes += control_routes(state)
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: api.http_error, Exception: api.server_error},
    )
    app.router.redirect_slashes = False
    return app
