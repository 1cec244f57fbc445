"""The /_sandbox control API, the framework-free error shapes, and the app's wiring."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mm_pipeline.sandbox import Sandbox, SandboxConfig, running
from mm_pipeline.sandbox._app import create_app
from mm_pipeline.sandbox._state import SandboxState
from tests.conftest import SANDBOX_OPTIONS, TLS, client_for, csv_gz, wait_until

JOBS = "/v2/batch/marketmatch/rank/jobs"
ROWS = [("WP1BE2AY5PDA28064", 20000, 3000, "mbofaugusta.com", "30907")]


@pytest.fixture
def control(clean_sandbox: Sandbox) -> Iterator[httpx.Client]:
    """A client on the control API (no key needed)."""
    base_url = clean_sandbox.base_url + "/_sandbox"
    with httpx.Client(base_url=base_url, timeout=30, verify=TLS) as client:
        yield client


def test_fault_queue_over_http(api: httpx.Client, control: httpx.Client) -> None:
    """POST /_sandbox/faults queues a fault; GET lists what is pending; it is then served."""
    queued = control.post("/faults", json={"kind": "502", "count": 2, "path_prefix": JOBS})
    assert queued.json() == {"pending": [{"kind": "502", "count": 2, "path_prefix": JOBS}]}
    assert api.get(JOBS).status_code == 502
    assert control.get("/faults").json()["pending"][0]["count"] == 1
    assert api.get(JOBS).status_code == 502
    assert control.get("/faults").json() == {"pending": []}


@pytest.mark.parametrize(
    "body",
    [{"kind": "teapot"}, {"kind": "500", "count": 0}, {"kind": "500", "count": "2"}, [1]],
)
def test_bad_fault_requests_are_400(control: httpx.Client, body: Any) -> None:
    """Unknown kinds, bad counts and non-object bodies are refused with 400."""
    response = control.post("/faults", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_manual_job_transitions_over_http(api: httpx.Client, control: httpx.Client) -> None:
    """settings hold jobs; /complete releases one; /fail fails one; a finished job cannot fail."""
    assert control.post("/settings", json={"hold_jobs": True}).json()["hold_jobs"] is True
    job_id = api.post(JOBS, files={"file": ("a.csv.gz", csv_gz(ROWS))}).json()["job_id"]
    held = wait_until(lambda: control.get(f"/jobs/{job_id}").json(), lambda s: "item_count" in s)
    assert held["status"] == "PROCESSING"
    assert control.post(f"/jobs/{job_id}/complete").json()["status"] == "COMPLETED"
    refused = control.post(f"/jobs/{job_id}/fail")
    assert refused.status_code == 409
    second = api.post(JOBS, files={"file": ("a.csv.gz", csv_gz(ROWS))}).json()["job_id"]
    failed = control.post(f"/jobs/{second}/fail", json={"error_message": "simulated"}).json()
    assert (failed["status"], failed["error_code"], failed["error_message"]) == (
        "FAILED",
        "processing_failed",
        "simulated",
    )
    assert control.post("/jobs/nope/complete").status_code == 404


def test_reset_over_http(api: httpx.Client, control: httpx.Client) -> None:
    """POST /_sandbox/reset forgets jobs and restores the configured job timing."""
    control.post("/settings", json={"hold_jobs": True, "job_seconds": 5})
    api.post(JOBS, files={"file": ("a.csv.gz", csv_gz(ROWS))})
    assert control.post("/reset").json() == {"reset": True}
    assert api.get(JOBS).json()["total"] == 0
    assert control.post("/settings", json={}).json() == {"hold_jobs": False, "job_seconds": 0.2}


def test_settings_validation(control: httpx.Client) -> None:
    """Settings must be a boolean hold and a non-negative number of seconds."""
    assert control.post("/settings", json={"hold_jobs": "yes"}).status_code == 400
    assert control.post("/settings", json={"job_seconds": -1}).status_code == 400
    assert control.post("/settings", content=b"{nope").status_code == 400


def test_control_api_is_off_unless_enabled() -> None:
    """Without enable_control the /_sandbox routes do not exist (404 in the published shape)."""
    with running(**{**SANDBOX_OPTIONS, "enable_control": False}) as sb:
        response = httpx.post(sb.url("/_sandbox/reset"))
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "Not found: POST /_sandbox/reset"}


def test_openapi_has_no_control_routes(api: httpx.Client) -> None:
    """/openapi.json documents the published paths only."""
    paths = set(api.get("/openapi.json").json()["paths"])
    assert paths == {
        "/v2/marketmatch/dealers/rank",
        "/v2/marketmatch/vins/rank",
        JOBS,
        f"{JOBS}/{{job_id}}",
        f"{JOBS}/{{job_id}}/download",
    }


def test_trailing_slash_is_not_redirected(api: httpx.Client) -> None:
    """An unknown variant of a path is a 404 error body, not a framework redirect."""
    response = api.get(JOBS + "/")
    assert response.status_code == 404
    assert response.json()["code"] == 404


class _BrokenMarket:
    def rank_dealers(self, *args: Any) -> Any:
        raise RuntimeError("internal detail that must not leak")

    rank_vins = rank_dealers


async def test_unexpected_exception_is_500_in_published_shape() -> None:
    """An exception inside an endpoint becomes 500 {"code", "message"} without the detail."""
    state = SandboxState(SandboxConfig(), market=_BrokenMarket())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(create_app(state), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            response = await client.post(
                "/v2/marketmatch/dealers/rank",
                params={"api_key": state.api_key},
                json={
                    "vin": {"vin": "WP1BE2AY5PDA28064", "price": 1, "miles": 0},
                    "dealers": [{"source": "a.com"}],
                },
            )
    finally:
        state.close()
    assert response.status_code == 500
    assert response.json() == {"code": 500, "message": "Internal server error"}
    assert "RateLimit-Limit" in response.headers


def test_sandbox_handle_methods(clean_sandbox: Sandbox) -> None:
    """The running() handle exposes the control operations as Python methods."""
    assert repr(clean_sandbox).startswith("Sandbox(base_url='http://127.0.0.1:")
    clean_sandbox.hold_jobs()
    with client_for(clean_sandbox) as client:
        job_id = client.post(JOBS, files={"file": ("a.csv.gz", csv_gz(ROWS))}).json()["job_id"]
    assert clean_sandbox.job(job_id)["status"] == "PROCESSING"
    assert clean_sandbox.fail_job(job_id)["error_code"] == "processing_failed"
    assert clean_sandbox.webhook_deliveries() == []
