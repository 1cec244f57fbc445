"""Turn SIGTERM and SIGHUP into exceptions, so ``finally`` blocks stop what the benchmarks started.

Python's default SIGTERM ends the process at once: no ``finally``, no context manager exit, no
``atexit``, and a sandbox server started in its own session keeps running. Inside
:func:`exit_on_signals`, SIGTERM and SIGHUP raise :class:`SystemExit` (``128 + signal``) instead,
as SIGINT already raises :class:`KeyboardInterrupt`, so the ``with`` blocks that own child
processes unwind and stop them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["exit_on_signals"]

_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """Raise :class:`SystemExit` on SIGTERM/SIGHUP for the ``with`` block (main thread only).

    Handlers someone else installed are kept; outside the main thread this does nothing (only
    the main thread may set handlers, and it is the one a signal interrupts).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig, handler in previous.items():
        if handler is signal.SIG_DFL:
            signal.signal(sig, _raise_exit)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is signal.SIG_DFL:
                signal.signal(sig, handler)
