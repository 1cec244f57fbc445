"""Run a coroutine from synchronous code, also where an event loop is already running.

Scripts have no running loop: :func:`run_sync` uses :func:`asyncio.run`. Jupyter (and any
async caller that calls a sync API) has one, and a loop cannot be re-entered, so the coroutine
runs on a fresh loop in a worker thread while the caller's thread waits. No nest_asyncio.

A ``KeyboardInterrupt`` while waiting (Jupyter), or the cancellation of the calling task (what
``asyncio.run`` makes of Ctrl-C), cancels the worker's task so that its sessions close, and is
re-raised; an exception raised by the coroutine is re-raised in the caller's thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")
_CANCEL_GRACE = 10.0  # seconds the worker gets to clean up after a KeyboardInterrupt
_POLL = 0.1  # seconds between checks whether the calling task was cancelled


class _Worker:
    """Runs one coroutine on its own loop in a thread; cancellable from another thread."""

    def __init__(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    async def _main(self) -> Any:
        with self._lock:
            if self._cancelled:
                raise asyncio.CancelledError
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
        return await self._factory()

    def run(self) -> None:
        try:
            self.result = asyncio.run(self._main())
        except BaseException as exc:  # handed over to the waiting thread
            self.error = exc
        finally:
            self.done.set()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)


def run_sync(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine that ``coro_factory()`` creates and return its result.

    Parameters
    ----------
    coro_factory
        Called once, on the thread whose loop runs the coroutine (so nothing loop-bound is
        created on the wrong loop).

    Examples
    --------
    >>> async def answer() -> int:
    ...     return 42
    >>> run_sync(answer)
    42
    >>> async def nested() -> int:  # a sync call made while a loop is running
    ...     return run_sync(answer)
    >>> asyncio.run(nested())
    42
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    caller = asyncio.current_task()
    worker = _Worker(coro_factory)
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(worker.run,), name="mm_pipeline.run_sync", daemon=True
    )
    try:
        # start() inside the try: a Ctrl-C may land while start() waits for the thread.
        thread.start()
        while not worker.done.wait(_POLL):
            if caller is not None and caller.cancelling():
                # The calling task was cancelled (asyncio.run turns Ctrl-C into this).
                raise asyncio.CancelledError
    except (KeyboardInterrupt, asyncio.CancelledError):
        worker.cancel()
        worker.done.wait(_CANCEL_GRACE)
        raise
    thread.join()
    if worker.error is not None:
        raise worker.error
    result: T = worker.result
    return result
