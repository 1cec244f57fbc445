"""What :func:`mm_pipeline.assign` returns: :class:`AssignResult` (frames + stats)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

from mm_pipeline._result import summary_html

__all__ = ["UNASSIGNED_REASONS", "AssignResult", "AssignStats"]

UNASSIGNED_REASONS = ("no_candidate", "capacity", "invalid")
"""Why a vehicle was not placed (``AssignResult.unassigned["reason"]``)."""


@dataclass(frozen=True, kw_only=True)
class AssignStats:
    """Figures of one placement plan.

    Attributes
    ----------
    vehicles
        Distinct vehicles (``vin``, ``price``, ``miles``) in the ranked frame.
    candidate_pairs, dealers, capacity
        Candidate (vehicle, dealer) pairs of valid vehicles, the distinct dealers among them,
        and their total capacity.
    placed, no_candidate, over_capacity, invalid
        Vehicles placed, and vehicles not placed by reason (see ``AssignResult.unassigned``).
    objective
        Total cost of the placements.
    bound
        A lower bound, proven by the solver, on the total cost of any plan that places as many
        vehicles; equal to ``objective`` for integer costs (the plan is optimal), below it by at
        most the rounding of float costs otherwise.
    optimal, status
        The solver's verdict (``status`` is its own, e.g. ``"OPTIMAL"``; ``"EMPTY"`` when there
        was nothing to place).
    greedy_placed, greedy_objective
        The greedy baseline on the same candidates (vehicle after vehicle in input order, its
        cheapest candidate with room left): vehicles placed and their total cost.
    largest_share, first_choice_largest_share, greedy_largest_share
        The largest share of the placed vehicles one dealer receives in the plan; if every
        vehicle went to its first choice (cheapest candidate, capacity ignored: the rank-1
        concentration); in the greedy plan.
    solver, cost, max_rank
        The solver used, the cost (a column name or an expression), and ``max_rank``.
    solve_seconds, elapsed
        Seconds in the solver (graph building included), and for the whole call.
    """

    vehicles: int = 0
    candidate_pairs: int = 0
    dealers: int = 0
    capacity: int = 0
    placed: int = 0
    no_candidate: int = 0
    over_capacity: int = 0
    invalid: int = 0
    objective: float = 0.0
    bound: float = 0.0
    optimal: bool = True
    status: str = "EMPTY"
    greedy_placed: int = 0
    greedy_objective: float = 0.0
    largest_share: float = 0.0
    first_choice_largest_share: float = 0.0
    greedy_largest_share: float = 0.0
    solver: str = "none"
    cost: str = "vin_rank"
    max_rank: int | None = None
    solve_seconds: float = 0.0
    elapsed: float = 0.0

    @property
    def placed_share(self) -> float:
        """Placed vehicles as a share of all vehicles (1.0 when there are none)."""
        return self.placed / self.vehicles if self.vehicles else 1.0

    def as_dict(self) -> dict[str, object]:
        """Return the figures as a plain dict (e.g. for Dagster metadata or logging)."""
        return {**asdict(self), "placed_share": self.placed_share}


@dataclass(frozen=True, kw_only=True)
class AssignResult:
    """A placement plan: which dealer each vehicle goes to, under dealer capacity.

    Every distinct vehicle of the ranked frame is in exactly one of ``assigned`` and
    ``unassigned``.

    Attributes
    ----------
    assigned
        One row per placed vehicle: its ranked row (every column of the input) and
        ``placement_cost``, vehicles in order of first appearance.
    unassigned
        One row per vehicle not placed: ``vin``, ``price``, ``miles``, ``reason``
        (``no_candidate``: no candidate pair; ``capacity``: its candidate dealers were full;
        ``invalid``: a key or cost could not be read), ``candidates`` (its candidate pairs)
        and ``message``.
    dealers
        One row per candidate dealer: ``source``, ``zip``, ``mc_location_id``, ``capacity``,
        ``placed`` (by the plan), ``first_choice`` (vehicles whose cheapest candidate it is)
        and ``greedy`` (placed by the greedy baseline), most first choices first.
    stats
        :class:`AssignStats`.
    """

    assigned: pl.DataFrame
    unassigned: pl.DataFrame
    dealers: pl.DataFrame
    stats: AssignStats

    def concentration(self, *, top: int | None = 20) -> pl.DataFrame:
        """Vehicles per dealer, first choice against plan, in long form (for a bar chart).

        Parameters
        ----------
        top
            Keep the dealers with the most first choices (``None``: all).

        Returns
        -------
        pl.DataFrame
            ``dealer`` (a label), ``placement`` (``"first choice"`` or ``"plan"``),
            ``vehicles`` and ``share`` (of the vehicles placed that way), ``capacity``.
        """
        dealers = self.dealers if top is None else self.dealers.head(top)
        label = pl.coalesce(  # a rooftop without a zip is told apart by its id
            pl.col("source") + pl.lit(" ") + pl.coalesce("zip", "mc_location_id"),
            pl.col("source"),
            pl.col("mc_location_id"),
        )
        totals = {"first choice": self.dealers["first_choice"].sum(), "plan": self.stats.placed}
        return pl.concat(
            dealers.select(
                label.alias("dealer"),
                pl.lit(name).alias("placement"),
                pl.col(column).alias("vehicles"),
                (pl.col(column) / max(totals[name], 1)).alias("share"),
                "capacity",
            )
            for name, column in (("first choice", "first_choice"), ("plan", "placed"))
        )

    def _lines(self) -> list[tuple[str, str]]:
        s = self.stats
        ratio = f" ({s.greedy_objective / s.objective:.3f}x)" if s.objective else ""
        return [
            (
                "placed",
                f"{s.placed:,} of {s.vehicles:,} vehicles at {s.dealers:,} dealers "
                f"(capacity {s.capacity:,})",
            ),
            (
                "unplaced",
                f"{s.over_capacity:,} capacity, {s.no_candidate:,} no candidate, "
                f"{s.invalid:,} invalid",
            ),
            (
                "objective",
                f"{s.objective:,.6g} (bound {s.bound:,.6g}, {s.status}); "
                f"greedy {s.greedy_objective:,.6g}{ratio} placing {s.greedy_placed:,}",
            ),
            (
                "largest",
                f"dealer share {s.largest_share:.1%} (first choice "
                f"{s.first_choice_largest_share:.1%}, greedy {s.greedy_largest_share:.1%})",
            ),
            ("solver", f"{s.solver}: {s.solve_seconds:.2f} s of {s.elapsed:.2f} s"),
        ]

    def __repr__(self) -> str:
        s = self.stats
        head = (
            f"AssignResult(cost={s.cost!r}, max_rank={s.max_rank}, "
            f"candidate_pairs={s.candidate_pairs:,})"
        )
        return "\n".join([head, *(f"  {name + ':':<10} {text}" for name, text in self._lines())])

    def _repr_html_(self) -> str:
        title = f"AssignResult · {self.stats.cost}"
        return summary_html(title, self._lines(), self.assigned, "assigned")
