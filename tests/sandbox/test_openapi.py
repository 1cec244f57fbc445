"""/openapi.json describes the published contract, and the server keeps to it (schemathesis)."""

from __future__ import annotations

import re
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
from mm_pipeline.sandbox._jobs import _encode_cursor
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


JOBS = "/v2/batch/marketmatch/rank/jobs"


def _cursor_schema(sb: Sandbox) -> dict[str, Any]:
    document = httpx.get(sb.url("/openapi.json")).json()
    (cursor,) = [p for p in document["paths"][JOBS]["get"]["parameters"] if p["name"] == "cursor"]
    schema: dict[str, Any] = cursor["schema"]
    return schema


@pytest.mark.parametrize(
    ("cursor", "valid"),
    [
        (_encode_cursor(0), True),
        (_encode_cursor(123_456_789), True),
        ("", False),  # what schemathesis sent: the schema allowed it, the server refused it
        (_encode_cursor(0) + "!!", False),  # a real cursor with junk the server used to skip
        (_encode_cursor(0)[:4] + "." + _encode_cursor(0)[4:] + ".", False),
        (_encode_cursor(0) + "=", False),
        (_encode_cursor(0) + "\n", False),
    ],
    ids=repr,
)
def test_the_server_accepts_exactly_the_cursors_the_schema_allows_in_form(
    schema_sandbox: Sandbox, cursor: str, valid: bool
) -> None:
    """Empty or non-base64url cursors are outside the schema and refused; the server's own pass."""
    schema = _cursor_schema(schema_sandbox)
    # ECMA-262 semantics: "$" is the end of the text (Python's also matches before a final "\n").
    pattern = schema["pattern"].removesuffix("$") + r"\Z"
    in_schema = len(cursor) >= schema["minLength"] and re.search(pattern, cursor)
    assert bool(in_schema) is valid
    response = httpx.get(
        schema_sandbox.url(JOBS), params={"api_key": schema_sandbox.api_key, "cursor": cursor}
    )
    assert response.status_code == (200 if valid else 400), response.text
    if not valid:
        assert response.json()["error_code"] == "invalid_parameter"
        assert "Malformed cursor" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", JOBS, "GET, HEAD, POST"),
        ("DELETE", JOBS, "GET, HEAD, POST"),
        ("PUT", JOBS + "/some-job", "GET, HEAD"),
        ("GET", JOBS + "/some-job/download", "POST"),
        ("GET", "/v2/marketmatch/dealers/rank", "POST"),
    ],
)
def test_a_405_allows_every_method_the_path_serves(
    schema_sandbox: Sandbox, method: str, path: str, allowed: str
) -> None:
    """``Allow`` names every documented method of the path (GET and POST share the jobs path)."""
    response = httpx.request(
        method, schema_sandbox.url(path), params={"api_key": schema_sandbox.api_key}
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    documented = httpx.get(schema_sandbox.url("/openapi.json")).json()["paths"]
    template = {JOBS + "/some-job": JOBS + "/{job_id}"}.get(path, path)
    template = template.replace("/some-job/", "/{job_id}/")
    assert {m.upper() for m in documented[template]} <= set(allowed.split(", "))
