"""The exceptions raised by mm_pipeline.

Every exception derives from :class:`MarketMatchError`::

    MarketMatchError
    ├── ConfigurationError           the client is misconfigured (no API key, bad option)
    ├── InvalidInputError            input rows failed validation (also a ValueError)
    ├── APIError                     the API answered with a non-2xx status
    │   ├── InvalidRequestError      400
    │   ├── AuthenticationError      401
    │   ├── PermissionDeniedError    403
    │   ├── NotFoundError            404
    │   ├── ConflictError            409
    │   ├── PayloadTooLargeError     413
    │   ├── UnprocessableError       422
    │   ├── RateLimitError           429
    │   │   └── QuotaExhaustedError  429 for an exhausted monthly quota
    │   └── ServerError              5xx
    ├── TransportError               no usable response (timeout, refused, dropped connection)
    │   └── DeadlineExceededError    the whole request outlasted its deadline (also TimeoutError)
    ├── BudgetExceededError          the run would send, or has sent, more than max_requests
    ├── BatchError                   a batch job could not be run to a verified result
    │   ├── BatchJobFailed           the job ended in FAILED
    │   ├── DownloadError            the result file could not be downloaded
    │   │   ├── ChecksumMismatchError  the downloaded file does not match X-File-Checksum
    │   │   └── CacheStorageError    the cache folder cannot hold the result (read-only, full)
    │   └── BatchTimeoutError        the job did not finish within the deadline
    └── WebhookVerificationError     a webhook's signature or timestamp is not valid

An error may carry :attr:`MarketMatchError.hints`: each a :class:`Hint` naming the option its
message suggests both as a Python argument (as the message says it) and as a command-line flag,
so that the ``mm-pipeline`` command can say ``--on-invalid fail`` where a script would pass
``on_invalid='fail'``.

No message, attribute or repr carries the API key: URLs are stored redacted, and the client
scrubs the key from server-provided text before it builds an exception. Every exception
pickles and unpickles with its attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "BATCH_ERROR_CODES",
    "APIError",
    "AuthenticationError",
    "BatchError",
    "BatchJobFailed",
    "BatchTimeoutError",
    "BudgetExceededError",
    "CacheStorageError",
    "ChecksumMismatchError",
    "ConfigurationError",
    "ConflictError",
    "DeadlineExceededError",
    "DownloadError",
    "Hint",
    "InvalidInputError",
    "InvalidRequestError",
    "MarketMatchError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QuotaExhaustedError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "UnprocessableError",
    "WebhookVerificationError",
    "api_error_class",
]

#: Machine-readable error codes published by the batch API (and the job ``error_code``).
BATCH_ERROR_CODES: frozenset[str] = frozenset(
    {
        "missing_file",
        "invalid_file_format",
        "invalid_webhook_url",
        "invalid_parameter",
        "active_job_exists",
        "file_too_large",
        "job_not_found",
        "download_limit_exceeded",
        "job_not_completed",
        "processing_failed",
    }
)
_CODE_TOKEN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


@dataclass(frozen=True)
class Hint:
    """An option an error's message suggests, spelled for Python and for the command line.

    The message spells it as ``argument``; the ``mm-pipeline`` command shows ``flag`` instead.

    Examples
    --------
    >>> hint = Hint(argument="on_invalid='fail'", flag="--on-invalid fail")
    >>> hint.for_command_line("pass on_invalid='fail' to rank the rest")
    'pass --on-invalid fail to rank the rest'
    """

    argument: str
    flag: str

    def for_command_line(self, text: str) -> str:
        """Return ``text`` with the Python spelling replaced by the flag."""
        return text.replace(self.argument, self.flag)


class MarketMatchError(Exception):
    """Base class of every error raised by mm_pipeline.

    ``hints`` lists the options the message (or a note) suggests, as :class:`Hint` objects.
    """

    hints: tuple[Hint, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default Exception pickling.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ConfigurationError(MarketMatchError):
    """The client is misconfigured: no API key, or an option out of range."""


class InvalidInputError(MarketMatchError, ValueError):
    """Input rows failed validation; ``failure_cases`` names the rows and checks.

    Examples
    --------
    >>> err = InvalidInputError("2 invalid rows", failure_cases=[{"row": 3, "column": "vin"}])
    >>> err.rows
    [{'row': 3, 'column': 'vin'}]
    """

    def __init__(
        self, message: str, *, failure_cases: Any = None, hints: tuple[Hint, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.failure_cases = failure_cases
        self.hints = hints

    @property
    def rows(self) -> Any:
        """The offending rows (row number, column, check, value), as given by the validator."""
        return self.failure_cases


class APIError(MarketMatchError):
    """The API answered with a non-2xx status; carries the published error fields.

    Parameters
    ----------
    message
        The server's ``message`` (or a description when the body had none).
    status
        The HTTP status code.
    method, url
        The request method and its URL, already redacted.
    body
        The decoded JSON error body, if it was a JSON object.
    headers
        The response headers.

    Examples
    --------
    >>> err = APIError("active_job_exists: You already have an active ranking job",
    ...                status=409, body={"code": 409})
    >>> err.status, err.code, err.error_code
    (409, 409, 'active_job_exists')
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str = "",
        url: str = "",
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        body = dict(body or {})
        self.message = message
        self.status = status
        self.method = method
        self.url = url
        self.headers: dict[str, str] = dict(headers or {})
        #: The body's ``code`` field as sent (the published format uses the HTTP status).
        self.code: Any = body.pop("code", None)
        body.pop("message", None)
        self._error_code: Any = body.pop("error_code", None)
        self.failed_vins: list[str] = _as_list(body.pop("failed_vins", None))
        self.missing_dealers: list[dict[str, Any]] = _as_list(body.pop("missing_dealers", None))
        self.multi_location_sources: list[str] = _as_list(body.pop("multi_location_sources", None))
        #: Every other field of the error body.
        self.extras: dict[str, Any] = body

    @property
    def error_code(self) -> str | None:
        """The machine-readable error code, wherever the server put it.

        Looks at ``error_code``, then a non-numeric ``code``, then for a published batch error
        code inside ``message`` (some servers send only the message).
        """
        for candidate in (self._error_code, self.code):
            if isinstance(candidate, str) and candidate and not candidate.isdigit():
                return candidate
        tokens: list[str] = _CODE_TOKEN.findall(self.message)
        return next((t for t in tokens if t in BATCH_ERROR_CODES), None)

    def __str__(self) -> str:
        text = f"HTTP {self.status}: {self.message}"
        code = self.error_code
        if code and code not in self.message:
            text += f" (error_code={code})"
        if self.method or self.url:
            text += f" [{self.method} {self.url}]"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class InvalidRequestError(APIError):
    """400: the request was malformed or a field is invalid."""


class AuthenticationError(APIError):
    """401: the API key is missing or invalid."""


class PermissionDeniedError(APIError):
    """403: the account may not use this API or operation (e.g. no download slot left)."""


class NotFoundError(APIError):
    """404: the resource (e.g. a batch job) does not exist for this account."""


class ConflictError(APIError):
    """409: the request conflicts with current state (e.g. ``active_job_exists``)."""


class PayloadTooLargeError(APIError):
    """413: the upload exceeds the size limit."""


class UnprocessableError(APIError):
    """422: nothing in the request could be ranked; see ``failed_vins`` and friends."""


class RateLimitError(APIError):
    """429: the account's request rate was exceeded; ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class QuotaExhaustedError(RateLimitError):
    """429 for an exhausted monthly quota; ``resets_at`` says when it renews (UTC)."""

    def __init__(self, message: str, *, resets_at: datetime | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.resets_at = resets_at


class ServerError(APIError):
    """5xx: the server failed; 500/502/503/504 are retried before this is raised."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableError,
    429: RateLimitError,
}


def api_error_class(status: int) -> type[APIError]:
    """Return the exception class for an HTTP error status.

    Examples
    --------
    >>> api_error_class(401).__name__, api_error_class(503).__name__, api_error_class(418).__name__
    ('AuthenticationError', 'ServerError', 'APIError')
    """
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, APIError)


class TransportError(MarketMatchError):
    """No usable response: timeout, refused or dropped connection, or a malformed body.

    ``kind`` names the underlying failure (e.g. ``"ReadTimeout"``); the original httpx
    exception is deliberately not chained, because it carries the URL with the key.
    """

    def __init__(self, message: str, *, kind: str, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.method = method
        self.url = url

    def __str__(self) -> str:
        return f"{self.kind}: {self.message} [{self.method} {self.url}]"


class DeadlineExceededError(TransportError, TimeoutError):
    """A whole request (sending, waiting and reading the body) outlasted its deadline.

    Unlike ``timeout``, which bounds each network operation, the deadline bounds the attempt as
    a whole, so a server that trickles its answer cannot hold a call open. Retried like any
    transport failure.

    Examples
    --------
    >>> err = DeadlineExceededError("no complete answer within 8 s", deadline=8.0, method="GET")
    >>> err.kind, err.deadline, isinstance(err, TimeoutError)
    ('DeadlineExceeded', 8.0, True)
    """

    def __init__(self, message: str, *, deadline: float, method: str = "", url: str = "") -> None:
        super().__init__(message, kind="DeadlineExceeded", method=method, url=url)
        self.deadline = deadline


class BudgetExceededError(MarketMatchError):
    """The run's plan, or its requests so far, exceed ``max_requests``; nothing more is sent.

    Raised before anything is sent when the plan needs more than ``max_requests``, or while
    running when retries and re-sends after a 422 reach it (no partial result is returned).
    ``spent`` is the requests sent by then, ``planned`` the plan's figure (when known).

    Examples
    --------
    >>> err = BudgetExceededError("over budget", max_requests=10, planned=12)
    >>> err.max_requests, err.planned, err.spent
    (10, 12, 0)
    """

    def __init__(
        self, message: str, *, max_requests: int, planned: int | None = None, spent: int = 0
    ) -> None:
        super().__init__(message)
        self.message = message
        self.max_requests = max_requests
        self.planned = planned
        self.spent = spent


class BatchError(MarketMatchError):
    """A batch job could not be run to a verified result."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id


class BatchJobFailed(BatchError):  # noqa: N818 (public name fixed by the issue)
    """The batch job ended in ``FAILED``; carries its ``error_code`` and ``error_message``."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.error_code = error_code
        self.error_message = error_message


class DownloadError(BatchError):
    """The result file could not be downloaded (no slot left, cut-off body, ...)."""


class ChecksumMismatchError(DownloadError):
    """The downloaded file's SHA-256 does not match ``X-File-Checksum``."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.expected = expected
        self.actual = actual


class CacheStorageError(DownloadError):
    """The download cache cannot hold a result: the folder is not writable, or the disk is full.

    Raised before any download slot is spent when the folder refuses the file or has too little
    free space, and at once (without spending another slot) when the disk fills during a
    download. ``folder`` is the cache folder and ``reason`` what went wrong; rerun with a usable
    ``cache_dir`` to adopt the job and finish.

    Examples
    --------
    >>> err = CacheStorageError("cannot write", job_id="j1", folder="/cache", reason="read-only")
    >>> err.folder, err.reason
    ('/cache', 'read-only')
    """

    def __init__(
        self, message: str, *, job_id: str | None = None, folder: str = "", reason: str = ""
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.folder = folder
        self.reason = reason


class BatchTimeoutError(BatchError, TimeoutError):
    """The batch job did not finish within the polling deadline."""

    def __init__(
        self, message: str, *, job_id: str | None = None, timeout: float | None = None
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.timeout = timeout


class WebhookVerificationError(MarketMatchError):
    """A webhook's signature, timestamp or body is not valid."""
