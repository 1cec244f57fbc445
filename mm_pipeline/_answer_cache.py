"""The answer cache: ranking answers kept on disk, so a rerun the same day sends nothing.

An entry is one successful (200) answer to one JSON POST, stored as the raw bytes the API sent
(decoded as usual when read, so the fast typed path applies to cached answers too). It is keyed
by the SHA-256 of:

- the *account scope*: ``HMAC-SHA256(key=api_key, msg=prefix + base_url)``: two keys (or two
  servers) never share answers, and the key cannot be recovered from the cache;
- the path (the endpoint) and the request body, byte for byte.

Layout (one file per answer; the choice over SQLite is argued in ``docs/architecture.md``)::

    <cache_dir>/answers/<YYYY-MM-DD>/<2 hex>/<62 hex>      the day (UTC) it was answered

Each file is ``MAGIC``, the answer time (ISO, UTC), the SHA-256 and length of the body, a
newline, then the body. A file whose header, length or checksum does not hold (cut short,
overwritten, a different version) is ignored and replaced by the next answer.

- **Validity**: by default an answer serves the rest of its UTC day (scores move with the
  market, which refreshes daily); ``ttl`` (seconds or a ``timedelta``) makes it serve for that
  long instead. Each day's answers are in their own folder: old days can be removed at will.
- **Atomic writes**: the body goes to a temporary file in the entry's folder, then
  ``os.replace`` puts it in place: a reader (another process too) sees the old entry, the new
  one or none, never half of one. A killed writer leaves only a ``.tmp`` file, never read.
- **Two processes at once** both miss, both ask, both write a valid entry (the last replace
  wins); no locking is needed.
- **No secret on disk**: an answer whose bytes hold an API key the process knows (a server
  echoing it in a message) is not kept: the file would carry the key.
- **Not writable**: the first failed write logs one warning and turns writing off for the
  session; a ranking never fails because of its cache.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from mm_pipeline._redact import get_logger, registered_secrets

__all__ = ["ANSWERS_FOLDER", "AnswerCache", "account_scope", "parse_ttl"]

ANSWERS_FOLDER: Final = "answers"
"""The folder of the answer cache under ``cache_dir`` (beside the batch result files)."""

MAGIC: Final = b"mm-answer/1 "
_SCOPE_PREFIX: Final = b"mm_pipeline answer cache v1\n"
_MAX_DAYS: Final = 366  # the oldest day folder a ttl can reach

_log = get_logger("mm_pipeline.answer_cache")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def account_scope(api_key: str, base_url: str) -> str:
    """Return the hex scope of an account's answers: a keyed hash, not the key.

    Examples
    --------
    >>> a = account_scope("mc_test_key_a", "http://127.0.0.1:8765")
    >>> a == account_scope("mc_test_key_b", "http://127.0.0.1:8765"), len(a)
    (False, 64)
    >>> "mc_test_key_a" in a
    False
    """
    return hmac.new(api_key.encode(), _SCOPE_PREFIX + base_url.encode(), hashlib.sha256).hexdigest()


def parse_ttl(ttl: timedelta | float | None) -> timedelta | None:
    """Check a ``cache_ttl``: ``None`` (the rest of the UTC day) or a positive duration.

    Examples
    --------
    >>> parse_ttl(3600)
    datetime.timedelta(seconds=3600)
    >>> parse_ttl(None) is None
    True
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, timedelta | int | float):
        raise ValueError(f"cache_ttl must be seconds, a timedelta or None, got {ttl!r}")
    span = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    if span <= timedelta(0):
        raise ValueError(f"cache_ttl must be positive, got {ttl!r}")
    return span


class AnswerCache:
    """Successful answers of one account, on disk, by request content.

    Parameters
    ----------
    root
        The cache folder (``cache_dir``); answers go under ``root / "answers"``.
    scope
        :func:`account_scope` of the account.
    ttl
        How long an answer serves; ``None``: until the end of its UTC day.
    clock
        Returns the current time (UTC); for tests.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     cache = AnswerCache(Path(folder), scope=account_scope("k", "http://x"))
    ...     cache.put("/v2/rank", b'{"q":1}', b'{"ranked_matches":[]}')
    ...     cache.get("/v2/rank", b'{"q":1}'), cache.get("/v2/rank", b'{"q":2}')
    (b'{"ranked_matches":[]}', None)
    """

    def __init__(
        self,
        root: Path,
        *,
        scope: str,
        ttl: timedelta | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.folder = Path(root) / ANSWERS_FOLDER
        self._scope = scope.encode()
        self._ttl = ttl
        self._clock = clock or _utcnow
        self._writable = True

    def __repr__(self) -> str:
        return f"AnswerCache(folder={str(self.folder)!r}, ttl={self._ttl!r})"

    def _name(self, path: str, body: bytes) -> str:
        digest = hashlib.sha256(self._scope)
        digest.update(b"\n" + path.encode() + b"\n")
        digest.update(body)
        return digest.hexdigest()

    def _entry(self, day: date, name: str) -> Path:
        return self.folder / day.isoformat() / name[:2] / name[2:]

    def _days(self, now: datetime) -> list[date]:
        """Return the day folders an answer valid now can be in, newest first."""
        if self._ttl is None:
            return [now.date()]
        oldest = max((now - self._ttl).date(), now.date() - timedelta(days=_MAX_DAYS))
        return [now.date() - timedelta(days=d) for d in range((now.date() - oldest).days + 1)]

    def _fresh(self, answered: datetime, now: datetime) -> bool:
        if self._ttl is None:
            return answered.date() == now.date() and answered <= now
        return now - self._ttl < answered <= now

    def may_hold_answers(self) -> bool:
        """Tell whether any answer valid now may be cached (a day folder in range exists)."""
        return any((self.folder / day.isoformat()).is_dir() for day in self._days(self._clock()))

    def get(self, path: str, body: bytes) -> bytes | None:
        """Return the cached answer to this request, or ``None`` (missing, stale or damaged)."""
        name = self._name(path, body)
        now = self._clock()
        for day in self._days(now):
            try:
                raw = self._entry(day, name).read_bytes()
            except OSError:
                continue
            entry = _parse(raw)
            if entry is None:
                _log.debug("answer cache entry %s is damaged; asking again", name)
                continue
            answered, answer = entry
            if self._fresh(answered, now):
                return answer
        return None

    def put(self, path: str, body: bytes, answer: bytes) -> None:
        """Keep a successful answer (atomically); a failure turns writing off, warning once."""
        if not self._writable or any(key.encode() in answer for key in registered_secrets()):
            return
        now = self._clock()
        entry = self._entry(now.date(), self._name(path, body))
        header = b"%s%s %s %d\n" % (
            MAGIC,
            now.isoformat().encode(),
            hashlib.sha256(answer).hexdigest().encode(),
            len(answer),
        )
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                prefix=f".{entry.name[:16]}.", suffix=".tmp", dir=entry.parent
            )
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(header)
                    out.write(answer)
                os.replace(temporary, entry)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            self._writable = False
            _log.warning(
                "the answer cache in %s cannot be written (%s); going on without keeping "
                "answers (reruns will send their requests again)",
                self.folder,
                exc.strerror or type(exc).__name__,
            )


def _parse(raw: bytes) -> tuple[datetime, bytes] | None:
    """Split an entry into (answer time, answer); ``None`` unless it is whole and intact."""
    head, newline, answer = raw.partition(b"\n")
    if not newline or not head.startswith(MAGIC):
        return None
    fields = head[len(MAGIC) :].split(b" ")
    if len(fields) != 3:  # time, checksum, length
        return None
    stamp, checksum, length = fields
    try:
        answered = datetime.fromisoformat(stamp.decode())
        size = int(length)
    except ValueError:
        return None
    if answered.tzinfo is None or size != len(answer):
        return None
    if hashlib.sha256(answer).hexdigest().encode() != checksum:
        return None
    return answered, answer
