"""/openapi.json describes the published contract, and the server keeps to it (schemathesis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from mm_pipeline.sandbox import Sandbox, running
from tests.conftest import SANDBOX_OPTIONS

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def schema_sandbox() -> Iterator[Sandbox]:
    """A sandbox of its own, so generated jobs do not leak into other tests."""
    with running(**{**SANDBOX_OPTIONS, "hold_jobs": True}) as sb:
        yield sb


# These take only a free-form string path parameter: no request to them is invalid input.
NOTHING_TO_NEGATE = {
    "GET /v2/batch/marketmatch/rank/jobs/{job_id}",
    "POST /v2/batch/marketmatch/rank/jobs/{job_id}/download",
}


def operations(sb: Sandbox, mode: GenerationMode) -> list[Any]:
    schema = schemathesis.openapi.from_url(sb.url("/openapi.json"))
    ops = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        ops.append(result.ok())
    assert len(ops) == 6
    if mode == GenerationMode.NEGATIVE:
        ops = [op for op in ops if op.label not in NOTHING_TO_NEGATE]
    return ops


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_server_conforms_to_its_schema(schema_sandbox: Sandbox, mode: GenerationMode) -> None:
    """Generated requests never get a 5xx nor a response outside the documented schema."""
    calls: list[int] = []
    for operation in operations(schema_sandbox, mode):
        strategy = operation.as_strategy(mode, query={"api_key": schema_sandbox.api_key})

        @given(case=strategy)
        @settings(
            max_examples=10,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call_and_validate(checks=CHECKS)
            calls.append(response.status_code)

        check()
    assert len(calls) >= 40
    assert all(status < 500 for status in calls)


def test_document_is_openapi_31(schema_sandbox: Sandbox) -> None:
    """/openapi.json is an OpenAPI 3.1 document with the api_key query scheme."""
    document = httpx.get(schema_sandbox.url("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["api_key"] == {
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
    }
    jobs = document["paths"]["/v2/batch/marketmatch/rank/jobs"]
    assert set(jobs) == {"get", "post"}
    assert set(jobs["post"]["responses"]) >= {"202", "400", "409", "413"}
