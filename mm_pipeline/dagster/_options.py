"""Ranking options of a ranking step, checked when the definitions are built.

The option names and types are read from the signatures of ``mm.rank_dealers`` and
``mm.rank_vins`` (every keyword-only parameter but ``client``, which the resource provides, and
``output``, which the step sets itself when the factory's ``spill_dir=`` asks for it: one folder
per run, removed once the IO manager has stored the outputs), so they follow the library;
values are checked against the annotations with pydantic.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

import mm_pipeline as mm

__all__ = ["ranking_options", "validate_options"]

_PROVIDED = frozenset({"client", "output"})  # the resource's; the step's (spill_dir=)
_HINTS = {"output": "spill_dir= of the factory ranks through Parquet files"}


@cache
def ranking_options(function: Callable[..., Any]) -> Mapping[str, Any]:
    """Map each option of a ranking function to its (evaluated) type annotation.

    Examples
    --------
    >>> "mode" in ranking_options(mm.rank_dealers), "mode" in ranking_options(mm.rank_vins)
    (True, False)
    """
    hints = typing.get_type_hints(function)
    return {
        name: hints.get(name, Any)
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in _PROVIDED
    }


def validate_options(function: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``options`` once every name is an option of ``function`` and every value fits it.

    Raises
    ------
    TypeError
        When a name is not an option of ``function`` (the message lists the options).
    mm_pipeline.ConfigurationError
        When a value does not fit the option's type (the message says what it expects).

    Examples
    --------
    >>> validate_options(mm.rank_dealers, {"mode": "batch", "exact_top_k": 5})
    {'mode': 'batch', 'exact_top_k': 5}
    >>> validate_options(mm.rank_vins, {"mode": "batch"})
    Traceback (most recent call last):
    ...
    TypeError: mm.rank_vins has no option 'mode'; its options: exact_top_k, chunk_size, ...
    """
    known = ranking_options(function)
    unknown = [name for name in options if name not in known]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if unknown[0] in _HINTS:
            hint = f" ({_HINTS[unknown[0]]})"
        raise TypeError(
            f"mm.{function.__name__} has no option{'s' if len(unknown) > 1 else ''} {names}"
            f"{hint}; its options: {', '.join(known)}"
        )
    for name, value in options.items():
        try:
            TypeAdapter(known[name]).validate_python(value, strict=True)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            shown = "'***'" if "secret" in name else repr(value)
            raise mm.ConfigurationError(
                f"mm.{function.__name__} option {name}={shown}: {reason}"
            ) from None
    return dict(options)
