"""``mm.assign``: from ranks to a placement plan, one dealer per vehicle, under dealer capacity.

One call: read the candidate pairs and the distinct vehicles out of the ranked frame, eager or
lazy (``_assign_input``: lazy queries, so a LazyFrame is never collected whole), number vehicles
and rooftops in a canonical order (so the plan does not depend on row order), resolve each
dealer's capacity (``_capacity``), solve the min-cost flow and run the greedy baseline
(``_flow``), then map the chosen pairs back to the ranked rows
(:class:`~mm_pipeline.AssignResult`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from mm_pipeline._assign_input import VEHICLE_COLUMNS, RankedInput, read_ranked
from mm_pipeline._assign_result import AssignResult, AssignStats
from mm_pipeline._capacity import DEALER_COLUMNS, dealer_frame, dealer_key, resolve_capacity
from mm_pipeline._flow import Solution, greedy, solve

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["VEHICLE_COLUMNS", "assign", "check_plan"]

_V, _D, _ROW, _COST, _DEALER = "_vehicle", "_dealer_index", "_row", "_cost", "_dealer"


def _pairs(work: pl.DataFrame, vehicles: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split the candidate pairs into valid ones (one per vehicle and dealer) and bad vehicles."""
    candidates = work.join(
        vehicles.select(*VEHICLE_COLUMNS, _V), on=VEHICLE_COLUMNS, nulls_equal=True
    )
    problem = (
        pl.when(pl.any_horizontal(pl.col(c).is_null() for c in VEHICLE_COLUMNS))
        .then(pl.lit("vin, price or miles is missing"))
        .when(pl.col(_DEALER).is_null())
        .then(pl.lit("a candidate row names no dealer (no source, no mc_location_id)"))
        .when(pl.col(_COST).is_null() | ~pl.col(_COST).is_finite())
        .then(pl.lit("a candidate row's cost is missing or not finite"))
    )
    flagged = candidates.with_columns(problem.alias("message"))
    invalid = (
        flagged.filter(pl.col("message").is_not_null())
        .group_by(_V)
        .agg(pl.col("message").sort_by(_ROW).first())  # its first bad row's
        .join(
            vehicles.filter(pl.any_horizontal(pl.col(c).is_null() for c in VEHICLE_COLUMNS)).select(
                _V, pl.lit("vin, price or miles is missing").alias("message")
            ),
            on=_V,
            how="full",
            coalesce=True,
        )
        .select(_V, pl.coalesce("message", "message_right").alias("message"))
    )
    valid = flagged.filter(~pl.col(_V).is_in(invalid.get_column(_V).implode()))
    return valid, invalid


def _numbered(valid: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the pairs with dealer numbers (cheapest row per vehicle and dealer), the dealers."""
    dealers = (
        valid.group_by(_DEALER)
        .agg(pl.col(c).first() for c in DEALER_COLUMNS)
        .sort(_DEALER)
        .with_row_index(_D)
        .with_columns(pl.col(_D).cast(pl.Int64))
    )
    pairs = valid.join(dealers.select(_DEALER, _D), on=_DEALER).sort(_V, _D, _COST, _ROW)
    first = (pl.col(_V) != pl.col(_V).shift()) | (pl.col(_D) != pl.col(_D).shift())
    return pairs.filter(first.fill_null(True)), dealers


def _shares(counts: pl.Series) -> float:
    values = counts.to_numpy()
    total = int(values.sum())
    return float(values.max()) / total if total else 0.0


def assign(
    ranked: pl.DataFrame | pl.LazyFrame,
    *,
    capacity: int | pl.DataFrame,
    default_capacity: int = 0,
    cost: str | pl.Expr = "vin_rank",
    max_rank: int | None = None,
) -> AssignResult:
    """Assign each vehicle at most one dealer, under dealer capacity, optimally.

    The plan places as many vehicles as capacity allows, then, among such plans, minimises the
    total cost of the placements. It is a transportation problem, solved exactly as a min-cost
    flow (OR-Tools, the ``assign`` extra); the same rows in any order give the same plan.

    Parameters
    ----------
    ranked
        A ``RankResult.ranked`` frame of :func:`rank_dealers` (or any frame with ``vin``,
        ``price``, ``miles``, the dealer columns ``source`` / ``zip`` / ``mc_location_id``,
        ``rank_exact`` and, for the default cost or ``max_rank``, ``vin_rank``). A vehicle is
        (``vin``, ``price``, ``miles``); a dealer is a rooftop: ``mc_location_id`` when the row
        has one, else ``source`` + ``zip``. A LazyFrame (say ``pl.scan_parquet`` of a large
        ranking) is read by the streaming engine and never collected whole: memory holds its
        candidate rows (with every column: a plan row is a ranked row; a batch ranking's ranks
        are all exact, so there ``max_rank`` is what bounds them) and one row per distinct
        vehicle, whatever the number of other rows. The plan is the same as on the collected
        frame.
    capacity
        How many vehicles a dealer takes: one int for every dealer, or a frame with dealer
        columns (any of ``source``, ``zip``, ``mc_location_id``) and ``capacity``
        (non-negative integers, one row per dealer). A ranked dealer finds its row by
        ``mc_location_id``, else ``source`` + ``zip``, else ``source`` alone.
    default_capacity
        The capacity of dealers the capacity frame does not list.
    cost
        What a placement costs, lower is better: a column name or a polars expression over the
        ranked columns (default: the dealer's rank for that vehicle). To maximise a score,
        negate it: ``cost=-pl.col("dealer_ymm_score")``. Integer costs are solved exactly;
        float costs are rounded to 10^9 steps over their range (``stats.bound`` says how much
        that can cost).
    max_rank
        Which pairs are candidates. ``None`` (default): only ranks the ranking proved
        (``rank_exact``), so a plan never rests on an approximate rank. An int: every pair with
        ``vin_rank <= max_rank``, exact or not. Wider (above ``exact_top_k``) places more
        vehicles when the best dealers are full, but those ranks are approximate: a vehicle's
        rank-12 dealer may really be its rank-30. Narrower (say 3) keeps every placement among
        a vehicle's best few and leaves more vehicles unplaced.

    Returns
    -------
    AssignResult
        ``assigned`` (one ranked row per placed vehicle), ``unassigned`` (with a reason),
        ``dealers`` (load per dealer) and ``stats`` (objective, the solver's status and bound,
        the greedy baseline's figures, the largest dealer share).

    Raises
    ------
    InvalidInputError
        Missing columns, a cost that cannot be read as numbers on the candidate rows, a bad
        ``max_rank``, or bad capacities (negative, missing, non-integer, a dealer listed twice:
        the rows are named).
    ImportError
        OR-Tools is not installed (``pip install 'mm-pipeline[assign]'``).

    Examples
    --------
    >>> import polars as pl
    >>> import mm_pipeline as mm
    >>> ranked = pl.DataFrame({
    ...     "vin": ["V1", "V1", "V2", "V2"], "price": [9000] * 4, "miles": [100] * 4,
    ...     "source": ["a.com", "b.com", "a.com", "b.com"], "zip": ["30907"] * 4,
    ...     "mc_location_id": ["A", "B", "A", "B"], "vin_rank": [1, 2, 1, 3],
    ...     "rank_exact": [True] * 4})
    >>> plan = mm.assign(ranked, capacity=1)
    >>> plan.assigned.select("vin", "source", "vin_rank").rows()
    [('V1', 'b.com', 2), ('V2', 'a.com', 1)]
    >>> plan.stats.placed, plan.stats.objective, plan.stats.status, plan.stats.greedy_objective
    (2, 3.0, 'OPTIMAL', 4.0)
    >>> mm.assign(ranked, capacity=0).unassigned["reason"].to_list()
    ['capacity', 'capacity']
    """
    started = time.perf_counter()
    read = read_ranked(ranked, cost, max_rank)
    vehicles = read.vehicles
    valid, invalid = _pairs(read.candidates, vehicles)
    valid, dealers = _numbered(valid)
    dealers = dealers.with_columns(
        resolve_capacity(dealers, capacity, default_capacity=default_capacity)
    )
    vehicle = valid.get_column(_V).to_numpy().astype(np.int64)
    dealer = valid.get_column(_D).to_numpy().astype(np.int64)
    costs = valid.get_column(_COST).to_numpy()
    room = dealers.get_column("capacity").to_numpy().astype(np.int64)
    order = np.empty(vehicles.height, dtype=np.int64)
    order[vehicles.get_column(_V).to_numpy()] = np.arange(vehicles.height)
    solution = (
        solve(vehicle, dealer, costs, room, vehicles=vehicles.height) if valid.height else None
    )
    chosen = solution.chosen if solution else np.zeros(0, dtype=np.bool_)
    by_greedy = greedy(vehicle, dealer, costs, room, order=order)
    return _result(
        read,
        vehicles=vehicles,
        valid=valid,
        invalid=invalid,
        dealers=dealers,
        chosen=chosen,
        by_greedy=by_greedy,
        solution=solution,
        cost=cost if isinstance(cost, str) else str(cost),
        max_rank=max_rank,
        started=started,
    )


def _result(
    read: RankedInput,
    *,
    vehicles: pl.DataFrame,
    valid: pl.DataFrame,
    invalid: pl.DataFrame,
    dealers: pl.DataFrame,
    chosen: np.typing.NDArray[np.bool_],
    by_greedy: np.typing.NDArray[np.bool_],
    solution: Solution | None,
    cost: str,
    max_rank: int | None,
    started: float,
) -> AssignResult:
    """Map the chosen pairs back to ranked rows; count, compare and describe."""
    placed = valid.filter(pl.Series(chosen))
    greedy_placed = valid.filter(pl.Series(by_greedy))
    first_choice = valid.sort(_V, _COST, _D).unique(_V, keep="first")
    per_dealer = dealers.select(_D, *DEALER_COLUMNS, "capacity")
    for name, chosen_pairs in (
        ("placed", placed),
        ("first_choice", first_choice),
        ("greedy", greedy_placed),
    ):
        counts = chosen_pairs.group_by(_D).len(name=name)
        per_dealer = per_dealer.join(counts, on=_D, how="left").with_columns(
            pl.col(name).fill_null(0).cast(pl.UInt32)
        )
    per_dealer = per_dealer.sort(["first_choice", "placed", _D], descending=[True, True, False])
    in_order = placed.sort(_ROW)
    assigned = read.ranked_rows(in_order.get_column(_ROW)).with_columns(
        placement_cost=in_order.get_column(_COST)
    )
    candidates = valid.group_by(_V).len(name="candidates")
    unassigned = (
        vehicles.join(placed.select(_V), on=_V, how="anti")
        .join(candidates, on=_V, how="left")
        .join(invalid, on=_V, how="left")
        .sort(_ROW)
        .select(
            *VEHICLE_COLUMNS,
            pl.when(pl.col("message").is_not_null())
            .then(pl.lit("invalid"))
            .when(pl.col("candidates").is_null())
            .then(pl.lit("no_candidate"))
            .otherwise(pl.lit("capacity"))
            .alias("reason"),
            pl.col("candidates").fill_null(0).cast(pl.UInt32),
            pl.when(pl.col("message").is_not_null())
            .then("message")
            .when(pl.col("candidates").is_null())
            .then(pl.lit("no candidate pair" + (" (rank_exact)" if max_rank is None else "")))
            .otherwise(pl.lit("every candidate dealer was full"))
            .alias("message"),
        )
    )
    reasons = unassigned.get_column("reason").value_counts()
    count = dict(zip(reasons["reason"].to_list(), reasons["count"].to_list(), strict=True))
    stats = AssignStats(
        vehicles=vehicles.height,
        candidate_pairs=valid.height,
        dealers=dealers.height,
        capacity=int(dealers.get_column("capacity").clip(upper_bound=vehicles.height).sum()),
        placed=placed.height,
        no_candidate=count.get("no_candidate", 0),
        over_capacity=count.get("capacity", 0),
        invalid=count.get("invalid", 0),
        objective=solution.objective if solution else 0.0,
        bound=solution.bound if solution else 0.0,
        optimal=solution.optimal if solution else True,
        status=solution.status if solution else "EMPTY",
        greedy_placed=greedy_placed.height,
        greedy_objective=float(greedy_placed.get_column(_COST).sum()),
        largest_share=_shares(per_dealer.get_column("placed")),
        first_choice_largest_share=_shares(per_dealer.get_column("first_choice")),
        greedy_largest_share=_shares(per_dealer.get_column("greedy")),
        solver=solution.solver if solution else "none (no candidate pair)",
        cost=cost,
        max_rank=max_rank,
        solve_seconds=solution.seconds if solution else 0.0,
        elapsed=time.perf_counter() - started,
    )
    return AssignResult(
        assigned=assigned,
        unassigned=unassigned,
        dealers=per_dealer.drop(_D),
        stats=stats,
    )


def check_plan(
    plan: AssignResult,
    ranked: pl.DataFrame | pl.LazyFrame,
    capacity: int | pl.DataFrame,
    *,
    default_capacity: int = 0,
) -> Mapping[str, bool]:
    """Check a plan against its inputs, without trusting the solver (e.g. for asset checks).

    Parameters
    ----------
    plan
        What :func:`assign` returned for *ranked*.
    ranked, capacity, default_capacity
        The inputs *plan* was made from (the candidate rule is read from ``plan.stats``). A
        lazy *ranked* is read as :func:`assign` reads it: its candidate pairs and its distinct
        vehicles are collected, not the whole frame.

    Returns
    -------
    Mapping[str, bool]
        ``no_dealer_over_capacity``, ``no_vehicle_placed_twice``,
        ``every_placement_a_candidate_pair`` (a ranked pair that was a candidate),
        ``every_vehicle_accounted_for`` (placed or unassigned, once), ``solver_optimal``
        (the solver's own status) and ``not_worse_than_greedy`` (places at least as many;
        when as many, costs at most as much).

    Examples
    --------
    >>> import polars as pl
    >>> import mm_pipeline as mm
    >>> ranked = pl.DataFrame({"vin": ["V1", "V2"], "price": [9000, 8000], "miles": [1, 2],
    ...                        "source": ["a.com", "a.com"], "zip": ["30907", "30907"],
    ...                        "vin_rank": [1, 1], "rank_exact": [True, True]})
    >>> all(mm.check_plan(mm.assign(ranked, capacity=1), ranked, 1).values())
    True
    """
    s = plan.stats
    read = read_ranked(ranked, pl.lit(0.0), s.max_rank, rows=False)  # no cost needed
    keyed = dealer_frame(plan.assigned).select(*DEALER_COLUMNS, dealer_key().alias(_DEALER))
    assigned = pl.concat([plan.assigned.select(VEHICLE_COLUMNS), keyed], how="horizontal")
    load = assigned.group_by(_DEALER).agg(
        pl.len().alias("placed"), *(pl.col(c).first() for c in DEALER_COLUMNS)
    )
    limit = resolve_capacity(load, capacity, default_capacity=default_capacity)
    candidates = read.candidates.select(*VEHICLE_COLUMNS, _DEALER)
    vehicles = read.vehicles.height
    accounted = pl.concat(
        [plan.assigned.select(VEHICLE_COLUMNS), plan.unassigned.select(VEHICLE_COLUMNS)],
        how="vertical_relaxed",
    )
    tolerance = 1e-9 * max(abs(s.greedy_objective), 1.0)
    return {
        "no_dealer_over_capacity": bool((load.get_column("placed") <= limit).all()),
        "no_vehicle_placed_twice": not assigned.select(VEHICLE_COLUMNS).is_duplicated().any(),
        "every_placement_a_candidate_pair": assigned.join(
            candidates, on=[*VEHICLE_COLUMNS, _DEALER], how="anti", nulls_equal=True
        ).is_empty(),
        "every_vehicle_accounted_for": accounted.height == vehicles
        and not accounted.is_duplicated().any(),
        "solver_optimal": s.optimal,
        "not_worse_than_greedy": s.placed > s.greedy_placed
        or (s.placed == s.greedy_placed and s.objective <= s.greedy_objective + tolerance),
    }
