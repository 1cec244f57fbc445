"""The OpenAPI 3.1 document of the published MarketMatch contract, served at ``/openapi.json``.

Hand-written from the published text: the six operations, their bodies, responses, error bodies
and headers. The sandbox's control API (``/_sandbox/*``) is deliberately not part of it.
"""

from __future__ import annotations

from typing import Any

from mm_pipeline.sandbox._jobs import CURSOR_PATTERN

__all__ = ["openapi_document"]

_JSON = "application/json"
_INT64_MAX = 2**63 - 1
_LIMIT_HEADERS = {
    "RateLimit-Limit": ("integer", "Requests per second allowed for the account"),
    "RateLimit-Remaining": ("integer", "Requests left in the current rate-limit window"),
    "RateLimit-Reset-Time": ("string", "When the rate-limit window is full again (ISO 8601)"),
    "Quota-Limit": ("integer", "Calls allowed per calendar month"),
    "Quota-Remaining": ("integer", "Calls left this month"),
    "Quota-Reset-Time": ("string", "When the monthly quota resets (ISO 8601)"),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _headers(*extra: str) -> dict[str, Any]:
    headers: dict[str, Any] = {
        name: {"description": text, "schema": {"type": kind}}
        for name, (kind, text) in _LIMIT_HEADERS.items()
    }
    for name in extra:
        headers[name] = {"$ref": f"#/components/headers/{name}"}
    return headers


def _error(description: str, *extra_headers: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _headers(*extra_headers),
        "content": {_JSON: {"schema": _ref("Error")}},
    }


def _ok(description: str, schema: str, *extra_headers: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _headers(*extra_headers),
        "content": {_JSON: {"schema": _ref(schema)}},
    }


def _common_errors() -> dict[str, Any]:
    return {
        "401": _error("Missing or invalid API key"),
        "403": _error("Access denied to MarketMatch API"),
        "429": _error("Rate limit exceeded or monthly quota exhausted", "Retry-After"),
        "500": _error("Internal server error"),
        "502": _error("Bad gateway"),
        "503": _error("Service unavailable", "Retry-After"),
    }


def _job_id_param() -> dict[str, Any]:
    return {
        "name": "job_id",
        "in": "path",
        "required": True,
        "description": "The job identifier returned by the Submit endpoint",
        "schema": {"type": "string"},
    }


def _schemas() -> dict[str, Any]:
    score = {"type": "number", "minimum": 400, "maximum": 3000}
    nullable_string = {"type": ["string", "null"]}
    return {
        "VINSpec": {
            "type": "object",
            "required": ["vin", "price", "miles"],
            "properties": {
                "vin": {
                    "type": "string",
                    "minLength": 17,
                    "maxLength": 17,
                    "description": "17-character VIN",
                },
                "price": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": _INT64_MAX,
                    "description": "Price in USD",
                },
                "miles": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": _INT64_MAX,
                    "description": "Mileage",
                },
            },
        },
        "DealerSpec": {
            "type": "object",
            "required": ["source"],
            "properties": {
                "source": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Dealer website domain",
                },
                "zip": {
                    "type": ["string", "null"],
                    "minLength": 5,
                    "maxLength": 5,
                    "description": "5-character ZIP code (required for multi-location dealers); "
                    "null means absent",
                },
                "mc_location_id": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "description": "MarketCheck location ID (alternative to zip); "
                    "null means absent",
                },
            },
        },
        "DealersRankRequest": {
            "type": "object",
            "required": ["vin", "dealers"],
            "properties": {
                "vin": _ref("VINSpec"),
                "dealers": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 100,
                    "items": _ref("DealerSpec"),
                },
            },
        },
        "VINsRankRequest": {
            "type": "object",
            "required": ["dealer", "vins"],
            "properties": {
                "dealer": _ref("DealerSpec"),
                "vins": {"type": "array", "minItems": 1, "maxItems": 20, "items": _ref("VINSpec")},
            },
        },
        "RankedMatch": {
            "type": "object",
            "required": [
                "vin",
                "price",
                "miles",
                "source",
                "zip",
                "mc_location_id",
                "vin_score",
                "dealer_ymm_score",
                "vin_rank",
            ],
            "properties": {
                "vin": {"type": "string"},
                "price": {"type": "integer"},
                "miles": {"type": "integer"},
                "source": {"type": "string"},
                "zip": {"type": "string"},
                "mc_location_id": {"type": "string"},
                "vin_score": score,
                "dealer_ymm_score": score,
                "vin_rank": {"type": "integer", "minimum": 1},
            },
        },
        "FailedMatch": {
            "type": "object",
            "required": [
                "vin",
                "price",
                "miles",
                "source",
                "vin_score",
                "dealer_ymm_score",
                "vin_rank",
            ],
            "properties": {
                "vin": {"type": "string"},
                "price": {"type": "integer"},
                "miles": {"type": "integer"},
                "source": {"type": "string"},
                "zip": nullable_string,
                "mc_location_id": nullable_string,
                "vin_score": {"type": "null"},
                "dealer_ymm_score": {"type": "null"},
                "vin_rank": {"type": "null"},
            },
        },
        "MarketMatchResponse": {
            "type": "object",
            "required": ["ranked_matches", "failed_items"],
            "properties": {
                "ranked_matches": {"type": "array", "items": _ref("RankedMatch")},
                "failed_items": {"type": "array", "items": _ref("FailedMatch")},
            },
        },
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status code"},
                "message": {"type": "string"},
                "error_code": {"type": "string", "description": "Batch error code"},
                "failed_vins": {"type": "array", "items": {"type": "string"}},
                "missing_dealers": {"type": "array", "items": {"type": "object"}},
                "multi_location_sources": {"type": "array", "items": {"type": "string"}},
            },
        },
        "JobCreated": {
            "type": "object",
            "required": ["job_id", "status", "created_at"],
            "properties": {
                "job_id": {"type": "string", "format": "uuid"},
                "status": {"type": "string", "enum": ["PROCESSING", "COMPLETED", "FAILED"]},
                "client_reference": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "JobStatus": {
            "type": "object",
            "required": ["job_id", "status", "progress_percent", "created_at"],
            "properties": {
                "job_id": {"type": "string", "format": "uuid"},
                "status": {"type": "string", "enum": ["PROCESSING", "COMPLETED", "FAILED"]},
                "progress_percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "item_count": {"type": "integer", "minimum": 0},
                "successful_count": {"type": "integer", "minimum": 0},
                "failed_count": {"type": "integer", "minimum": 0},
                "client_reference": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "completed_at": {"type": "string", "format": "date-time"},
                "download_available": {"type": "boolean"},
                "download_count": {"type": "integer", "minimum": 0},
                "max_downloads": {"type": "integer"},
                "remaining_downloads": {"type": "integer", "minimum": 0},
                "error_code": {"type": "string"},
                "error_message": {"type": "string"},
            },
        },
        "JobList": {
            "type": "object",
            "required": ["jobs", "total", "rows"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("JobStatus")},
                "total": {"type": "integer", "minimum": 0},
                "next_cursor": {"type": "string"},
                "rows": {"type": "integer", "minimum": 1, "maximum": 100},
            },
        },
        "JobSubmission": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "Gzip-compressed CSV with vin, price, miles, source, zip",
                },
                "client_reference": {"type": "string", "maxLength": 255},
                "webhook_url": {"type": "string", "maxLength": 2048},
                "webhook_secret": {"type": "string", "maxLength": 512},
            },
        },
    }


def _rank_operation(summary: str, request: str, op_id: str) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": summary,
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(request)}}},
        "responses": {
            "200": _ok("Ranked matches and failed items", "MarketMatchResponse"),
            "400": _error("Invalid JSON, missing required fields, malformed request"),
            **_common_errors(),
            "413": _error("Request body too large"),
            "422": _error(
                "VIN decoding failed for all VINs, dealer not found, multi-location dealer "
                "without ZIP"
            ),
        },
    }


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI document (a fresh dict each call).

    Examples
    --------
    >>> doc = openapi_document()
    >>> doc["openapi"], sorted(doc["paths"])[0]
    ('3.1.0', '/v2/batch/marketmatch/rank/jobs')
    """
    jobs = "/v2/batch/marketmatch/rank/jobs"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MarketMatch API (sandbox)",
            "version": "2",
            "description": "Vehicle-dealer ranking: online rank endpoints and batch jobs.",
        },
        "security": [{"api_key": []}],
        "paths": {
            "/v2/marketmatch/dealers/rank": {
                "post": _rank_operation(
                    "Rank dealers for a specific vehicle", "DealersRankRequest", "rankDealers"
                )
            },
            "/v2/marketmatch/vins/rank": {
                "post": _rank_operation(
                    "Rank vehicles for a specific dealer", "VINsRankRequest", "rankVins"
                )
            },
            jobs: {
                "post": {
                    "operationId": "submitJob",
                    "summary": "Submit a CSV file of vehicle data for batch ranking",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"multipart/form-data": {"schema": _ref("JobSubmission")}},
                    },
                    "responses": {
                        "202": _ok("Job accepted", "JobCreated"),
                        "400": _error(
                            "missing_file, invalid_file_format, invalid_webhook_url or "
                            "invalid_parameter"
                        ),
                        **_common_errors(),
                        "409": _error("active_job_exists"),
                        "413": _error("file_too_large"),
                    },
                },
                "get": {
                    "operationId": "listJobs",
                    "summary": "List your batch ranking jobs",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "enum": ["all", "active", "completed", "failed"],
                                "default": "all",
                            },
                        },
                        {
                            "name": "rows",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 100,
                                "default": 20,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "required": False,
                            "description": (
                                "Opaque cursor from a previous response's next_cursor; omit it "
                                "for the first page (an empty cursor is malformed)"
                            ),
                            "schema": {"type": "string", "minLength": 1, "pattern": CURSOR_PATTERN},
                        },
                    ],
                    "responses": {
                        "200": _ok("One page of jobs, newest first", "JobList"),
                        "400": _error("invalid_parameter: bad status filter, rows or cursor"),
                        **_common_errors(),
                    },
                },
            },
            f"{jobs}/{{job_id}}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "Check the status and progress of a job",
                    "parameters": [_job_id_param()],
                    "responses": {
                        "200": _ok("The job's status", "JobStatus"),
                        **_common_errors(),
                        "404": _error("job_not_found"),
                    },
                }
            },
            f"{jobs}/{{job_id}}/download": {
                "post": {
                    "operationId": "downloadJob",
                    "summary": "Download the ranked results of a completed job",
                    "parameters": [_job_id_param()],
                    "responses": {
                        "200": {
                            "description": "The gzip-compressed result CSV",
                            "headers": _headers(
                                "Content-Disposition",
                                "X-Download-Count",
                                "X-Max-Downloads",
                                "X-Remaining-Downloads",
                                "X-File-Checksum",
                            ),
                            "content": {
                                "application/gzip": {
                                    "schema": {"type": "string", "format": "binary"}
                                }
                            },
                        },
                        **_common_errors(),
                        "403": _error("Access denied, or download_limit_exceeded"),
                        "404": _error("job_not_found"),
                        "409": _error("job_not_completed"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"api_key": {"type": "apiKey", "in": "query", "name": "api_key"}},
            "schemas": _schemas(),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer", "minimum": 1},
                },
                "Content-Disposition": {
                    "description": 'attachment; filename="output.csv.gz"',
                    "schema": {"type": "string"},
                },
                "X-Download-Count": {
                    "description": "Downloads consumed, including this one",
                    "schema": {"type": "integer"},
                },
                "X-Max-Downloads": {
                    "description": "Maximum downloads allowed (3)",
                    "schema": {"type": "integer"},
                },
                "X-Remaining-Downloads": {
                    "description": "Downloads remaining after this one",
                    "schema": {"type": "integer"},
                },
                "X-File-Checksum": {
                    "description": "SHA-256 (hex) of the response body",
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                },
            },
        },
    }
