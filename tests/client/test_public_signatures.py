"""The sync ranking functions are their async twins' parameters, spelled once."""

from __future__ import annotations

import inspect

import pytest

import mm_pipeline as mm


@pytest.mark.parametrize(
    ("sync", "coroutine"), [(mm.rank_dealers, mm.arank_dealers), (mm.rank_vins, mm.arank_vins)]
)
def test_sync_twins_have_the_async_signature_and_their_own_docs(
    sync: object, coroutine: object
) -> None:
    """Same parameters and defaults; the sync one documents them and is not a coroutine."""
    assert inspect.signature(sync) == inspect.signature(coroutine)  # type: ignore[arg-type]
    assert not inspect.iscoroutinefunction(sync)
    assert inspect.iscoroutinefunction(coroutine)
    doc = inspect.getdoc(sync) or ""
    assert "Examples" in doc
    if sync is mm.rank_dealers:  # rank_vins' docs refer to it for the shared parameters
        assert "Parameters" in doc
        for name in inspect.signature(coroutine).parameters:
            assert name in doc, name
