"""Keep the API key out of URLs, messages, reprs and log records.

The key travels as the ``api_key`` query parameter, so every URL that can reach a message or a
log line goes through :func:`redact_url`. Keys in use are registered with
:func:`register_secret`; the :class:`RedactingFilter` installed on the ``mm_pipeline``,
``httpx``, ``httpcore`` and ``stamina`` loggers scrubs them (and any ``api_key=`` value) from
every record those loggers emit, including formatted tracebacks and ``extra`` fields.

A logging filter applies only to the logger it is attached to, not to its children: modules of
this package get their logger from :func:`get_logger`, which attaches the filter.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

import polars as pl

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "get_logger",
    "install_log_redaction",
    "mask",
    "redact",
    "redact_series",
    "redact_url",
    "register_secret",
    "registered_secrets",
    "scrub",
]

REDACTED: Final = "REDACTED"
_API_KEY_PARAM = re.compile(r"(?i)(api_key(?:=|%3D))[^&#\s\"'<>)\]]+")
_LOGGERS: Final = ("mm_pipeline", "httpx", "httpcore", "stamina")
# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def redact_url(url: object) -> str:
    """Return ``str(url)`` with the value of every ``api_key`` query parameter replaced.

    Examples
    --------
    >>> redact_url("https://api.example.com/v2/x?api_key=mc_test_123&rows=5")
    'https://api.example.com/v2/x?api_key=REDACTED&rows=5'
    >>> redact_url('pass api_key="..." or set MARKETCHECK_API_KEY')  # a quoted value is code
    'pass api_key="..." or set MARKETCHECK_API_KEY'
    """
    return _API_KEY_PARAM.sub(rf"\g<1>{REDACTED}", str(url))


def _variants(secret: str) -> set[str]:
    return {v for v in (secret, quote(secret, safe=""), quote(secret)) if v}


def redact(text: str, *secrets: str) -> str:
    """Return ``text`` without any of ``secrets`` (also URL-encoded) or ``api_key=`` values.

    Examples
    --------
    >>> redact("key mc_test_abc rejected (url ...?api_key=other)", "mc_test_abc")
    'key REDACTED rejected (url ...?api_key=REDACTED)'
    """
    # Longest first, across all secrets: a key that is a prefix of another must not leave the
    # other's tail behind.
    for variant in sorted({v for s in secrets for v in _variants(s)}, key=len, reverse=True):
        text = text.replace(variant, REDACTED)
    return redact_url(text)


def scrub(value: Any) -> Any:
    """Return ``value`` with every registered secret removed from each string inside it.

    For server text as it enters: a string, or decoded JSON (lists and dicts, walked).

    Examples
    --------
    >>> register_secret("mc_test_doc_scrub")
    >>> scrub({"error_message": "key mc_test_doc_scrub rejected", "n": [1, "x"]})
    {'error_message': 'key REDACTED rejected', 'n': [1, 'x']}
    """
    if isinstance(value, str):
        return redact(value, *_secrets)
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    return value


def redact_series(values: pl.Series, *, replacement: str = REDACTED) -> pl.Series:
    """Return a String series without registered secrets (also URL-encoded) or ``api_key=`` values.

    Vectorised for server text copied into frames: each secret costs one literal scan of the
    column, and the column is rewritten only when it holds one (almost never).

    Examples
    --------
    >>> import polars as pl
    >>> register_secret("mc_test_doc_series")
    >>> redact_series(pl.Series(["ok", "echo mc_test_doc_series", None, "?api_key=x"])).to_list()
    ['ok', 'echo REDACTED', None, '?api_key=REDACTED']
    """
    for variant in sorted({v for s in _secrets for v in _variants(s)}, key=len, reverse=True):
        if values.str.contains(variant, literal=True).any():
            values = values.str.replace_all(variant, replacement, literal=True)
    if values.str.contains(_API_KEY_PARAM.pattern).any():
        values = values.str.replace_all(_API_KEY_PARAM.pattern, f"${{1}}{replacement}")
    return values


def mask(secret: str) -> str:
    """Return a display form of a secret that shows at most its first four characters.

    Examples
    --------
    >>> mask("mc_test_0123456789abcdef")
    'mc_t…****'
    >>> mask("short")
    '****'
    """
    return f"{secret[:4]}…****" if len(secret) >= 12 else "****"


def register_secret(secret: str) -> None:
    """Scrub ``secret`` from every record of the redacting loggers from now on."""
    global _secrets  # noqa: PLW0603 (one process-wide set of keys in use)
    if not secret:
        return
    with _lock:
        if secret not in _secrets:
            _secrets = (*_secrets, secret)


def registered_secrets() -> tuple[str, ...]:
    """Return the secrets registered so far (for scrubbing text outside logging)."""
    return _secrets


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from a record's message, extras and traceback.

    Parameters
    ----------
    secrets
        Extra secrets for this filter alone; registered secrets are always scrubbed.

    Examples
    --------
    >>> record = logging.makeLogRecord({"msg": "GET %s", "args": ("/x?api_key=k1",)})
    >>> RedactingFilter().filter(record), record.getMessage()
    (True, 'GET /x?api_key=REDACTED')
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._own = tuple(s for s in secrets if s)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every known secret removed."""
        return redact(text, *self._own, *_secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; never drops it.

        The message and each argument are scrubbed where they stand, so ``record.args`` keeps
        its shape for formatters that read it (uvicorn's access log unpacks five). Only when
        the formatted message would still reveal a secret (one assembled from several pieces)
        or cannot be formatted is the record collapsed to its scrubbed text, without args.
        """
        original = record.msg, record.args
        record.msg = self._scrub_arg(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {k: self._scrub_arg(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(self._scrub_arg(a) for a in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = f"{original[0]!r} % {original[1]!r}"
            record.msg, record.args = self.scrub(message), ()
        else:
            if self.scrub(message) != message:
                record.msg, record.args = self.scrub(message), ()
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_info, record.exc_text = None, self.scrub(text)
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, self.scrub(value))
        return True

    def _scrub_arg(self, value: object) -> object:
        """*value* scrubbed: text in place; an object whose text shows a secret as its text."""
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, int | float):
            return value
        try:
            shown = str(value), repr(value)
        except Exception:  # getMessage() will fail too, and the record collapse
            return value
        if any(self.scrub(text) != text for text in shown):
            return self.scrub(shown[0])
        return value


_FILTER: Final = RedactingFilter()


def _attach(logger: logging.Logger) -> logging.Logger:
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def install_log_redaction() -> None:
    """Attach the redacting filter to the package's and its HTTP libraries' loggers."""
    for name in _LOGGERS:
        _attach(logging.getLogger(name))


def get_logger(name: str) -> logging.Logger:
    """Return ``logging.getLogger(name)`` with the redacting filter attached.

    Examples
    --------
    >>> get_logger("mm_pipeline.example").filters[0].__class__.__name__
    'RedactingFilter'
    """
    return _attach(logging.getLogger(name))
