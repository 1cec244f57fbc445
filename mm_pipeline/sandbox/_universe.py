"""The dealer universe: ~30,000 rooftops generated from a fixed seed (no HTTP, no I/O).

Rooftops sit at real US ZIP codes (the ``zipcodes`` package: active, standard ZIPs; its data is
partly CC BY 4.0 GeoNames) and come in four kinds:

- ``franchise``: a new-car dealer of one make, named like real ones (``augustahonda.com``,
  ``mbofaugusta.com``, ``smithtoyota.com``), a third of them in dealer groups;
- ``subdomain``: a used-car storefront of a franchise rooftop, at its ZIP
  (``acceleride.mbofaugusta.com``);
- ``independent``: a used-car dealer (``springfieldautosales.com``, ``eliteautos.com``);
- ``multi_location``: one domain at many ZIPs (``carvana.com``, ``carmax.com``, ...).

Single-location domains are unique. Each rooftop has a stable ``mc_location_id`` (a hash of its
source and ZIP) and traits that drive its per-year/make/model profile (see :mod:`._scoring`):
brand focus, luxury tilt, typical vehicle age, price position, turnover, stock size and a hash
seed. Every dealer of the published examples is present.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

import numpy as np
import polars as pl
import zipcodes

from mm_pipeline.sandbox._catalog import MAKES

__all__ = ["MULTI_LOCATION_SOURCES", "PUBLISHED_DEALERS", "build_universe"]

MULTI_LOCATION_SOURCES: Final = {
    "carvana.com": 40,
    "carmax.com": 70,
    "drivetime.com": 30,
    "enterprisecarsales.com": 25,
    "echopark.com": 15,
}
"""Multi-location domains and their number of rooftops."""

PUBLISHED_DEALERS: Final = (
    ("mbofaugusta.com", "30907", "franchise", "Mercedes-Benz"),
    ("acceleride.mbofaugusta.com", "30907", "subdomain", "Mercedes-Benz"),
    ("esterobaychevrolet.com", "33928", "franchise", "Chevrolet"),
    ("acceleride.esterobaychevrolet.com", "33928", "subdomain", "Chevrolet"),
    ("carvana.com", "95765", "multi_location", None),
)
"""(source, zip, kind, make) of every rooftop named in the published API examples."""

_FRANCHISE_COUNT = 18_000
_INDEPENDENT_COUNT = 11_000
_SUBDOMAIN_SHARE = 0.03
_GROUP_SHARE = 0.35

_SURNAMES = (  # noqa: SIM905 - word lists read best as text
    "smith johnson williams brown jones miller davis garcia wilson anderson taylor thomas "
    "moore jackson martin lee thompson white harris clark lewis walker hall allen young king "
    "wright scott green baker adams nelson hill campbell mitchell roberts carter phillips "
    "evans turner parker collins edwards stewart morris murphy cook rogers morgan cooper "
    "peterson reed bailey bell kelly howard ward cox richardson wood brooks hendrick larson "
    "sullivan ferguson hoffman schmidt mcdonald gallagher fitzgerald keller hanson weber ryan"
).split()
_ADJECTIVES = (  # noqa: SIM905 - word lists read best as text
    "premier elite select budget quality prestige family hometown trusted direct liberty "
    "patriot summit cornerstone midway metro valley lakeside interstate royal victory freedom "
    "pinnacle anchor capital eagle"
).split()
_USED_WORDS = (  # noqa: SIM905 - word lists read best as text
    "autosales motors autos autogroup carcenter usedcars automart autoplex carsales preowned "
    "autoexchange auto"
).split()
_FRANCHISE_PATTERN_P = (0.5, 0.2, 0.2, 0.1)
"""How often a franchise domain is town+make, make+"of"+town, surname+make, make+town."""
_MAKE_SLUG = [re.sub("[^a-z]", "", m.name.lower()) for m in MAKES]
_MAKE_NAMES = dict(enumerate(m.name for m in MAKES))


def _zip_pool() -> pl.DataFrame:
    """Active standard ZIPs with city, state and a domain-friendly town name."""
    rows = [
        (z["zip_code"], z["city"], z["state"])
        for z in zipcodes.list_all()  # type: ignore[no-untyped-call]  # untyped package API
        if z["zip_code_type"] == "STANDARD" and z["active"]
    ]
    pool = pl.DataFrame(rows, schema=["zip", "city", "state"], orient="row")
    return pool.with_columns(
        town=pl.col("city").str.to_lowercase().str.replace_all("[^a-z]", "")
    ).filter(pl.col("town").str.len_chars() > 0)


def _location_id(source: str, zip_code: str) -> str:
    return hashlib.blake2b(f"{source}|{zip_code}".encode(), digest_size=6).hexdigest()


def _claim_all(candidates: pl.DataFrame, taken: set[str]) -> list[str]:
    """Give each row the first of its candidate domains (columns, in order) not yet taken."""
    names = []
    for options in candidates.iter_rows():
        name = next((o for o in options if o not in taken), None)
        if name is None:
            stem, n = options[0].removesuffix(".com"), 2
            while f"{stem}{n}.com" in taken:
                n += 1
            name = f"{stem}{n}.com"
        taken.add(name)
        names.append(name)
    return names


def _pick(rng: np.random.Generator, choices: tuple[str, ...] | list[str], n: int) -> pl.Series:
    return pl.Series(rng.choice(np.array(choices), size=n))


def build_universe(seed: int) -> pl.DataFrame:
    """Generate the rooftops (deterministic for a given *seed* and locked ``zipcodes`` data).

    Returns
    -------
    pl.DataFrame
        One row per rooftop: ``source``, ``zip``, ``mc_location_id``, ``city``, ``state``,
        ``multi_location``, ``kind``, ``group``, ``focus_make`` (null unless franchise or
        subdomain), ``focus_make_id`` (-1 for none), ``luxury_tilt``, ``typical_age``,
        ``price_position``, ``turnover``, ``stock_units`` and ``seed`` (UInt64).
    """
    rng = np.random.default_rng(seed)
    pool = _zip_pool()
    taken = {source for source, *_ in PUBLISHED_DEALERS} | set(MULTI_LOCATION_SOURCES)

    # Franchise rooftops, named from their town, make stem and a surname.
    n = _FRANCHISE_COUNT
    franchise = [i for i, m in enumerate(MAKES) if m.franchise]
    share = np.array([MAKES[i].share for i in franchise])
    make_ids = rng.choice(franchise, size=n, p=share / share.sum())
    stems = [
        MAKES[m].slugs[int(k * len(MAKES[m].slugs))]
        for m, k in zip(make_ids, rng.random(n), strict=True)
    ]
    groups = [f"{name.title()} Automotive Group" for name in rng.choice(_SURNAMES, size=40)]
    town = pl.col("town")
    stem = pl.col("stem")
    parts = pool[rng.integers(0, pool.height, size=n)].with_columns(
        make_id=pl.Series(make_ids, dtype=pl.Int32),
        stem=pl.Series(stems),
        make_slug=pl.Series([_MAKE_SLUG[m] for m in make_ids]),
        surname=_pick(rng, _SURNAMES, n),
        pattern=pl.Series(rng.choice(4, size=n, p=_FRANCHISE_PATTERN_P)),
        group=pl.when(pl.Series(rng.random(n) < _GROUP_SHARE))
        .then(pl.Series(rng.choice(np.array(groups), size=n)))
        .otherwise(None),
        acceleride=pl.Series(rng.random(n) < _SUBDOMAIN_SHARE),
    )
    candidates = parts.select(
        pl.when((pl.col("pattern") == 1) | (stem == "mb"))
        .then(pl.concat_str(stem, pl.lit("of"), town))
        .when(pl.col("pattern") == 0)
        .then(pl.concat_str(town, stem))
        .when(pl.col("pattern") == 2)
        .then(pl.concat_str("surname", stem))
        .otherwise(pl.concat_str(stem, town))
        + ".com",
        pl.concat_str("surname", stem, pl.lit(".com")).alias("c2"),
        pl.concat_str(town, "make_slug", pl.lit("cars.com")).alias("c3"),
    )
    franchise_rows = parts.with_columns(
        source=pl.Series(_claim_all(candidates, taken)), kind=pl.lit("franchise")
    )
    subdomain_rows = franchise_rows.filter("acceleride").with_columns(
        source="acceleride." + pl.col("source"), kind=pl.lit("subdomain")
    )

    # Independent used-car dealers.
    n = _INDEPENDENT_COUNT
    parts = pool[rng.integers(0, pool.height, size=n)].with_columns(
        surname=_pick(rng, _SURNAMES, n),
        adjective=_pick(rng, _ADJECTIVES, n),
        word=_pick(rng, _USED_WORDS, n),
        word2=_pick(rng, _USED_WORDS, n),
        pattern=pl.Series(rng.integers(0, 4, size=n)),
    )
    candidates = parts.select(
        pl.when(pl.col("pattern") == 0)
        .then(pl.concat_str(town, "word"))
        .when(pl.col("pattern") == 1)
        .then(pl.concat_str("surname", "word"))
        .when(pl.col("pattern") == 2)
        .then(pl.concat_str("adjective", "word"))
        .otherwise(pl.concat_str("adjective", "word", town))
        + ".com",
        pl.concat_str(town, "word2", pl.lit(".com")).alias("c2"),
        pl.concat_str("surname", "word2", town, pl.lit(".com")).alias("c3"),
    )
    independent_rows = parts.with_columns(
        source=pl.Series(_claim_all(candidates, taken)), kind=pl.lit("independent")
    )

    # Multi-location domains, each at distinct ZIPs.
    multi_rows = pl.concat(
        pool[rng.choice(pool.height, size=count, replace=False)].with_columns(
            source=pl.lit(source), kind=pl.lit("multi_location")
        )
        for source, count in MULTI_LOCATION_SOURCES.items()
    )

    # The published dealers (a ZIP outside the pool fails the join, loudly, in tests).
    make_id = {m.name: i for i, m in enumerate(MAKES)}
    published = pl.DataFrame(
        [(s, z, k, make_id[m] if m else None) for s, z, k, m in PUBLISHED_DEALERS],
        schema={"source": pl.String, "zip": pl.String, "kind": pl.String, "make_id": pl.Int32},
        orient="row",
    ).join(pool, on="zip", how="inner", maintain_order="left")

    columns = ["source", "zip", "city", "state", "kind", "make_id", "group"]
    rows = pl.concat(
        [
            frame.select(
                [pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in columns]
            )
            for frame in (franchise_rows, subdomain_rows, independent_rows, multi_rows, published)
        ],
        how="vertical_relaxed",
    ).unique(["source", "zip"], keep="first", maintain_order=True)
    return _with_traits(rows, rng)


def _with_traits(rows: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Add ids and draw each rooftop's traits by kind."""
    n = rows.height
    kind = rows["kind"].to_numpy()
    focus = rows["make_id"].fill_null(-1).to_numpy()
    luxury_make = np.array([m.luxury for m in MAKES] + [False])[focus]
    u = rng.random((n, 4))
    normal = rng.standard_normal(n)
    franchise = kind == "franchise"
    subdomain = kind == "subdomain"
    multi = kind == "multi_location"
    tilt = np.select(
        [franchise | subdomain, multi],
        [np.where(luxury_make, 0.8 + 0.15 * u[:, 0], 0.1 + 0.25 * u[:, 0]), 0.3 + 0.1 * u[:, 0]],
        default=u[:, 0] ** 1.5,
    )
    age = np.select(
        [franchise, subdomain, multi],
        [0.5 + 2.5 * u[:, 1], 3 + 4 * u[:, 1], 2.5 + 2 * u[:, 1]],
        default=4 + 8 * u[:, 1],
    )
    position = np.clip(
        np.select([franchise, subdomain, multi], [0.3, -0.1, 0.1], default=-0.35) + 0.35 * normal,
        -1.0,
        1.0,
    )
    turnover = np.select(
        [franchise, multi],
        [0.5 + 0.45 * u[:, 2], 0.75 + 0.2 * u[:, 2]],
        default=0.3 + 0.6 * u[:, 2],
    )
    stock = np.select(
        [franchise, subdomain, multi],
        [80 + 700 * u[:, 3] ** 2, 30 + 120 * u[:, 3], 300 + 1500 * u[:, 3]],
        default=15 + 180 * u[:, 3] ** 2,
    )
    location_ids = [_location_id(s, z) for s, z in rows.select("source", "zip").iter_rows()]
    frame = rows.select(
        "source",
        "zip",
        pl.Series("mc_location_id", location_ids),
        "city",
        "state",
        pl.Series("multi_location", multi),
        "kind",
        "group",
        pl.col("make_id").replace_strict(_MAKE_NAMES, default=None).alias("focus_make"),
        pl.Series("focus_make_id", focus, dtype=pl.Int32),
        pl.Series("luxury_tilt", np.round(tilt, 4)),
        pl.Series("typical_age", np.round(age, 2)),
        pl.Series("price_position", np.round(position, 4)),
        pl.Series("turnover", np.round(turnover, 4)),
        pl.Series("stock_units", np.round(stock).astype(np.int64)),
        pl.Series("seed", rng.integers(0, 2**63, size=n, dtype=np.uint64), dtype=pl.UInt64),
    )
    if frame["mc_location_id"].n_unique() != n:  # pragma: no cover - fixed seed, checked by tests
        msg = "mc_location_id collision"
        raise ValueError(msg)
    return frame
