"""The exception tree: shape, published fields, error codes, pickling, public names."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

import mm_pipeline as mm
from mm_pipeline._exceptions import BATCH_ERROR_CODES, api_error_class

TREE = [
    (mm.ConfigurationError, mm.MarketMatchError),
    (mm.InvalidInputError, mm.MarketMatchError),
    (mm.InvalidInputError, ValueError),
    (mm.APIError, mm.MarketMatchError),
    (mm.InvalidRequestError, mm.APIError),
    (mm.AuthenticationError, mm.APIError),
    (mm.PermissionDeniedError, mm.APIError),
    (mm.NotFoundError, mm.APIError),
    (mm.ConflictError, mm.APIError),
    (mm.PayloadTooLargeError, mm.APIError),
    (mm.UnprocessableError, mm.APIError),
    (mm.RateLimitError, mm.APIError),
    (mm.QuotaExhaustedError, mm.RateLimitError),
    (mm.ServerError, mm.APIError),
    (mm.TransportError, mm.MarketMatchError),
    (mm.DeadlineExceededError, mm.TransportError),
    (mm.DeadlineExceededError, TimeoutError),
    (mm.BatchError, mm.MarketMatchError),
    (mm.BatchJobFailed, mm.BatchError),
    (mm.DownloadError, mm.BatchError),
    (mm.ChecksumMismatchError, mm.DownloadError),
    (mm.CacheStorageError, mm.DownloadError),
    (mm.BatchTimeoutError, mm.BatchError),
    (mm.BatchTimeoutError, TimeoutError),
    (mm.WebhookVerificationError, mm.MarketMatchError),
]

EXCEPTIONS = [
    mm.ConfigurationError("no key"),
    mm.InvalidInputError("bad rows", failure_cases=[{"row": 1, "column": "vin"}]),
    mm.APIError("teapot", status=418, method="GET", url="http://h/x?api_key=REDACTED"),
    mm.UnprocessableError(
        "Dealer not found",
        status=422,
        body={"code": 422, "missing_dealers": [{"source": "x.com", "zip": "12345"}]},
    ),
    mm.QuotaExhaustedError(
        "Monthly API quota exhausted",
        status=429,
        retry_after=86500.0,
        resets_at=datetime(2027, 2, 1, tzinfo=UTC),
    ),
    mm.TransportError("Server disconnected", kind="RemoteProtocolError", method="POST", url="u"),
    mm.DeadlineExceededError("no answer within 8 s", deadline=8.0, method="GET", url="u"),
    mm.CacheStorageError("cannot write", job_id="j4", folder="/cache", reason="read-only"),
    mm.BatchJobFailed("job failed", job_id="j1", error_code="processing_failed", error_message="x"),
    mm.ChecksumMismatchError("mismatch", job_id="j2", expected="aa", actual="bb"),
    mm.BatchTimeoutError("still processing", job_id="j3", timeout=60.0),
    mm.WebhookVerificationError("bad signature"),
]


@pytest.mark.parametrize(("child", "parent"), TREE, ids=lambda c: c.__name__)
def test_tree(child: type[Exception], parent: type[Exception]) -> None:
    """Every exception sits where the module docstring draws it."""
    assert issubclass(child, parent)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, mm.InvalidRequestError),
        (401, mm.AuthenticationError),
        (403, mm.PermissionDeniedError),
        (404, mm.NotFoundError),
        (409, mm.ConflictError),
        (413, mm.PayloadTooLargeError),
        (422, mm.UnprocessableError),
        (429, mm.RateLimitError),
        (500, mm.ServerError),
        (502, mm.ServerError),
        (503, mm.ServerError),
        (504, mm.ServerError),
        (599, mm.ServerError),
        (405, mm.APIError),
        (418, mm.APIError),
    ],
)
def test_status_classes(status: int, cls: type[mm.APIError]) -> None:
    """Each HTTP status maps to its class; unknown 4xx to APIError itself."""
    assert api_error_class(status) is cls


def test_published_fields_and_extras() -> None:
    """The published extra fields become attributes; unknown fields land in `extras`."""
    err = mm.UnprocessableError(
        "VIN decoding failed for all VINs",
        status=422,
        body={
            "code": 422,
            "message": "ignored: the message argument wins",
            "failed_vins": ["1HGCM82633A004352"],
            "multi_location_sources": ["carvana.com"],
            "request_id": "r-1",
        },
        headers={"X-Request-ID": "r-1"},
    )
    assert err.status == 422
    assert err.code == 422
    assert err.message == "VIN decoding failed for all VINs"
    assert err.failed_vins == ["1HGCM82633A004352"]
    assert err.missing_dealers == []
    assert err.multi_location_sources == ["carvana.com"]
    assert err.extras == {"request_id": "r-1"}
    assert err.headers == {"X-Request-ID": "r-1"}


def test_malformed_extras_are_tolerated() -> None:
    """Extras of the wrong type are ignored rather than exploded into characters."""
    err = mm.UnprocessableError(
        "x", status=422, body={"failed_vins": "1HGCM82633A004352", "missing_dealers": None}
    )
    assert err.failed_vins == []
    assert err.missing_dealers == []


@pytest.mark.parametrize(
    ("message", "body", "expected"),
    [
        (
            "You already have an active job",
            {"error_code": "active_job_exists"},
            "active_job_exists",
        ),
        ("busy", {"code": "active_job_exists"}, "active_job_exists"),
        ("active_job_exists: You already have an active job", {"code": 409}, "active_job_exists"),
        ("All 3 download slots used (download_limit_exceeded)", {}, "download_limit_exceeded"),
        ("Job not found: job_not_found", {"code": "404"}, "job_not_found"),
        ("Dealer not found", {"code": 422}, None),
        ("an unknown_snake_case word", {}, None),
    ],
)
def test_error_code_is_found_wherever_it_was_sent(
    message: str, body: dict[str, object], expected: str | None
) -> None:
    """`error_code` reads the field, a textual `code`, or a published code inside `message`."""
    assert mm.APIError(message, status=409, body=body).error_code == expected


def test_every_published_batch_code_is_known() -> None:
    """The codes of the published batch error tables are all recognised in messages."""
    for code in BATCH_ERROR_CODES:
        assert mm.APIError(f"failed: {code}.", status=400).error_code == code


def test_str_names_status_message_code_and_redacted_request() -> None:
    """str() says what happened and to which request, without the key."""
    err = mm.ConflictError(
        "You already have an active ranking job",
        status=409,
        method="POST",
        url="http://h/v2/batch/marketmatch/rank/jobs?api_key=REDACTED",
        body={"error_code": "active_job_exists"},
    )
    text = str(err)
    assert text.startswith("HTTP 409: You already have an active ranking job")
    assert "(error_code=active_job_exists)" in text
    assert text.endswith("[POST http://h/v2/batch/marketmatch/rank/jobs?api_key=REDACTED]")
    assert repr(err) == (
        "ConflictError(status=409, message='You already have an active ranking job')"
    )


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_pickle_round_trip(exc: mm.MarketMatchError) -> None:
    """Every exception survives pickling with its attributes (keyword-only constructors)."""
    clone = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    assert vars(clone) == vars(exc)


def test_invalid_input_error_rows() -> None:
    """InvalidInputError keeps the failure cases and exposes them as `rows`."""
    cases = [{"row": 4, "column": "price", "check": "greater_than(0)", "value": "-1"}]
    err = mm.InvalidInputError("1 invalid row", failure_cases=cases)
    assert err.rows is cases
    assert str(err) == "1 invalid row"
    assert isinstance(err, ValueError)


TRANSPORT_NAMES = sorted(
    {"MarketMatchClient", "RequestStats", "Session"}
    | {name for name in mm.__all__ if name.endswith(("Error", "Failed"))}
)


@pytest.mark.parametrize("name", TRANSPORT_NAMES)
def test_public_names_say_mm_pipeline(name: str) -> None:
    """Re-exported classes report `mm_pipeline` as their module, as httpx's do."""
    assert name in mm.__all__
    assert getattr(mm, name).__module__ == "mm_pipeline"


@pytest.mark.parametrize(
    "name", ["rank_dealers", "arank_dealers", "cross_pairs", "plan", "normalize", "assign"]
)
def test_public_functions_say_mm_pipeline(name: str) -> None:
    """Re-exported functions report `mm_pipeline` too (reprs, docs, pickling by reference)."""
    function = getattr(mm, name)
    assert function.__module__ == "mm_pipeline"
    assert pickle.loads(pickle.dumps(function)) is function  # noqa: S301 (our own bytes)
