"""The results table: one row per figure, with its baseline, its bound and their ratios.

Ratios are oriented so that they read the same way for every figure:

- ``x bound``: how many times the bound's cost ours is (``ours / bound`` for times and
  memory, ``bound / ours`` for rates); 1.00 is the limit itself.
- ``x baseline``: how many times better than the baseline ours is (``baseline / ours`` for
  times, ``ours / baseline`` for rates).
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Report", "Row"]


@dataclass(frozen=True, kw_only=True)
class Row:
    """One figure of one scenario.

    ``target`` says what is required in words; ``met`` is None when the figure has no target.
    ``higher_is_better`` orients the ratios (rates: True; times and memory: False).
    """

    scenario: str
    figure: str
    unit: str
    ours: float | None
    baseline: float | None = None
    bound: float | None = None
    target: str = ""
    met: bool | None = None
    higher_is_better: bool = False

    @property
    def vs_bound(self) -> float | None:
        """Ours in multiples of the bound's cost (1.0 = at the bound)."""
        return self._ratio(self.ours, self.bound, invert=self.higher_is_better)

    @property
    def vs_baseline(self) -> float | None:
        """How many times better than the baseline ours is."""
        return self._ratio(self.baseline, self.ours, invert=self.higher_is_better)

    @staticmethod
    def _ratio(top: float | None, bottom: float | None, *, invert: bool) -> float | None:
        if top is None or bottom is None:
            return None
        if invert:
            top, bottom = bottom, top
        return top / bottom if bottom else None


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if magnitude >= 0.01 or value == 0 else f"{value:.2g}"


def _ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{_number(value)}x"


def _met_text(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


@dataclass(kw_only=True)
class Report:
    """The rows and notes of one ``python -m benchmarks`` run."""

    mode: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0

    def add(self, rows: Sequence[Row], notes: Sequence[str] = ()) -> None:
        """Append a scenario's rows and notes."""
        self.rows.extend(rows)
        self.notes.extend(notes)

    def markdown(self) -> str:
        """The table (and notes) as Markdown."""
        header = (
            "| scenario | figure | ours | baseline | bound | x bound | x baseline | target | met |"
        )
        lines = [
            f"# `make bench` results ({self.mode})",
            "",
            f"{self.started:%Y-%m-%d %H:%M} UTC · {self._machine()} · run took "
            f"{self.seconds:.0f} s",
            "",
            "`x bound`: ours in multiples of the bound (1.00 = at the limit). "
            "`x baseline`: how many times better than the hand-written baseline ours is.",
            "",
            header,
            "|---|---|--:|--:|--:|--:|--:|---|---|",
        ]
        for row in self.rows:
            cells = [
                row.scenario,
                f"{row.figure} [{row.unit}]",
                _number(row.ours),
                _number(row.baseline),
                _number(row.bound),
                _ratio_text(row.vs_bound),
                _ratio_text(row.vs_baseline),
                row.target or "—",
                _met_text(row.met),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        with_target = [row for row in self.rows if row.met is not None]
        met = sum(bool(row.met) for row in with_target)
        lines += ["", f"**{met} of {len(with_target)} targets met.**"]
        if self.notes:
            lines += ["", "## Notes", "", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"

    def data(self) -> dict[str, Any]:
        """The run as JSON-ready data."""
        return {
            "mode": self.mode,
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 1),
            "machine": self._machine(),
            "rows": [
                {
                    **asdict(row),
                    "vs_bound": row.vs_bound,
                    "vs_baseline": row.vs_baseline,
                }
                for row in self.rows
            ],
            "notes": self.notes,
        }

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.json`` into *directory*; return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        md, js = directory / f"{stem}.md", directory / f"{stem}.json"
        md.write_text(self.markdown())
        js.write_text(json.dumps(self.data(), indent=2) + "\n")
        return md, js

    @staticmethod
    def _machine() -> str:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return f"{cpus} cores, Python {platform.python_version()}, {platform.machine()}"
