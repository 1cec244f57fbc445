"""Progress bars (tqdm.auto) that appear only in interactive use.

``enabled=None`` (auto) shows a bar when stderr is a terminal or the code runs in a Jupyter
kernel; ``True`` forces one, ``False`` silences it. When off, :func:`progress_bar` returns a
no-op object with the same methods. Text shown on a bar is scrubbed of registered secrets.
"""

from __future__ import annotations

import sys
import warnings
from types import TracebackType
from typing import Any, Protocol

from mm_pipeline._redact import redact, registered_secrets

__all__ = ["Progress", "in_notebook", "progress_bar", "progress_enabled"]


class Progress(Protocol):
    """What callers may do with a progress bar (real or no-op)."""

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units."""

    def update_to(self, n: int) -> None:
        """Move to the absolute position ``n``."""

    def set_total(self, total: int | None) -> None:
        """Set (or correct) the number of units expected."""

    def set_description(self, text: str) -> None:
        """Set the text before the bar."""

    def set_postfix(self, text: str) -> None:
        """Set the text after the bar."""

    def close(self) -> None:
        """Finish the bar."""

    def __enter__(self) -> Progress: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _NullProgress:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        """Do nothing."""

    def update_to(self, n: int) -> None:
        """Do nothing."""

    def set_total(self, total: int | None) -> None:
        """Do nothing."""

    def set_description(self, text: str) -> None:
        """Do nothing."""

    def set_postfix(self, text: str) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""

    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def _clean(text: str) -> str:
    return redact(text, *registered_secrets())


class _TqdmProgress:
    """A tqdm.auto bar behind the :class:`Progress` interface."""

    def __init__(self, *, total: int | None, desc: str, unit: str, **options: Any) -> None:
        with warnings.catch_warnings():
            # tqdm warns once when a notebook lacks ipywidgets, then falls back to text.
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm  # noqa: PLC0415 (inside the warnings filter)

        self._bar = tqdm(total=total, desc=_clean(desc), unit=unit, dynamic_ncols=True, **options)

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units."""
        self._bar.update(n)

    def update_to(self, n: int) -> None:
        """Move to the absolute position ``n``."""
        self._bar.update(n - self._bar.n)

    def set_total(self, total: int | None) -> None:
        """Set (or correct) the number of units expected."""
        self._bar.total = total
        self._bar.refresh()

    def set_description(self, text: str) -> None:
        """Set the text before the bar."""
        self._bar.set_description_str(_clean(text))

    def set_postfix(self, text: str) -> None:
        """Set the text after the bar."""
        self._bar.set_postfix_str(_clean(text))

    def close(self) -> None:
        """Finish the bar."""
        self._bar.close()

    def __enter__(self) -> _TqdmProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def in_notebook() -> bool:
    """Return whether this process is a Jupyter kernel (the test tqdm.autonotebook uses)."""
    return "ipykernel.zmqshell" in sys.modules


def progress_enabled(enabled: bool | None) -> bool:
    """Resolve ``progress=None`` (auto) to on for terminals and notebooks, else off.

    Examples
    --------
    >>> progress_enabled(True), progress_enabled(False)
    (True, False)
    """
    if enabled is not None:
        return enabled
    stream = sys.stderr
    return in_notebook() or bool(stream is not None and stream.isatty())


def progress_bar(
    enabled: bool | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "req",
    **options: Any,
) -> Progress:
    """Return a tqdm.auto bar, or a no-op one when progress is off.

    Parameters
    ----------
    enabled
        ``None`` for auto (terminal or notebook), ``True`` to force, ``False`` to silence.
    total, desc, unit
        As for tqdm; ``total`` may be set later with ``set_total``.
    **options
        Passed to tqdm (e.g. ``file=``, ``leave=``).

    Examples
    --------
    >>> with progress_bar(False, total=3, desc="ranking") as bar:
    ...     bar.update()
    >>> type(bar).__name__
    '_NullProgress'
    """
    if not progress_enabled(enabled):
        return _NullProgress()
    return _TqdmProgress(total=total, desc=desc, unit=unit, **options)
