"""The sandbox control API (``/_sandbox/*``): test hooks beside the fake, moto style.

Not part of the published contract nor of ``/openapi.json``; served only when
``enable_control`` is set (always in ``running()``, ``--enable-control`` for the CLI). No API key
is needed: it is meant for a sandbox on loopback.

==========================================  =======================================================
``POST /_sandbox/reset``                    forget jobs, faults, webhooks, spent tokens and quota
``GET  /_sandbox/faults``                   targeted faults still pending
``POST /_sandbox/faults``                   queue ``{"kind", "count"=1, "path_prefix"="/v2/"}``
``POST /_sandbox/settings``                 ``{"hold_jobs"?: bool, "job_seconds"?: number}``
``GET  /_sandbox/jobs/{id}``                any account's job status and ``sandbox_stats``
``POST /_sandbox/jobs/{id}/complete``       release a job and wait (up to 30 s) until it ends
``POST /_sandbox/jobs/{id}/fail``           ``{"error_code"?, "error_message"?}``: fail it now
``GET  /_sandbox/webhooks``                 every webhook delivery and its attempts
==========================================  =======================================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mm_pipeline.sandbox._faults import parse_fault_kind
from mm_pipeline.sandbox._jobs import BatchError

if TYPE_CHECKING:
    from mm_pipeline.sandbox._state import SandboxState

__all__ = ["control_routes"]

_STATUS = {"job_not_found": 404, "job_not_active": 409}


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"code": status, "message": message}, status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        msg = "the body must be a JSON object"
        raise TypeError(msg)
    return data


Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Endpoint) -> Endpoint:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except BatchError as exc:
            return _error(_STATUS.get(exc.error_code, 400), exc.message)
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            return _error(400, str(exc))

    return run


def control_routes(state: SandboxState) -> list[Route]:
    """Return the ``/_sandbox/*`` routes over *state*."""

    async def reset(request: Request) -> Response:
        await run_in_threadpool(state.reset)
        return _json({"reset": True})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            spec = await _body(request)
            count = spec.get("count", 1)
            prefix = spec.get("path_prefix", "/v2/")
            if not isinstance(count, int) or isinstance(count, bool) or not isinstance(prefix, str):
                msg = "count must be an integer and path_prefix a string"
                raise TypeError(msg)
            state.faults.inject(parse_fault_kind(spec.get("kind")), count=count, path_prefix=prefix)
        pending = [
            {"kind": p.kind, "count": p.count, "path_prefix": p.path_prefix}
            for p in state.faults.pending()
        ]
        return _json({"pending": pending})

    async def settings(request: Request) -> Response:
        spec = await _body(request)
        hold = spec.get("hold_jobs")
        seconds = spec.get("job_seconds")
        if hold is not None and not isinstance(hold, bool):
            msg = "hold_jobs must be a boolean"
            raise TypeError(msg)
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0
        ):
            msg = "job_seconds must be a non-negative number"
            raise TypeError(msg)
        state.jobs.configure(hold=hold, job_seconds=seconds)
        return _json({"hold_jobs": state.jobs.hold, "job_seconds": state.jobs.job_seconds})

    async def job(request: Request) -> Response:
        return _json(state.jobs.inspect(request.path_params["job_id"]))

    async def complete(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        return _json(await run_in_threadpool(state.jobs.complete, job_id))

    async def fail(request: Request) -> Response:
        spec = await _body(request)
        options = {k: str(spec[k]) for k in ("error_code", "error_message") if k in spec}
        return _json(state.jobs.fail(request.path_params["job_id"], **options))

    async def webhooks(request: Request) -> Response:
        return _json({"deliveries": state.webhooks.deliveries()})

    return [
        Route("/_sandbox/reset", _guarded(reset), methods=["POST"]),
        Route("/_sandbox/faults", _guarded(faults), methods=["GET", "POST"]),
        Route("/_sandbox/settings", _guarded(settings), methods=["POST"]),
        Route("/_sandbox/jobs/{job_id}", _guarded(job), methods=["GET"]),
        Route("/_sandbox/jobs/{job_id}/complete", _guarded(complete), methods=["POST"]),
        Route("/_sandbox/jobs/{job_id}/fail", _guarded(fail), methods=["POST"]),
        Route("/_sandbox/webhooks", _guarded(webhooks), methods=["GET"]),
    ]
