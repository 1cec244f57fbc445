"""run_sync: coroutines from sync code, with and without a running event loop."""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from mm_pipeline._sync import run_sync

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="unset")


async def where() -> tuple[str, bool]:
    await asyncio.sleep(0)
    return threading.current_thread().name, asyncio.get_running_loop().is_running()


def test_without_a_loop_runs_on_the_calling_thread() -> None:
    """In a plain script the coroutine runs with asyncio.run on the caller's thread."""
    name, running = run_sync(where)
    assert name == threading.current_thread().name
    assert running


async def test_inside_a_running_loop_runs_on_a_worker_thread() -> None:
    """Inside a running loop (Jupyter) the coroutine runs on its own loop in a worker."""
    outer = asyncio.get_running_loop()
    name, running = run_sync(where)
    assert name == "mm_pipeline.run_sync"
    assert running
    assert asyncio.get_running_loop() is outer  # the caller's loop is untouched


async def test_exceptions_propagate_from_the_worker() -> None:
    """An exception raised by the coroutine reaches the sync caller unchanged."""

    async def fail() -> None:
        raise LookupError("no such job")

    with pytest.raises(LookupError, match="no such job"):
        run_sync(fail)


def test_exceptions_propagate_without_a_loop() -> None:
    """Without a loop, exceptions propagate too."""

    async def fail() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        run_sync(fail)


async def test_context_variables_reach_the_worker() -> None:
    """Context variables set by the caller are visible to the coroutine in the worker."""

    async def read() -> str:
        return REQUEST_ID.get()

    token = REQUEST_ID.set("req-7")
    try:
        assert run_sync(read) == "req-7"
    finally:
        REQUEST_ID.reset(token)


async def test_the_factory_is_called_on_the_worker_loop() -> None:
    """The coroutine is created on the thread whose loop runs it (loop-bound objects are safe)."""
    seen: list[str] = []

    async def body() -> int:
        lock = asyncio.Lock()  # bound to the worker's loop on first use
        async with lock:
            return 1

    def factory():  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return body()

    assert run_sync(factory) == 1
    assert seen == ["mm_pipeline.run_sync"]


def _run_until_complete(coro: Coroutine[Any, Any, None]) -> None:
    """Run a loop the way Jupyter does: no SIGINT handler of asyncio's own."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.mark.parametrize(
    "runner", [asyncio.run, _run_until_complete], ids=["asyncio.run", "kernel"]
)
def test_ctrl_c_cancels_the_worker(runner: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    """Ctrl-C while waiting cancels the worker's coroutine (it can clean up) and re-raises."""
    started = threading.Event()
    cancelled = threading.Event()

    async def long_running() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def outer() -> None:
        run_sync(long_running)

    def press_ctrl_c_when_started() -> None:
        assert started.wait(10)
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=press_ctrl_c_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        runner(outer())
    assert cancelled.is_set()
