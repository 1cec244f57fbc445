"""The sandbox market: dealer universe, VIN decoding, scoring and ranking (no HTTP).

Interface (as in ``docs/architecture.md``)::

    class Market:
        def __init__(self, *, seed: int = MARKET_SEED) -> None: ...
        @classmethod
        def default(cls) -> Market: ...          # built once per process (thread-safe)
        dealers: pl.DataFrame                     # the universe, see _universe.build_universe
        def rank_dealers(self, vin: VinSpec, dealers: Sequence[DealerSpec]) -> RankOutcome: ...
        def rank_vins(self, dealer: DealerSpec, vins: Sequence[VinSpec]) -> RankOutcome: ...
        def rank_batch(self, frame: pl.DataFrame, *,
                       progress: Callable[[float], None] | None = None) -> pl.DataFrame: ...

    RankOutcome = Ranked(ranked_matches, failed_items)
                | Unprocessable(message, failed_vins, missing_dealers, multi_location_sources)
    rank_batch raises MissingColumnsError(missing=[...]) when a required column is absent.

**The ranking contract.** Every pair has a fit ``f(vehicle, rooftop)`` computed from that pair
alone (:mod:`._scoring`); ``vin_rank`` orders a request's ranked pairs by fit descending, ties
broken by ``(source, zip, vin)`` of the resolved rooftop (source lower-cased). So ranking any
subset of the same candidates keeps their relative order, and chunks can be merged by fit order.
The same pair gets bit-identical scores online and in batch (one numpy implementation).

**Dealer resolution** (online and batch alike). The source is matched case-insensitively, without
surrounding blanks. With a ``zip`` the rooftop is ``(source, zip)``; with an ``mc_location_id``
it is ``(source, mc_location_id)``; with both they must name the same rooftop; with neither, a
single-location source is its one rooftop and a multi-location source is an error. Anything
else is "dealer not found". Empty strings count as absent.

**Duplicates.** Online, a rooftop named twice in one ``/dealers/rank`` request, or an identical
vehicle spec twice in one ``/vins/rank`` request, is ranked once. In a batch, a row whose
``(vin, rooftop)`` pair appeared on an earlier ranked row gets that row's values and takes no
rank of its own; ranks run 1..N over each VIN's distinct rooftops.

**Batch result columns**: the input columns in input order (an input column named like a result
column is replaced), then ``mc_location_id`` (String), ``vin_score``, ``dealer_ymm_score``
(Float64), ``vin_rank`` (UInt32) and ``error`` (String): null on ranked rows; else
``invalid_row`` (vin not 17 characters; price not a positive integer; miles not a non-negative
integer; zip present but not 5 digits; source empty), ``vin_decode_failed``,
``multi_location_requires_zip`` or ``dealer_not_found`` (first that applies, in this order).
Rows with an error have null ``mc_location_id``, scores and rank.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt
import polars as pl

from mm_pipeline.sandbox._scoring import Scores, Traits, score_pairs
from mm_pipeline.sandbox._universe import build_universe
from mm_pipeline.sandbox._vin import DecodedVin, DecodeFailure, decode_vin, decode_vins

__all__ = [
    "MARKET_SEED",
    "REQUIRED_COLUMNS",
    "RESULT_COLUMNS",
    "DealerSpec",
    "Market",
    "MissingColumnsError",
    "RankOutcome",
    "Ranked",
    "Unprocessable",
    "VinSpec",
]

MARKET_SEED: Final = 20_261_128
REQUIRED_COLUMNS: Final = ("vin", "price", "miles", "source", "zip")
RESULT_COLUMNS: Final = ("mc_location_id", "vin_score", "dealer_ymm_score", "vin_rank", "error")


class VinSpec(TypedDict):
    """A vehicle as the API takes it (shape already validated)."""

    vin: str
    price: int
    miles: int


class DealerSpec(TypedDict):
    """A dealer as the API takes it (shape already validated)."""

    source: str
    zip: NotRequired[str | None]
    mc_location_id: NotRequired[str | None]


@dataclass(frozen=True, slots=True)
class Ranked:
    """A 200 answer: ``ranked_matches`` sorted by ``vin_rank``, plus ``failed_items``."""

    ranked_matches: list[dict[str, Any]]
    failed_items: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Unprocessable:
    """A 422 answer, with the published extras that apply (empty lists otherwise)."""

    message: str
    failed_vins: list[str] = field(default_factory=list)
    missing_dealers: list[dict[str, Any]] = field(default_factory=list)
    multi_location_sources: list[str] = field(default_factory=list)


RankOutcome = Ranked | Unprocessable


class MissingColumnsError(ValueError):
    """The batch frame lacks required columns (the job fails)."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(f"missing required columns: {', '.join(self.missing)}")


# Outcomes of resolving one dealer spec (rooftop indices are >= 0).
_MISSING: Final = -1
_MULTI: Final = -2


class Market:
    """The deterministic sandbox market.

    Parameters
    ----------
    seed
        Seed of the dealer universe; the default gives the published dealers and the sample data.

    Examples
    --------
    >>> market = Market.default()
    >>> vehicle = {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000}
    >>> dealers = [
    ...     {"source": "mbofaugusta.com", "zip": "30907"},
    ...     {"source": "carvana.com", "zip": "95765"},
    ... ]
    >>> [(m["source"], m["vin_rank"]) for m in market.rank_dealers(vehicle, dealers).ranked_matches]
    [('carvana.com', 1), ('mbofaugusta.com', 2)]
    >>> market.rank_dealers(vehicle, [{"source": "carvana.com"}]).multi_location_sources
    ['carvana.com']
    """

    _default: ClassVar[Market | None] = None
    _default_lock: ClassVar = threading.Lock()

    def __init__(self, *, seed: int = MARKET_SEED) -> None:
        self.dealers: pl.DataFrame = build_universe(seed)
        self._traits = Traits.from_frame(self.dealers)
        self._zips: list[str] = self.dealers["zip"].to_list()
        self._ids: list[str] = self.dealers["mc_location_id"].to_list()
        sources: list[str] = self.dealers["source"].to_list()
        self._by_source: dict[str, int] = {}  # the rooftop of a single-location source
        for i, source in enumerate(sources):
            self._by_source[source] = _MULTI if source in self._by_source else i
        self._by_zip = {(s, z): i for i, (s, z) in enumerate(zip(sources, self._zips, strict=True))}
        self._by_id = {(s, m): i for i, (s, m) in enumerate(zip(sources, self._ids, strict=True))}
        # Each rooftop's position in (source, zip) order: the tie-break of equal fits.
        self._ordinal = np.empty(self.dealers.height, dtype=np.int64)
        self._ordinal[np.lexsort((self._zips, sources))] = np.arange(self.dealers.height)
        index = pl.int_range(pl.len(), dtype=pl.Int64).alias("_rooftop")
        self._source_table = (
            self.dealers.select(pl.col("source").alias("_src"), index)
            .group_by("_src")
            .agg(pl.len().alias("_locations"), pl.col("_rooftop").first().alias("_only"))
        )
        self._zip_table = self.dealers.select(
            pl.col("source").alias("_src"), pl.col("zip").alias("_zip_in"), index.alias("_by_zip")
        )
        self._id_table = self.dealers.select(
            pl.col("source").alias("_src"),
            pl.col("mc_location_id").alias("_id_in"),
            index.alias("_by_id"),
        )

    @classmethod
    def default(cls) -> Market:
        """Return the process-wide market built from :data:`MARKET_SEED` (built on first use)."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    # -- online ------------------------------------------------------------------------------

    def _resolve(self, spec: DealerSpec) -> int:
        """Map a dealer spec to a rooftop index, or ``_MISSING`` / ``_MULTI``."""
        source = spec["source"].strip().lower()
        zip_code = spec.get("zip") or None
        location = spec.get("mc_location_id") or None
        if zip_code is not None:
            found = self._by_zip.get((source, zip_code), _MISSING)
            if location is not None and self._by_id.get((source, location)) != found:
                return _MISSING
            return found
        if location is not None:
            return self._by_id.get((source, location), _MISSING)
        return self._by_source.get(source, _MISSING)

    def _match(self, vin: VinSpec, source: str, rooftop: int) -> dict[str, Any]:
        return {
            "vin": vin["vin"],
            "price": vin["price"],
            "miles": vin["miles"],
            "source": source,
            "zip": self._zips[rooftop],
            "mc_location_id": self._ids[rooftop],
        }

    def _score(self, vehicles: list[tuple[VinSpec, DecodedVin]], rooftops: list[int]) -> Scores:
        return score_pairs(
            price=np.array([float(v["price"]) for v, _ in vehicles]),
            miles=np.array([float(v["miles"]) for v, _ in vehicles]),
            year=np.array([d.year for _, d in vehicles], dtype=np.int64),
            model_id=np.array([d.model_id for _, d in vehicles], dtype=np.int64),
            traits=self._traits.take(np.array(rooftops, dtype=np.int64)),
        )

    def _ranked(
        self, matches: list[dict[str, Any]], rooftops: list[int], scores: Scores
    ) -> list[dict[str, Any]]:
        """Attach scores and ranks; order by fit desc, then rooftop (source, zip), then vin."""
        vin_scores = scores.vin_score.tolist()
        ymm_scores = scores.dealer_ymm_score.tolist()
        fits = scores.fit.tolist()
        ordinals = self._ordinal[rooftops].tolist()
        order = sorted(
            range(len(matches)), key=lambda i: (-fits[i], ordinals[i], matches[i]["vin"])
        )
        ranked = []
        for rank, i in enumerate(order, start=1):
            match = matches[i]
            match["vin_score"] = vin_scores[i]
            match["dealer_ymm_score"] = ymm_scores[i]
            match["vin_rank"] = rank
            ranked.append(match)
        return ranked

    def rank_dealers(self, vin: VinSpec, dealers: Sequence[DealerSpec]) -> RankOutcome:
        """Rank candidate dealers for one vehicle (``POST /v2/marketmatch/dealers/rank``).

        Returns
        -------
        RankOutcome
            ``Ranked`` with every distinct rooftop ranked (``failed_items`` empty), or
            ``Unprocessable`` listing the undecodable VIN, the dealers not found (as given) and
            the multi-location sources given without ``zip``/``mc_location_id``, all at once.
        """
        decoded = decode_vin(vin["vin"])
        resolved = [self._resolve(spec) for spec in dealers]
        failed_vins = [vin["vin"]] if isinstance(decoded, DecodeFailure) else []
        missing = [dict(s) for s, r in zip(dealers, resolved, strict=True) if r == _MISSING]
        multi = [s["source"] for s, r in zip(dealers, resolved, strict=True) if r == _MULTI]
        if failed_vins or missing or multi:
            return _unprocessable(failed_vins, missing, list(dict.fromkeys(multi)), decoded)
        assert isinstance(decoded, DecodedVin)  # noqa: S101 - narrowed by failed_vins above
        first: dict[int, str] = {}
        for spec, rooftop in zip(dealers, resolved, strict=True):
            first.setdefault(rooftop, spec["source"])
        rooftops = list(first)
        matches = [self._match(vin, first[r], r) for r in rooftops]
        scores = self._score([(vin, decoded)], rooftops)
        return Ranked(self._ranked(matches, rooftops, scores))

    def rank_vins(self, dealer: DealerSpec, vins: Sequence[VinSpec]) -> RankOutcome:
        """Rank candidate vehicles for one dealer (``POST /v2/marketmatch/vins/rank``).

        Returns
        -------
        RankOutcome
            ``Ranked`` with the decodable vehicles ranked and the others in ``failed_items``
            (null scores and rank); ``Unprocessable`` when the dealer is not found, is
            multi-location without ``zip``/``mc_location_id``, or no VIN decodes.
        """
        rooftop = self._resolve(dealer)
        distinct: dict[tuple[str, int, int], VinSpec] = {}
        for v in vins:
            distinct.setdefault((v["vin"], v["price"], v["miles"]), v)
        decoded = [(v, decode_vin(v["vin"])) for v in distinct.values()]
        good = [(v, d) for v, d in decoded if isinstance(d, DecodedVin)]
        failed = [v for v, d in decoded if isinstance(d, DecodeFailure)]
        if rooftop < 0 or not good:
            return _unprocessable(
                [v["vin"] for v in failed] if not good else [],
                [dict(dealer)] if rooftop == _MISSING else [],
                [dealer["source"]] if rooftop == _MULTI else [],
                decoded[0][1] if len(decoded) == 1 else None,
            )
        source = dealer["source"]
        matches = [self._match(v, source, rooftop) for v, _ in good]
        failed_items = [
            self._match(v, source, rooftop)
            | {"vin_score": None, "dealer_ymm_score": None, "vin_rank": None}
            for v in failed
        ]
        scores = self._score(good, [rooftop])
        return Ranked(self._ranked(matches, [rooftop] * len(good), scores), failed_items)

    # -- batch -------------------------------------------------------------------------------

    def rank_batch(
        self, frame: pl.DataFrame, *, progress: Callable[[float], None] | None = None
    ) -> pl.DataFrame:
        """Rank a batch file's rows: the dealers of each VIN across all of that VIN's rows.

        Parameters
        ----------
        frame
            The uploaded CSV (any column types; read as strings), with at least ``vin``,
            ``price``, ``miles``, ``source`` and ``zip``; an optional ``mc_location_id`` column
            is used for dealer resolution; other columns are carried through.
        progress
            Called with the fraction done (0..1) after each stage; it may raise to cancel.

        Returns
        -------
        pl.DataFrame
            One row per input row, in input order; columns as in the module docstring.

        Raises
        ------
        MissingColumnsError
            When a required column is absent.
        """
        report = progress or (lambda _fraction: None)
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise MissingColumnsError(missing)
        report(0.0)
        work = self._validate(frame)
        report(0.15)
        decoded = decode_vins(work.filter(pl.col("_vin").str.len_chars() == 17)["_vin"])
        work = work.join(
            decoded.rename({"vin": "_vin"}).with_row_index("_vid"),
            on="_vin",
            how="left",
            maintain_order="left",
        )
        report(0.4)
        work = self._resolve_frame(work)
        report(0.6)
        result = self._rank_rows(work.filter(pl.col("error").is_null()), work.height)
        report(0.9)
        kept = [c for c in frame.columns if c not in RESULT_COLUMNS]
        out = pl.concat([frame.select(kept), result, work.select("error")], how="horizontal")
        report(1.0)
        return out

    @staticmethod
    def _validate(frame: pl.DataFrame) -> pl.DataFrame:
        """Normalise the key columns to strings and flag rows with invalid values."""

        def text(name: str) -> pl.Expr:
            value = pl.col(name).cast(pl.String)
            return pl.when(value != "").then(value)

        def count(name: str) -> pl.Expr:
            value = pl.col(name).cast(pl.String)
            return pl.when(value.str.contains(r"^[0-9]{1,12}$")).then(value.str.to_integer())

        location = text("mc_location_id") if "mc_location_id" in frame.columns else pl.lit(None)
        work = frame.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
            pl.col("vin").cast(pl.String).fill_null("").alias("_vin"),
            count("price").alias("_price"),
            count("miles").alias("_miles"),
            text("source").str.strip_chars().str.to_lowercase().replace("", None).alias("_src"),
            text("zip").alias("_zip_in"),
            location.cast(pl.String).alias("_id_in"),
        )
        valid = (
            (pl.col("_vin").str.len_chars() == 17)
            & (pl.col("_price") > 0)
            & (pl.col("_miles") >= 0)
            & (pl.col("_zip_in").is_null() | pl.col("_zip_in").str.contains(r"^[0-9]{5}$"))
            & pl.col("_src").is_not_null()
        )
        return work.with_columns(invalid=~valid.fill_null(value=False))

    def _resolve_frame(self, work: pl.DataFrame) -> pl.DataFrame:
        """Resolve each row's rooftop (as :meth:`_resolve`) and set its ``error``."""
        work = (
            work.join(self._source_table, on="_src", how="left", maintain_order="left")
            .join(self._zip_table, on=["_src", "_zip_in"], how="left", maintain_order="left")
            .join(self._id_table, on=["_src", "_id_in"], how="left", maintain_order="left")
        )
        has_zip = pl.col("_zip_in").is_not_null()
        has_id = pl.col("_id_in").is_not_null()
        multi = ~has_zip & ~has_id & (pl.col("_locations") > 1)
        rooftop = (
            pl.when(has_zip & has_id & (pl.col("_by_zip") != pl.col("_by_id")))
            .then(None)
            .when(has_zip)
            .then("_by_zip")
            .when(has_id)
            .then("_by_id")
            .when(pl.col("_locations") == 1)
            .then("_only")
        )
        error = (
            pl.when("invalid")
            .then(pl.lit("invalid_row"))
            .when(pl.col("reason").is_not_null() | pl.col("model_id").is_null())
            .then(pl.lit("vin_decode_failed"))
            .when(multi)
            .then(pl.lit("multi_location_requires_zip"))
            .when(pl.col("_rooftop").is_null())
            .then(pl.lit("dealer_not_found"))
        )
        return work.with_columns(rooftop.alias("_rooftop")).with_columns(error.alias("error"))

    def _rank_rows(self, ok: pl.DataFrame, height: int) -> pl.DataFrame:
        """Score and rank the valid rows; return the four result columns for all *height* rows.

        Rows not in *ok* get nulls. Each distinct (vin, rooftop) pair is scored once, from its
        first row, and every row of the pair gets its values; ranks order each VIN's distinct
        pairs by fit descending, then by the rooftops' (source, zip) order.
        """
        positions = ok["_row"].to_numpy()
        rooftop = ok["_rooftop"].to_numpy().astype(np.int64)
        vid = ok["_vid"].to_numpy().astype(np.int64)
        _, first, pair_of_row = np.unique(
            (vid << 20) | rooftop, return_index=True, return_inverse=True
        )
        scores = score_pairs(
            price=ok["_price"].to_numpy()[first].astype(np.float64),
            miles=ok["_miles"].to_numpy()[first].astype(np.float64),
            year=ok["year"].to_numpy()[first].astype(np.int64),
            model_id=ok["model_id"].to_numpy()[first].astype(np.int64),
            traits=self._traits.take(rooftop[first]),
        )
        pair_vid = vid[first]
        order = _order_pairs(pair_vid, scores.fit, self._ordinal[rooftop[first]])
        sorted_vid = pair_vid[order]
        starts = np.flatnonzero(np.r_[True, sorted_vid[1:] != sorted_vid[:-1]])
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        rank = np.empty(len(order), dtype=np.uint32)
        rank[order] = np.arange(len(order)) - group_start + 1

        def spread(name: str, per_pair: npt.NDArray[Any]) -> pl.Series:
            full = np.zeros(height, dtype=per_pair.dtype)
            full[positions] = per_pair[pair_of_row]
            return pl.Series(name, full)

        rooftops = np.zeros(height, dtype=np.int64)
        rooftops[positions] = rooftop
        ranked = np.zeros(height, dtype=bool)
        ranked[positions] = True
        columns = [
            self.dealers["mc_location_id"].gather(rooftops),
            spread("vin_score", scores.vin_score),
            spread("dealer_ymm_score", scores.dealer_ymm_score),
            spread("vin_rank", rank),
        ]
        mask = pl.Series(ranked)
        return pl.select(pl.when(mask).then(column).alias(column.name) for column in columns)


def _order_pairs(
    vid: npt.NDArray[np.int64], fit: npt.NDArray[np.float64], ordinal: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp]:
    """Order pairs by VIN, fit descending, then rooftop ordinal.

    Two stable sorts; the three-key sort only when two pairs of one VIN have exactly equal fits.
    """
    by_fit = np.argsort(-fit, kind="stable")
    order = by_fit[np.argsort(vid[by_fit], kind="stable")]
    same_vin = vid[order][1:] == vid[order][:-1]
    if np.any(same_vin & (fit[order][1:] == fit[order][:-1])):
        order = np.lexsort((ordinal, -fit, vid))
    return order


def _unprocessable(
    failed_vins: list[str],
    missing: list[dict[str, Any]],
    multi: list[str],
    decoded: DecodedVin | DecodeFailure | None,
) -> Unprocessable:
    """Build the 422 outcome; its message names every problem."""
    parts = []
    if failed_vins:
        detail = f" ({decoded.message})" if isinstance(decoded, DecodeFailure) else ""
        parts.append(f"VIN decoding failed for all VINs: {', '.join(failed_vins)}{detail}")
    if missing:
        names = ", ".join(
            f"{d['source']} ({d.get('zip') or d.get('mc_location_id') or 'no zip'})"
            for d in missing
        )
        parts.append(f"Dealer not found: {names}")
    if multi:
        parts.append(f"Multi-location dealer requires zip or mc_location_id: {', '.join(multi)}")
    return Unprocessable("; ".join(parts), failed_vins, missing, multi)
