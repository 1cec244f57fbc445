"""The sandbox process's resident memory: now and its peak since a mark (Linux ``/proc``).

Polars and numpy allocate outside Python's allocator, so ``tracemalloc`` misses most of a job's
memory; the process's resident set is what a server operator sees. On Linux the peak
(``VmHWM``) is reset by writing ``5`` to ``/proc/self/clear_refs``, so a job's peak is measured
from its start. Where ``/proc`` is missing, the figures are ``None``. With several jobs running
at once, each job's peak covers the others too (it is the process's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["peak_rss_bytes", "reset_peak", "rss_bytes"]

_STATUS: Final = Path("/proc/self/status")
_CLEAR_REFS: Final = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int | None:
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def rss_bytes() -> int | None:
    """Resident memory of this process now (``VmRSS``), or ``None`` off Linux.

    Examples
    --------
    >>> value = rss_bytes()
    >>> value is None or value > 0
    True
    """
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int | None:
    """Peak resident memory (``VmHWM``) since start or the last :func:`reset_peak`."""
    return _status_bytes("VmHWM")


def reset_peak() -> bool:
    """Reset the peak to the current resident memory; False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
