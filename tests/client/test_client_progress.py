"""Progress bars: auto on for terminals and notebooks only, silenced on request, key-free."""

from __future__ import annotations

import io
import sys
import types

import pytest

from mm_pipeline._progress import in_notebook, progress_bar, progress_enabled
from mm_pipeline._redact import register_secret

SECRET = "mc_test_PROGRESS_SECRET_42"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_off_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """progress=None shows nothing in a script whose stderr is redirected."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delitem(sys.modules, "ipykernel.zmqshell", raising=False)
    assert not progress_enabled(None)
    assert type(progress_bar(None, total=3)).__name__ == "_NullProgress"


def test_auto_is_on_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """progress=None shows a bar when stderr is a terminal."""
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    assert progress_enabled(None)


def test_auto_is_on_in_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    """progress=None shows a bar inside a Jupyter kernel, whatever stderr is."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    assert in_notebook()
    assert progress_enabled(None)


def test_explicit_choices_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """True forces a bar, False silences it, whatever the environment."""
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    assert not progress_enabled(False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled(True)


def test_the_null_bar_accepts_every_call() -> None:
    """The no-op bar has the full interface and prints nothing."""
    with progress_bar(False, total=2, desc="x") as bar:
        bar.update()
        bar.update_to(2)
        bar.set_total(5)
        bar.set_description("y")
        bar.set_postfix("z")
    bar.close()


def test_a_forced_bar_counts_and_never_prints_the_key() -> None:
    """A real bar reports progress; descriptions containing the key are scrubbed."""
    register_secret(SECRET)
    out = io.StringIO()
    with progress_bar(True, total=4, desc=f"ranking with {SECRET}", file=out, mininterval=0) as bar:
        bar.update(2)
        bar.set_total(10)
        bar.update_to(7)
        bar.set_description(f"key {SECRET}")
        bar.set_postfix(f"url ?api_key={SECRET}")
    text = out.getvalue()
    assert "7/10" in text
    assert SECRET not in text
    assert "api_key=REDACTED" in text
