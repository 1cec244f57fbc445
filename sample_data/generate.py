"""Regenerate the sample data from the sandbox market (deterministic), or a big pairs file.

Usage (from the repository root)::

    python -m sample_data.generate                       # rewrite the committed samples
    python -m sample_data.generate --out DIR             # ... into DIR instead
    python -m sample_data.generate --pairs 1000000     # only sample_data/large/pairs.csv.gz
    python -m sample_data.generate --out /tmp/bench --pairs 1000000   # DIR/pairs.csv.gz

The files and their promises are described in ``sample_data/README.md``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from mm_pipeline._vin import VIN_ALPHABET, check_digit
from mm_pipeline.sandbox._catalog import MAKES
from mm_pipeline.sandbox._market import Market
from mm_pipeline.sandbox._universe import MULTI_LOCATION_SOURCES, PUBLISHED_DEALERS
from mm_pipeline.sandbox._vin import MARKET_DATE, MAX_MODEL_YEAR, MODELS, decode_vins

SEED = 7
HERE = Path(__file__).resolve().parent
VEHICLE_COUNT = 1_200
DEALER_COUNT = 320
PAIR_VEHICLES = 60
"""pairs.csv.gz pairs this many vehicles (a shuffled sample of vehicles.csv) ..."""
CANDIDATES = (10, 150)
"""... each with this many (inclusive range) distinct candidate dealers."""
CAPACITY_SEED = (SEED, 13)
"""Capacities are drawn from their own generator, so the other files do not change with them."""
_NO_CAPACITY = {"franchise": 0.12, "subdomain": 0.25, "independent": 0.2, "multi_location": 0.0}
_CAPACITY_MEAN = {"franchise": 2.5, "subdomain": 1.0, "independent": 1.5, "multi_location": 0.0}

_YEAR_CODE = dict(zip(range(2001, 2031), "123456789ABCDEFGHJKLMNPRSTVWXY", strict=True))
_SERIAL_DIGITS = "0123456789"


def make_vin(rng: np.random.Generator, make_index: int, year: int) -> str:
    """A VIN of *make* and model *year* that decodes (random VDS, plant and serial)."""
    wmis = list(MAKES[make_index].wmis)
    body = "".join(rng.choice(list(VIN_ALPHABET), size=5))
    plant = str(rng.choice(list(VIN_ALPHABET)))
    serial = "".join(rng.choice(list(_SERIAL_DIGITS), size=6))
    draft = f"{wmis[int(rng.integers(len(wmis)))]}{body}0{_YEAR_CODE[year]}{plant}{serial}"
    return draft[:8] + check_digit(draft) + draft[9:]


def make_vehicles(rng: np.random.Generator, count: int) -> pl.DataFrame:
    """Distinct vehicles with valid VINs across makes and years; price and miles fit their age."""
    share = np.array([m.share for m in MAKES])
    vins: dict[str, None] = {}
    while len(vins) < count:
        make_index = int(rng.choice(len(MAKES), p=share / share.sum()))
        first, last = MAKES[make_index].years
        age = int(min(rng.gamma(2.2, 2.6), 20)) - int(rng.random() < 0.04)  # a few 2027s
        year = min(max(MARKET_DATE.year - age, first), MAX_MODEL_YEAR if last >= 2026 else last)
        vins[make_vin(rng, make_index, year)] = None
    vehicles = decode_vins(pl.Series(list(vins))).join(MODELS, on="model_id", maintain_order="left")
    n = vehicles.height
    age = np.maximum(MARKET_DATE.year - vehicles["year"].to_numpy(), 0).astype(np.float64)
    expected = 12_000.0 * np.maximum(age, 0.15)
    miles = np.round(expected * rng.lognormal(0.0, 0.35, n)).astype(np.int64)
    keep = np.where(vehicles["luxury"].to_numpy(), 0.84, 0.88) ** age
    mileage = np.clip(1.0 - 0.25 * (miles - expected) / (expected + 30_000.0), 0.7, 1.15)
    value = vehicles["base_price"].to_numpy() * np.where(age == 0, 1.0, 0.88) * keep * mileage
    value *= rng.lognormal(0.0, 0.08, n)
    price = np.maximum(np.round(value / 100.0) * 100 - 10, 1_490).astype(np.int64)
    return pl.DataFrame({"vin": vehicles["vin"], "price": price, "miles": miles})


def capacities(kinds: pl.Series) -> pl.Series:
    """Vehicles each rooftop takes today: a few for most, none for some (12-25 %), 8-15 for
    about 1 in 12, 8-30 for the multi-location chains."""
    rng = np.random.default_rng(CAPACITY_SEED)
    n = kinds.len()
    kind = kinds.to_list()
    few = 1 + rng.poisson([_CAPACITY_MEAN[k] for k in kind])
    none = rng.random(n) < np.array([_NO_CAPACITY[k] for k in kind])
    more = rng.random(n) < 1 / 12
    chain = np.array([k == "multi_location" for k in kind])
    value = np.where(none, 0, np.where(more, rng.integers(8, 16, n), few))
    return pl.Series("capacity", np.where(chain, rng.integers(8, 31, n), value), pl.Int64)


def make_dealers(market: Market, rng: np.random.Generator, count: int) -> pl.DataFrame:
    """Rooftops of the universe: the published ones first, 4 of each multi-location source, then
    single-location ones; the last 10 give only ``mc_location_id`` (no zip), as do two
    multi-location rows; six more give both. ``capacity`` is what each takes today."""
    universe = market.dealers.with_row_index("_i").select(
        "_i", "source", "zip", "mc_location_id", "multi_location", "kind"
    )
    published = pl.DataFrame(
        [(s, z) for s, z, *_ in PUBLISHED_DEALERS], schema=["source", "zip"], orient="row"
    ).join(universe, on=["source", "zip"], how="inner", maintain_order="left")[universe.columns]
    multi = pl.concat(
        universe.filter(
            pl.col("source") == source, ~pl.col("_i").is_in(published["_i"].to_list())
        ).sample(4, seed=int(rng.integers(1 << 30)))
        for source in MULTI_LOCATION_SOURCES
    )
    singles = universe.filter(
        ~pl.col("multi_location"), ~pl.col("_i").is_in(published["_i"].to_list())
    )
    rest = singles.sample(count - published.height - multi.height, seed=int(rng.integers(1 << 30)))
    row = pl.int_range(pl.len())
    id_only = (row >= count - 10) | row.is_in([7, 11])  # rows 7 and 11 are multi-location
    both = row.is_in([4, 8, 12, 30, 31, 32])
    return (
        pl.concat([published, multi, rest])
        .with_columns(capacities(pl.concat([published, multi, rest])["kind"]))
        .select("source", "zip", "mc_location_id", "capacity")
        .with_columns(
            zip=pl.when(~id_only).then("zip"),
            mc_location_id=pl.when(id_only | both).then("mc_location_id"),
        )
    )


def candidate_counts(
    rng: np.random.Generator, *, vehicles: int | None = None, rows: int = 0
) -> npt.NDArray[np.int64]:
    """How many candidate dealers each vehicle gets: for *vehicles* vehicles, or until *rows*."""
    low, high = CANDIDATES
    if vehicles is not None:
        return rng.integers(low, high + 1, size=vehicles)
    counts = rng.integers(low, high + 1, size=rows // low + 1)
    return counts[: int(np.searchsorted(np.cumsum(counts), rows)) + 1]


def make_pairs(
    vehicles: pl.DataFrame,
    dealers: pl.DataFrame,
    counts: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Batch-shaped pairs: vehicle i against ``counts[i]`` distinct dealers that have a ZIP."""
    with_zip = dealers.filter(pl.col("zip").is_not_null()).select("source", "zip")
    owner = np.repeat(np.arange(len(counts)), counts)
    picks = np.concatenate([rng.choice(with_zip.height, int(c), replace=False) for c in counts])
    return pl.concat([vehicles[owner], with_zip[picks]], how="horizontal")


def make_acquisitions(
    vehicles: pl.DataFrame, dealers: pl.DataFrame, rng: np.random.Generator
) -> pl.DataFrame:
    """Acquisition candidates for /vins/rank: 12 dealers (the published ones, an id-only one,
    random others) with 20-60 vehicles each."""
    chosen = pl.concat(
        [
            dealers.head(5),
            dealers.tail(1),
            dealers.slice(20, dealers.height - 30).sample(6, seed=int(rng.integers(1 << 30))),
        ]
    )
    frames = [
        vehicles.sample(int(rng.integers(20, 61)), seed=int(rng.integers(1 << 30))).with_columns(
            source=pl.lit(source),
            zip=pl.lit(zip_code, pl.String),
            mc_location_id=pl.lit(location, pl.String),
        )
        for source, zip_code, location in chosen.select(
            "source", "zip", "mc_location_id"
        ).iter_rows()
    ]
    return pl.concat(frames).select("source", "zip", "mc_location_id", "vin", "price", "miles")


def make_bad_pairs(vehicles: pl.DataFrame, dealers: pl.DataFrame) -> pl.DataFrame:
    """Six good pairs, then one realistic instance of each problem (see the README)."""
    singles = dealers.slice(25).filter(pl.col("zip").is_not_null())  # single-location rooftops
    source, zip_code = singles.row(0)[:2]
    boston = singles.filter(pl.col("zip").str.starts_with("0")).row(0)
    rows = [
        (vin, str(price), str(miles), source, zip_code)
        for vin, price, miles in vehicles.head(6).iter_rows()
    ]
    vin, price, miles = rows[0][:3]
    other_wmi, late = "9BW" + vin[3:], vin[:9] + "X" + vin[10:]
    swapped = vin[:12] + vin[13] + vin[12] + vin[14:]
    if swapped == vin or check_digit(swapped) == vin[8]:
        swapped = vin[:8] + ("1" if vin[8] != "1" else "2") + vin[9:]
    zero = max(vin.find("0", 10), 11)  # a zero of the serial number (else position 12)
    problems = [
        (vin[:zero] + "O" + vin[zero + 1 :], price, miles, source, zip_code),  # O typed for 0
        (swapped, price, miles, source, zip_code),  # two characters swapped: bad check digit
        (vin[:16], price, miles, source, zip_code),  # a character lost
        (other_wmi[:8] + check_digit(other_wmi) + other_wmi[9:], price, miles, source, zip_code),
        (late[:8] + check_digit(late) + late[9:], price, miles, source, zip_code),  # 2029
        (vin, "0", miles, source, zip_code),
        (vin, "$25,990", miles, source, zip_code),
        (vin, price, "-120", source, zip_code),
        (vin, price, miles, boston[0], boston[1].lstrip("0")),  # ZIP lost its leading zero
        (vin, price, miles, "closed-dealer-autos.com", "30907"),  # not in the market
        (vin, price, miles, "carvana.com", None),  # multi-location without a ZIP
        (vin, price, miles, None, zip_code),  # no source
        rows[1],  # an exact duplicate of an earlier row
    ]
    return pl.DataFrame(
        rows + problems, schema=["vin", "price", "miles", "source", "zip"], orient="row"
    )


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    text = frame.write_csv()
    if path.name.endswith(".gz"):
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:  # reproducible bytes
            gz.write(text.encode())
        path.write_bytes(buffer.getvalue())
    else:
        path.write_text(text)


def write_samples(out: Path) -> list[Path]:
    """Write the committed sample files into *out*; return their paths."""
    rng = np.random.default_rng(SEED)
    market = Market.default()
    vehicles = make_vehicles(rng, VEHICLE_COUNT)
    dealers = make_dealers(market, rng, DEALER_COUNT)
    counts = candidate_counts(rng, vehicles=PAIR_VEHICLES)
    files = {
        "vehicles.csv": vehicles,
        "dealers.csv": dealers,
        "pairs.csv.gz": make_pairs(
            vehicles.sample(fraction=1.0, shuffle=True, seed=SEED), dealers, counts, rng
        ),
        "acquisitions.csv": make_acquisitions(vehicles, dealers, rng),
        "bad_pairs.csv": make_bad_pairs(vehicles, dealers),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in files.items():
        _write_csv(frame, out / name)
    return [out / name for name in files]


def write_big_pairs(out: Path, rows: int) -> Path:
    """Write exactly *rows* batch-shaped pairs to ``out/pairs.csv.gz`` (benchmarks)."""
    rng = np.random.default_rng(SEED + rows)
    counts = candidate_counts(rng, rows=rows)
    vehicles = make_vehicles(rng, len(counts))
    pairs = make_pairs(vehicles, Market.default().dealers, counts, rng).head(rows)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pairs.csv.gz"
    _write_csv(pairs, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: sample_data/, or sample_data/large/ with --pairs)",
    )
    parser.add_argument(
        "--pairs", type=int, default=None, help="write only pairs.csv.gz with exactly N rows"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.pairs is not None:
        paths = [write_big_pairs(args.out or HERE / "large", args.pairs)]
    else:
        paths = write_samples(args.out or HERE)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
