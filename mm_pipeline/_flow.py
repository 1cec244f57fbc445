"""Placement under capacity as a min-cost flow (OR-Tools), and the greedy baseline.

The graph: one node per vehicle (supply 1), one per dealer (demand = its capacity), one arc per
candidate pair (capacity 1, the pair's cost). OR-Tools' ``solve_max_flow_with_min_cost`` finds
a maximum flow (as many placements as capacity allows) and, among maximum flows, one of least
cost: exactly the objective of :func:`mm_pipeline.assign`, with no big-M weight. The problem is
totally unimodular, so the optimum is integral: each vehicle gets 0 or 1 dealer.

Costs must be integers. Integer-valued costs are used as they are (shifted so the smallest is
0, which changes every maximum flow's cost by the same amount); other costs are scaled to
``COST_STEPS`` steps over their range and rounded, and the bound says what rounding may cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["COST_STEPS", "Solution", "greedy", "solve"]

COST_STEPS = 10**9
"""Float costs are rounded to this many steps over their range (finer is slower, not exact)."""
_INT64_HEADROOM = 2**62
_EXTRA = "assign"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, kw_only=True)
class Solution:
    """What a solver returned: the chosen pairs and what it proved."""

    chosen: BoolArray
    status: str
    optimal: bool
    objective: float
    bound: float
    seconds: float
    solver: str


def _min_cost_flow() -> Any:
    try:
        from ortools.graph.python import min_cost_flow  # noqa: PLC0415 (optional extra)
    except ImportError as exc:
        raise ImportError(
            "mm.assign needs OR-Tools: install the 'assign' extra "
            "(pip install 'mm-pipeline[assign]')"
        ) from exc
    return min_cost_flow


def _integer_costs(cost: FloatArray, nodes: int) -> tuple[IntArray, float, float, bool]:
    """Integer arc costs, their scale and shift, and whether they are exact."""
    low = float(cost.min())
    span = float(cost.max()) - low
    limit = _INT64_HEADROOM // (nodes + 2)
    if span == 0 or (bool(np.all(cost == np.floor(cost))) and span < min(limit, 2**53)):
        return np.rint(cost - low).astype(np.int64), 1.0, low, True
    scale = min(COST_STEPS, limit) / span
    return np.rint((cost - low) * scale).astype(np.int64), scale, low, False


def solve(
    vehicle: IntArray, dealer: IntArray, cost: FloatArray, capacity: IntArray, *, vehicles: int
) -> Solution:
    """Place as many vehicles as *capacity* allows, then at least total *cost*.

    Parameters
    ----------
    vehicle, dealer, cost
        One entry per candidate pair: vehicle index (``0..vehicles-1``), dealer index (into
        *capacity*), cost (finite). Each (vehicle, dealer) pair at most once.
    capacity
        Vehicles each dealer may take (non-negative).
    vehicles
        The number of vehicles.

    Returns
    -------
    Solution
        ``chosen`` marks the placed pairs; ``objective`` is their total *cost*; ``bound`` a
        lower bound on the total cost of any plan that places as many (equal to ``objective``
        when the costs are integers).
    """
    started = time.perf_counter()
    flow = _min_cost_flow()
    graph = flow.SimpleMinCostFlow()
    dealers = capacity.shape[0]
    arc_costs, scale, shift, exact = _integer_costs(cost, vehicles + dealers)
    graph.add_arcs_with_capacity_and_unit_cost(
        vehicle.astype(np.int32),
        (dealer + vehicles).astype(np.int32),
        np.ones(vehicle.shape[0], dtype=np.int64),
        arc_costs,
    )
    supplies = np.concatenate(
        [np.ones(vehicles, dtype=np.int64), -np.minimum(capacity, vehicles).astype(np.int64)]
    )
    graph.set_nodes_supplies(np.arange(vehicles + dealers, dtype=np.int32), supplies)
    status = graph.solve_max_flow_with_min_cost()
    optimal = status == graph.OPTIMAL
    if not optimal:
        raise RuntimeError(f"OR-Tools min-cost flow ended with status {status.name}")
    chosen = np.asarray(graph.flows(np.arange(vehicle.shape[0], dtype=np.int32))) > 0
    placed = int(graph.maximum_flow())
    solver_cost = float(graph.optimal_cost())
    bound = (solver_cost - (0.0 if exact else 0.5 * placed)) / scale + shift * placed
    version = _version()
    return Solution(
        chosen=chosen,
        status=status.name,
        optimal=optimal,
        objective=float(cost[chosen].sum()),
        bound=bound,
        seconds=time.perf_counter() - started,
        solver=f"OR-Tools {version} SimpleMinCostFlow (max flow, min cost)",
    )


def _version() -> str:
    import importlib.metadata  # noqa: PLC0415

    try:
        return importlib.metadata.version("ortools")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "?"


def greedy(
    vehicle: IntArray, dealer: IntArray, cost: FloatArray, capacity: IntArray, *, order: IntArray
) -> BoolArray:
    """Run the greedy baseline: vehicle after vehicle, its cheapest candidate with room left.

    Parameters
    ----------
    vehicle, dealer, cost, capacity
        As for :func:`solve`.
    order
        Each vehicle's position in the greedy's order (``order[vehicle]``).

    Returns
    -------
    numpy.ndarray
        The chosen pairs.

    Examples
    --------
    >>> v, d = np.array([0, 0, 1]), np.array([0, 1, 0])
    >>> greedy(v, d, np.array([1.0, 2.0, 1.0]), np.array([1, 0]), order=np.array([0, 1])).tolist()
    [True, False, False]
    """
    sequence = np.lexsort((dealer, cost, order[vehicle]))
    room = capacity.tolist()
    placed = [False] * (int(vehicle.max()) + 1 if vehicle.size else 0)
    chosen = np.zeros(vehicle.shape[0], dtype=np.bool_)
    vehicles, dealers = vehicle[sequence].tolist(), dealer[sequence].tolist()
    for position, v, d in zip(sequence.tolist(), vehicles, dealers, strict=True):
        if not placed[v] and room[d] > 0:
            room[d] -= 1
            placed[v] = True
            chosen[position] = True
    return chosen
