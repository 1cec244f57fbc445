"""The bad-input corpus: each case's input and its expected outcome.

Every case is run against the sandbox over loopback by ``test_corpus.py``, which also counts the
requests the sandbox received. ``docs/bad-input.md`` is this corpus as a table, rendered by
:func:`render_table` (``python -m tests.bad_input.corpus > docs/bad-input.md``); a test keeps
the two in step.

Frames put a valid pair at row 0 and the bad one at row 1, so messages must name ``row 1``.
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import polars as pl

import mm_pipeline as mm
from mm_pipeline.sandbox._market import Market

__all__ = [
    "CASES",
    "Case",
    "Exits",
    "FileInput",
    "Ranked",
    "Refused",
    "Submitted",
    "render_table",
]

Via = Literal["rank_dealers", "rank_vins", "submit", "cli rank dealers", "cli batch submit"]

VIN = "WP1BE2AY5PDA28064"
GOOD: dict[str, Any] = {
    "vin": VIN,
    "price": 20000,
    "miles": 3000,
    "source": "mbofaugusta.com",
    "zip": "30907",
}
OTHER_DEALER = {"source": "acceleride.mbofaugusta.com", "zip": "30907"}
ZERO_ZIP_DEALER = {"source": "dorchestercenterram.com", "zip": "02124"}  # single location
MULTI_LOCATION = "carvana.com"
UNDECODABLE_VIN = "00000000000000000"  # valid check digit, unknown manufacturer (WMI "000")
HEADER = "vin,price,miles,source,zip\n"
GOOD_LINE = f"{VIN},20000,3000,mbofaugusta.com,30907\n"
MANY_DEALERS = 10_000


@dataclass(frozen=True)
class FileInput:
    """A file the case writes to a temporary folder before the call."""

    name: str
    content: bytes


@dataclass(frozen=True, kw_only=True)
class Refused:
    """The call raises ``error`` (message containing every ``says``); nothing is sent."""

    error: type[Exception] = mm.InvalidInputError
    says: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Ranked:
    """The call returns ``ranked`` rows and ``failed`` rows per error code.

    ``requests`` is the exact number the sandbox receives (and ``stats.requests``); ``None``
    for the batch route, whose status polls depend on timing (then the sandbox's count must
    equal ``stats.requests``). ``says`` must appear in the failed rows' messages; some ranked
    row carries the values in ``has``.
    """

    ranked: int
    requests: int | None
    failed: Mapping[str, int] = field(default_factory=dict)
    says: tuple[str, ...] = ()
    has: Mapping[str, Any] = field(default_factory=dict)
    duplicates: int = 0


@dataclass(frozen=True, kw_only=True)
class Exits:
    """The command exits with ``code``, printing ``says``, without a traceback.

    With code 0, OUT holds ``ranked`` rows and the failed file ``failed`` rows.
    """

    code: int
    requests: int
    says: tuple[str, ...] = ()
    ranked: int = 0
    failed: int = 0


@dataclass(frozen=True, kw_only=True)
class Submitted:
    """``BatchClient.submit`` returns a PROCESSING job (``requests``: list + submit)."""

    requests: int = 2


Expected = Refused | Ranked | Exits | Submitted


@dataclass(frozen=True, kw_only=True)
class Case:
    """One bad input: what it is, how to build it, where it goes, what must happen."""

    id: str
    what: str
    make: Callable[[], Any]
    expect: Expected
    via: Via = "rank_dealers"
    options: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[mm.RankResult], None] | None = None
    """Further assertions on the result (beyond ``expect``)."""


def frame(*rows: Mapping[str, Any], **overrides: Any) -> pl.DataFrame:
    """The good row, then one row per mapping (GOOD with those values), as a frame."""
    return pl.DataFrame([GOOD, *({**GOOD, **row} for row in rows)], **overrides)


def with_column(name: str, values: list[Any], dtype: Any = None) -> pl.DataFrame:
    """Two good rows whose column ``name`` is replaced by ``values`` (of ``dtype``)."""
    base = pl.DataFrame([GOOD, {**GOOD, **OTHER_DEALER}])
    return base.with_columns(pl.Series(name, values, dtype=dtype, strict=False))


def empty(**dtypes: Any) -> pl.DataFrame:
    """A frame with the five pair columns (String/Int64 unless given) and no rows."""
    schema = {"vin": pl.String, "price": pl.Int64, "miles": pl.Int64, "source": pl.String}
    return pl.DataFrame(schema={**schema, "zip": pl.String, **dtypes})


def many_dealers() -> pl.DataFrame:
    """One vehicle with 10,000 candidate dealers from the sandbox universe."""
    dealers = Market.default().dealers.head(MANY_DEALERS).select("source", "zip")
    return dealers.select(
        vin=pl.lit(VIN), price=pl.lit(20000), miles=pl.lit(3000), source="source", zip="zip"
    )


def exact_ranks(result: mm.RankResult) -> pl.DataFrame:
    """The result's ranks beside the ranks of one exact ranking of the same pairs."""
    pairs = result.ranked.select("vin", "price", "miles", "source", "zip")
    truth = Market.default().rank_batch(pairs.cast(pl.String))
    keys = ["source", "zip"]
    return result.ranked.select(*keys, "vin_rank", "rank_exact").join(
        truth.select(*keys, pl.col("vin_rank").alias("true_rank")), on=keys, validate="1:1"
    )


def top_k_is_exact(result: mm.RankResult) -> None:
    """Ranks 1..K (K = stats.exact_top_k) are the exact ranks and say so; all are 1..N."""
    joined = exact_ranks(result)
    k = result.stats.exact_top_k
    top = joined.filter(pl.col("vin_rank") <= k)
    assert top.height == k
    assert top.get_column("rank_exact").all()
    assert (top.get_column("vin_rank") == top.get_column("true_rank")).all()
    assert sorted(joined.get_column("vin_rank").to_list()) == list(range(1, MANY_DEALERS + 1))
    assert result.stats.requests == mm.plan(many_dealers()).requests


def all_ranks_exact(result: mm.RankResult) -> None:
    """Every rank is the exact rank (the batch route ranks a vehicle's dealers in one job)."""
    joined = exact_ranks(result)
    assert joined.height == MANY_DEALERS
    assert (joined.get_column("vin_rank") == joined.get_column("true_rank")).all()
    assert result.ranked.get_column("rank_exact").all()
    assert len(result.stats.batch_job_ids) == 1


def same_as_eager(result: mm.RankResult) -> None:
    """The LazyFrame's two pairs (one vehicle) are ranked 1 and 2, as the DataFrame's are."""
    assert result.ranked.height == 2
    assert result.ranked.get_column("vin_rank").sort().to_list() == [1, 2]


def text_file(name: str, text: str, *, encoding: str = "utf-8") -> Callable[[], FileInput]:
    return lambda: FileInput(name, text.encode(encoding))


def raw_file(name: str, content: bytes) -> Callable[[], FileInput]:
    return lambda: FileInput(name, content)


def long_text(length: int) -> str:
    return "a" * (length - 4) + ".com"


CASES: tuple[Case, ...] = (
    # -- columns and dtypes -------------------------------------------------------------------
    Case(
        id="missing-column",
        what="no `price` column",
        make=lambda: frame().drop("price"),
        expect=Refused(says=("missing required column(s) price",)),
    ),
    Case(
        id="missing-column-on-invalid-fail",
        what="no `source` column, with `on_invalid='fail'`",
        make=lambda: frame().drop("source"),
        options={"on_invalid": "fail"},
        expect=Refused(says=("missing required column(s) source",)),
    ),
    Case(
        id="no-columns",
        what="a frame with no columns at all",
        make=pl.DataFrame,
        expect=Refused(says=("vin, price, miles, source", "got columns (none)")),
    ),
    Case(
        id="upper-case-column-names",
        what="columns named `VIN`, `PRICE`, ... (names are case-sensitive)",
        make=lambda: frame().rename(str.upper),
        expect=Refused(says=("missing required column(s) vin, price, miles, source", "VIN")),
    ),
    Case(
        id="extra-columns",
        what="extra columns (`stock_no`, `notes`)",
        make=lambda: frame(OTHER_DEALER).with_columns(stock_no=pl.lit(7), notes=pl.lit("x")),
        expect=Ranked(ranked=2, requests=1),
    ),
    Case(
        id="price-miles-as-text",
        what='`price` and `miles` as text (`"20000"`, `" 3000.0 "`)',
        make=lambda: with_column("price", ["20000", "20000"]).with_columns(
            miles=pl.lit(" 3000.0 ")
        ),
        expect=Ranked(ranked=2, requests=1, has={"price": 20000, "miles": 3000}),
    ),
    Case(
        id="price-thousands-separator",
        what='`price` `"20,000"` (text with a separator)',
        make=lambda: with_column("price", ["20000", "20,000"]),
        expect=Refused(says=('row 1: price is not a whole number (got "20,000")',)),
    ),
    Case(
        id="price-boolean-dtype",
        what="`price` column of Booleans",
        make=lambda: with_column("price", [True, False], pl.Boolean),
        expect=Refused(says=("row 0: price is not a whole number (got true)", "row 1")),
    ),
    Case(
        id="price-date-dtype",
        what="`price` column of dates",
        make=lambda: with_column("price", [dt.date(2020, 1, 1)] * 2, pl.Date),
        expect=Refused(says=("price is not a whole number (got 2020-01-01)",)),
    ),
    Case(
        id="vin-integer-dtype",
        what="`vin` column of integers",
        make=lambda: with_column("vin", [12345, 67890], pl.Int64),
        expect=Refused(says=("row 1: vin must be exactly 17 characters (got 67890)",)),
    ),
    Case(
        id="source-list-dtype",
        what="`source` column of lists",
        make=lambda: with_column("source", [["a.com"], ["b.com"]]),
        expect=Refused(says=("row 1: source is not text",)),
    ),
    Case(
        id="categorical-and-decimal",
        what="`source` Categorical, `price` Decimal(10, 2)",
        make=lambda: frame(OTHER_DEALER).with_columns(
            pl.col("source").cast(pl.Categorical), pl.col("price").cast(pl.Decimal(10, 2))
        ),
        expect=Ranked(ranked=2, requests=1, has={"price": 20000}),
    ),
    # -- nulls --------------------------------------------------------------------------------
    Case(
        id="null-vin",
        what="`vin` null",
        make=lambda: frame({"vin": None}),
        expect=Refused(says=("row 1: vin is missing",)),
    ),
    Case(
        id="null-price-on-invalid-fail",
        what="`price` null, with `on_invalid='fail'`",
        make=lambda: frame({"price": None, **OTHER_DEALER}),
        options={"on_invalid": "fail"},
        expect=Ranked(
            ranked=1, requests=1, failed={"invalid_input": 1}, says=("row 1: price is missing",)
        ),
    ),
    Case(
        id="null-source",
        what="`source` null",
        make=lambda: frame({"source": None}),
        expect=Refused(says=("row 1: source is missing",)),
    ),
    Case(
        id="null-zip-single-location",
        what="`zip` null for a single-location dealer",
        make=lambda: frame({"source": ZERO_ZIP_DEALER["source"], "zip": None}),
        expect=Ranked(ranked=2, requests=1, has={"source": ZERO_ZIP_DEALER["source"]}),
    ),
    Case(
        id="all-null-zip-column",
        what="`zip` column entirely null (dtype Null)",
        make=lambda: pl.DataFrame(
            [{**GOOD, "zip": None}, {**GOOD, "source": ZERO_ZIP_DEALER["source"], "zip": None}]
        ),
        expect=Ranked(ranked=2, requests=1),
    ),
    Case(
        id="null-zip-multi-location",
        what="`zip` null for a multi-location dealer",
        make=lambda: frame({"source": MULTI_LOCATION, "zip": None}),
        expect=Ranked(
            ranked=1,
            requests=2,
            failed={"multi_location_requires_zip": 1},
            says=("give zip or mc_location_id",),
        ),
    ),
    # -- empty frames -------------------------------------------------------------------------
    Case(
        id="empty-frame",
        what="0 rows (typed columns)",
        make=empty,
        expect=Ranked(ranked=0, requests=0),
    ),
    Case(
        id="empty-frame-rank-vins",
        what="0 rows, `rank_vins`",
        make=empty,
        via="rank_vins",
        expect=Ranked(ranked=0, requests=0),
    ),
    Case(
        id="empty-frame-null-dtypes",
        what="0 rows, every column of dtype Null",
        make=lambda: pl.DataFrame({name: [] for name in ("vin", "price", "miles", "source")}),
        expect=Ranked(ranked=0, requests=0),
    ),
    Case(
        id="empty-lazyframe",
        what="0 rows as a LazyFrame",
        make=lambda: empty().lazy(),
        expect=Ranked(ranked=0, requests=0),
    ),
    Case(
        id="empty-frame-batch-mode",
        what="0 rows, `mode='batch'`",
        make=empty,
        options={"mode": "batch"},
        expect=Ranked(ranked=0, requests=0),
    ),
    Case(
        id="all-rows-invalid-on-invalid-fail",
        what="every row invalid, with `on_invalid='fail'`",
        make=lambda: frame({"price": -1}).with_columns(miles=pl.lit(-5)),
        options={"on_invalid": "fail"},
        expect=Ranked(
            ranked=0,
            requests=0,
            failed={"invalid_input": 2},
            says=("row 0: miles must be a non-negative whole number (got -5)", "row 1: price"),
        ),
    ),
    # -- VINs ---------------------------------------------------------------------------------
    Case(
        id="vin-too-short",
        what="VIN of 16 characters",
        make=lambda: frame({"vin": VIN[:16]}),
        expect=Refused(says=(f'row 1: vin must be exactly 17 characters (got "{VIN[:16]}")',)),
    ),
    Case(
        id="vin-too-long",
        what="VIN of 18 characters",
        make=lambda: frame({"vin": VIN + "1"}),
        expect=Refused(says=("row 1: vin must be exactly 17 characters",)),
    ),
    Case(
        id="vin-with-i-o-q",
        what="VIN containing I, O and Q",
        make=lambda: frame({"vin": "WP1BE2AY5PDAIOQ64"}),
        expect=Refused(says=("row 1: vin may only contain 0-9 and A-Z except I, O and Q",)),
    ),
    Case(
        id="vin-bad-check-digit",
        what="VIN whose check digit (9th character) is wrong",
        make=lambda: frame({"vin": "WP1BE2AY6PDA28064"}),
        expect=Refused(says=("row 1: vin has a wrong check digit (9th character)",)),
    ),
    Case(
        id="vin-lower-case-with-spaces",
        what='VIN `"  wp1be2ay5pda28064 "` (lower case, padded)',
        make=lambda: frame({"vin": "  wp1be2ay5pda28064 ", **OTHER_DEALER}),
        expect=Ranked(ranked=2, requests=1, has={"vin": VIN, **OTHER_DEALER}),
    ),
    Case(
        id="vin-tab-and-newline-around",
        what="VIN wrapped in a tab and a newline",
        make=lambda: frame({"vin": f"\t{VIN.lower()}\n", **OTHER_DEALER}),
        expect=Ranked(ranked=2, requests=1, has={"vin": VIN, **OTHER_DEALER}),
    ),
    Case(
        id="vin-newline-inside",
        what="VIN with a newline in the middle",
        make=lambda: frame({"vin": VIN[:9] + "\n" + VIN[9:]}),
        expect=Refused(
            says=(r'row 1: vin may only contain 0-9 and A-Z except I, O and Q (got "WP1BE2AY5\x0a',)
        ),
    ),
    Case(
        id="vin-unicode-lookalike",
        what="VIN with a Cyrillic A (U+0410) for the Latin A",
        make=lambda: frame({"vin": VIN.replace("A", "\u0410", 1)}),
        expect=Refused(says=("row 1: vin may only contain",)),
    ),
    Case(
        id="vin-fullwidth-digit",
        what="VIN whose last digit is fullwidth (U+FF14)",
        make=lambda: frame({"vin": VIN[:16] + "\uff14"}),
        expect=Refused(says=("row 1: vin may only contain 0-9 and A-Z except I, O and Q",)),
    ),
    Case(
        id="vin-long-s",
        what="VIN in lower case with a long s (U+017F, upper-cased to S by Unicode rules)",
        make=lambda: frame({"vin": "5fnyf8h54\u017fb000197"}),
        expect=Refused(says=("row 1: vin may only contain 0-9 and A-Z except I, O and Q",)),
    ),
    Case(
        id="vin-undecodable",
        what="well-formed VIN of an unknown manufacturer",
        make=lambda: frame({"vin": UNDECODABLE_VIN}),
        expect=Ranked(ranked=1, requests=2, failed={"vin_decode_failed": 1}),
    ),
    # -- prices and miles ---------------------------------------------------------------------
    Case(
        id="price-zero",
        what="`price` 0",
        make=lambda: frame({"price": 0}),
        expect=Refused(says=("row 1: price must be a positive whole number (got 0)",)),
    ),
    Case(
        id="price-negative",
        what="`price` -20000",
        make=lambda: frame({"price": -20000}),
        expect=Refused(says=("row 1: price must be a positive whole number (got -20000)",)),
    ),
    Case(
        id="price-fractional",
        what="`price` 19999.5",
        make=lambda: frame({"price": 19999.5}),
        expect=Refused(says=("row 1: price is not a whole number (got 19999.5)",)),
    ),
    Case(
        id="price-whole-float",
        what="`price` 20000.0 (a whole number as a float)",
        make=lambda: frame({"price": 20000.0, **OTHER_DEALER}),
        expect=Ranked(ranked=2, requests=1, has={"price": 20000, **OTHER_DEALER}),
    ),
    Case(
        id="price-nan",
        what="`price` NaN",
        make=lambda: frame({"price": float("nan")}),
        expect=Refused(says=("row 1: price is not a whole number (got NaN)",)),
    ),
    Case(
        id="price-beyond-int64",
        what='`price` `"99999999999999999999"` (beyond 64 bits)',
        make=lambda: with_column("price", ["20000", "99999999999999999999"]),
        expect=Refused(says=("row 1: price is not a whole number",)),
    ),
    Case(
        id="miles-negative",
        what="`miles` -1",
        make=lambda: frame({"miles": -1}),
        expect=Refused(says=("row 1: miles must be a non-negative whole number (got -1)",)),
    ),
    Case(
        id="miles-fractional",
        what="`miles` 1.25",
        make=lambda: frame({"miles": 1.25}),
        expect=Refused(says=("row 1: miles is not a whole number (got 1.25)",)),
    ),
    Case(
        id="price-fullwidth-digits",
        what='`price` `"\uff12\uff10\uff10\uff10\uff10"` (fullwidth digits, as text)',
        make=lambda: with_column("price", ["20000", "\uff12\uff10\uff10\uff10\uff10"]),
        expect=Refused(says=("row 1: price must be written with the ASCII digits 0-9",)),
    ),
    Case(
        id="miles-arabic-indic-digits",
        what="`miles` in Arabic-Indic digits, as text",
        make=lambda: with_column("miles", ["3000", "\u0663\u0660\u0660\u0660"]),
        expect=Refused(says=("row 1: miles must be written with the ASCII digits 0-9",)),
    ),
    Case(
        id="miles-zero",
        what="`miles` 0 (a new car: valid)",
        make=lambda: frame({"miles": 0, **OTHER_DEALER}),
        expect=Ranked(ranked=2, requests=2, has={"miles": 0}),
    ),
    # -- ZIPs ---------------------------------------------------------------------------------
    Case(
        id="zip-4-digits",
        what='`zip` `"2124"` (a leading zero lost)',
        make=lambda: frame({**ZERO_ZIP_DEALER, "zip": "2124"}),
        expect=Ranked(ranked=2, requests=1, has=ZERO_ZIP_DEALER),
    ),
    Case(
        id="zip-read-as-integer",
        what="`zip` column of integers (`2124`, `30907`)",
        make=lambda: frame(ZERO_ZIP_DEALER).with_columns(pl.col("zip").cast(pl.Int64)),
        expect=Ranked(ranked=2, requests=1, has=ZERO_ZIP_DEALER),
    ),
    Case(
        id="zip-read-as-float",
        what="`zip` column of floats (`2124.0`)",
        make=lambda: frame(ZERO_ZIP_DEALER).with_columns(pl.col("zip").cast(pl.Float64)),
        expect=Ranked(ranked=2, requests=1, has=ZERO_ZIP_DEALER),
    ),
    Case(
        id="zip-9-digits",
        what='`zip` `"309071234"` (9 digits)',
        make=lambda: frame({"zip": "309071234"}),
        expect=Refused(says=("row 1: zip is a ZIP+4 or 9-digit ZIP; give the 5-digit ZIP code",)),
    ),
    Case(
        id="zip-plus-four",
        what='`zip` `"30907-1234"`',
        make=lambda: frame({"zip": "30907-1234"}),
        expect=Refused(says=("row 1: zip is a ZIP+4 or 9-digit ZIP",)),
    ),
    Case(
        id="zip-9-digit-integer",
        what="`zip` integer 21241234 (a 9-digit ZIP that lost its zero)",
        make=lambda: frame({"zip": 21241234}, schema_overrides={"zip": pl.Int64}),
        expect=Refused(says=("row 1: zip is a ZIP+4 or 9-digit ZIP", "(got 21241234)")),
    ),
    Case(
        id="zip-letters",
        what='`zip` `"ABCDE"`',
        make=lambda: frame({"zip": "ABCDE"}),
        expect=Refused(says=('row 1: zip must be a 5-digit ZIP code (got "ABCDE")',)),
    ),
    Case(
        id="zip-fullwidth-digit",
        what='`zip` `"3090\uff17"` (a fullwidth 7, U+FF17)',
        make=lambda: frame({"zip": "3090\uff17"}),
        expect=Refused(
            says=('row 1: zip must be written with the ASCII digits 0-9 (got "3090\uff17")',)
        ),
    ),
    Case(
        id="zip-arabic-indic-digits",
        what="`zip` in Arabic-Indic digits (U+0660-0669), `on_invalid='fail'`",
        make=lambda: frame({"zip": "\u0663\u0660\u0669\u0660\u0667"}),
        options={"on_invalid": "fail"},
        expect=Ranked(
            ranked=1,
            requests=1,
            failed={"invalid_input": 1},
            says=("row 1: zip must be written with the ASCII digits 0-9",),
        ),
    ),
    Case(
        id="zip-fullwidth-4-digits",
        what='`zip` `"\uff12\uff11\uff12\uff14"` (4 fullwidth digits: not zero-padded)',
        make=lambda: frame({**ZERO_ZIP_DEALER, "zip": "\uff12\uff11\uff12\uff14"}),
        expect=Refused(says=("row 1: zip must be written with the ASCII digits 0-9",)),
    ),
    Case(
        id="zip-not-the-dealers",
        what="`zip` of another town (well-formed)",
        make=lambda: frame({"zip": "99999"}),
        expect=Ranked(ranked=1, requests=2, failed={"dealer_not_found": 1}),
    ),
    # -- dealers ------------------------------------------------------------------------------
    Case(
        id="source-is-a-url",
        what='`source` `"https://www.MBofAugusta.com/used?page=2#top"`',
        make=lambda: frame({"source": "https://www.MBofAugusta.com/used?page=2#top"}),
        expect=Ranked(ranked=1, requests=1, duplicates=1, has={"source": "mbofaugusta.com"}),
    ),
    Case(
        id="source-url-with-user-and-port",
        what='`source` `"http://user@acceleride.mbofaugusta.com:8080/"`',
        make=lambda: frame({"source": "http://user@acceleride.mbofaugusta.com:8080/"}),
        expect=Ranked(ranked=2, requests=1, has=OTHER_DEALER),
    ),
    Case(
        id="source-with-space",
        what='`source` `"mb of augusta.com"`',
        make=lambda: frame({"source": "mb of augusta.com"}),
        expect=Refused(says=("row 1: source must be a dealer website domain without spaces",)),
    ),
    Case(
        id="source-empty",
        what='`source` `""`',
        make=lambda: frame({"source": ""}),
        expect=Refused(
            says=('row 1: source must be a dealer website domain without spaces (got "")',)
        ),
    ),
    Case(
        id="source-unknown",
        what="`source` no dealer has",
        make=lambda: frame({"source": "nowhere.example"}),
        expect=Ranked(ranked=1, requests=2, failed={"dealer_not_found": 1}),
    ),
    Case(
        id="source-unicode",
        what='`source` `"autohäus-müller.de"` (an IDN, unknown)',
        make=lambda: frame({"source": "autohäus-müller.de"}),
        expect=Ranked(
            ranked=1, requests=2, failed={"dealer_not_found": 1}, says=("autohäus-müller.de",)
        ),
    ),
    Case(
        id="source-control-character",
        what="`source` with a NUL character",
        make=lambda: frame({"source": "mbofaugusta.com\x00"}),
        expect=Refused(
            says=(r'row 1: source must not contain control characters (got "mbofaugusta.com\x00")',)
        ),
    ),
    Case(
        id="source-very-long",
        what="`source` of 100,000 characters",
        make=lambda: frame({"source": long_text(100_000)}),
        expect=Refused(says=("row 1: source is longer than 253 characters", "(100000 characters)")),
    ),
    Case(
        id="sources-long-enough-to-overflow-a-request",
        what="100 dealers of 20,000-character sources (2 MB of JSON), `on_invalid='fail'`",
        make=lambda: pl.DataFrame(
            [{**GOOD, "source": f"d{i}" + long_text(20_000)} for i in range(100)]
        ),
        options={"on_invalid": "fail"},
        expect=Ranked(ranked=0, requests=0, failed={"invalid_input": 100}),
    ),
    Case(
        id="mc-location-id-very-long",
        what="`mc_location_id` of 10,000 characters",
        make=lambda: frame({"mc_location_id": "x" * 10_000}),
        expect=Refused(says=("row 1: mc_location_id must be at most 255 characters",)),
    ),
    Case(
        id="mc-location-id-control-character",
        what="`mc_location_id` with an escape character",
        make=lambda: frame({"zip": None, "mc_location_id": "417d\x1b[2J87709842"}),
        expect=Refused(says=(r"row 1: mc_location_id must not contain control characters",)),
    ),
    Case(
        id="vin-very-long",
        what="`vin` of 50,000 characters",
        make=lambda: frame({"vin": "A" * 50_000}),
        expect=Refused(says=("row 1: vin must be exactly 17 characters", "(50000 characters)")),
    ),
    Case(
        id="source-with-comma-batch",
        what='`source` `"evil,dealer.com"` through the batch route (CSV quoting)',
        make=lambda: frame(OTHER_DEALER, {"source": "evil,dealer.com"}),
        options={"mode": "batch"},
        expect=Ranked(ranked=2, requests=None, failed={"dealer_not_found": 1}),
    ),
    # -- duplicates ---------------------------------------------------------------------------
    Case(
        id="exact-duplicate-rows",
        what="the same row twice",
        make=lambda: frame({}),
        expect=Ranked(ranked=1, requests=1, duplicates=1),
    ),
    Case(
        id="duplicate-pair-conflicting-price",
        what="same VIN and dealer at two prices, `rank_dealers`",
        make=lambda: frame({"price": 25000}),
        expect=Ranked(ranked=2, requests=2),
    ),
    Case(
        id="duplicate-pair-conflicting-price-rank-vins",
        what="same VIN and dealer at two prices, `rank_vins`",
        make=lambda: frame({"price": 25000}),
        via="rank_vins",
        expect=Ranked(
            ranked=1,
            requests=1,
            failed={"duplicate_conflict": 1},
            says=("row 1: same vin and dealer as row 0",),
        ),
    ),
    # -- candidates ---------------------------------------------------------------------------
    Case(
        id="vehicle-with-no-dealers",
        what="`cross_pairs` of a vehicle and 0 dealers",
        make=lambda: mm.cross_pairs(
            frame().select("vin", "price", "miles"), pl.DataFrame(schema={"source": pl.String})
        ),
        expect=Ranked(ranked=0, requests=0),
    ),
    Case(
        id="vehicle-with-10000-dealers-online",
        what="one vehicle, 10,000 candidate dealers, online",
        make=many_dealers,
        options={"mode": "online"},
        expect=Ranked(ranked=MANY_DEALERS, requests=111),
        check=top_k_is_exact,
    ),
    Case(
        id="vehicle-with-10000-dealers-batch",
        what="one vehicle, 10,000 candidate dealers, batch",
        make=many_dealers,
        options={"mode": "batch"},
        expect=Ranked(ranked=MANY_DEALERS, requests=None),
        check=all_ranks_exact,
    ),
    # -- what the frame is --------------------------------------------------------------------
    Case(
        id="lazyframe",
        what="a LazyFrame",
        make=lambda: frame(OTHER_DEALER).lazy(),
        expect=Ranked(ranked=2, requests=1),
        check=same_as_eager,
    ),
    Case(
        id="pandas-frame",
        what="a pandas DataFrame",
        make=lambda: pd.DataFrame([GOOD]),
        expect=Refused(error=TypeError, says=("pl.from_pandas(df)",)),
    ),
    Case(
        id="list-of-dicts",
        what="a list of dicts",
        make=lambda: [GOOD],
        expect=Refused(error=TypeError, says=("must be a polars DataFrame or LazyFrame",)),
    ),
    Case(
        id="unknown-on-invalid",
        what="`on_invalid='skip'`",
        make=frame,
        options={"on_invalid": "skip"},
        expect=Refused(error=ValueError, says=("on_invalid must be 'raise' or 'fail'",)),
    ),
    # -- files: the CLI -----------------------------------------------------------------------
    Case(
        id="cli-csv-with-bom",
        what="`rank dealers` of a CSV starting with a UTF-8 BOM",
        make=raw_file("pairs.csv", b"\xef\xbb\xbf" + (HEADER + GOOD_LINE).encode()),
        via="cli rank dealers",
        expect=Exits(code=0, requests=1, ranked=1, says=("ranked 1 pairs",)),
    ),
    Case(
        id="cli-zip-leading-zero-kept",
        what="`rank dealers` of a CSV with `zip` 02124 (kept as text)",
        make=text_file(
            "pairs.csv", HEADER + f"{VIN},20000,3000,{ZERO_ZIP_DEALER['source']},02124\n"
        ),
        via="cli rank dealers",
        expect=Exits(code=0, requests=1, ranked=1),
    ),
    Case(
        id="cli-csv-gz-that-is-plain-csv",
        what="`rank dealers` of a `.csv.gz` that is plain CSV (read as such)",
        make=text_file("pairs.csv.gz", HEADER + GOOD_LINE),
        via="cli rank dealers",
        expect=Exits(code=0, requests=1, ranked=1),
    ),
    Case(
        id="cli-csv-gz-that-is-not-gzip",
        what="`rank dealers` of a `.csv.gz` of random bytes",
        make=raw_file("pairs.csv.gz", bytes(range(256)) * 8),
        via="cli rank dealers",
        expect=Exits(code=1, requests=0, says=("pairs.csv.gz", "not gzip-compressed")),
    ),
    Case(
        id="cli-truncated-gzip",
        what="`rank dealers` of a cut-off `.csv.gz`",
        make=raw_file("pairs.csv.gz", gzip.compress((HEADER + GOOD_LINE * 50).encode())[:-12]),
        via="cli rank dealers",
        expect=Exits(code=1, requests=0, says=("pairs.csv.gz cannot be read",)),
    ),
    Case(
        id="cli-empty-file",
        what="`rank dealers` of an empty file",
        make=raw_file("pairs.csv", b""),
        via="cli rank dealers",
        expect=Exits(code=1, requests=0, says=("pairs.csv cannot be read as csv: empty CSV",)),
    ),
    Case(
        id="cli-header-only",
        what="`rank dealers` of a CSV with a header and no rows",
        make=text_file("pairs.csv", HEADER),
        via="cli rank dealers",
        expect=Exits(code=0, requests=0, says=("ranked 0 pairs",)),
    ),
    Case(
        id="cli-row-with-too-many-fields",
        what="`rank dealers` of a CSV whose line 3 has 7 fields",
        make=text_file("pairs.csv", HEADER + GOOD_LINE + GOOD_LINE.strip() + ",x,y\n"),
        via="cli rank dealers",
        expect=Exits(code=1, requests=0, says=("line 3 has 7 fields, the header 5",)),
    ),
    Case(
        id="cli-row-with-too-few-fields",
        what="`rank dealers` of a CSV whose line 3 has 2 fields (read as nulls)",
        make=text_file("pairs.csv", HEADER + GOOD_LINE + "a,b\n"),
        via="cli rank dealers",
        expect=Exits(
            code=1, requests=0, says=("line 3: vin must be exactly 17", "source is missing")
        ),
    ),
    Case(
        id="cli-latin-1",
        what="`rank dealers` of a Latin-1 CSV",
        make=text_file(
            "pairs.csv", HEADER + f"{VIN},20000,3000,autohäus.de,30907\n", encoding="latin-1"
        ),
        via="cli rank dealers",
        expect=Exits(code=1, requests=0, says=("invalid utf-8",)),
    ),
    Case(
        id="cli-invalid-rows",
        what="`rank dealers` of a CSV with a 16-character VIN on line 3 (row 1)",
        make=text_file("pairs.csv", HEADER + GOOD_LINE + GOOD_LINE.replace(VIN, VIN[:16])),
        via="cli rank dealers",
        expect=Exits(code=1, requests=0, says=("line 3: vin must be exactly 17 characters",)),
    ),
    Case(
        id="cli-batch-submit-not-gzip",
        what="`batch submit` of a `.csv.gz` that is plain CSV",
        make=text_file("pairs.csv.gz", HEADER + GOOD_LINE),
        via="cli batch submit",
        expect=Exits(code=1, requests=0, says=("pairs.csv.gz is not gzip-compressed",)),
    ),
    # -- files and frames: BatchClient.submit -------------------------------------------------
    Case(
        id="submit-file-not-gzip",
        what="`BatchClient.submit` of a `.csv.gz` that is plain CSV",
        make=text_file("pairs.csv.gz", HEADER + GOOD_LINE),
        via="submit",
        expect=Refused(says=("pairs.csv.gz is not gzip-compressed",)),
    ),
    Case(
        id="submit-empty-frame",
        what="`BatchClient.submit` of 0 rows",
        make=empty,
        via="submit",
        expect=Refused(says=("nothing to submit: the frame has no rows",)),
    ),
    Case(
        id="submit-rows-without-zip",
        what="`BatchClient.submit` of a frame whose row 1 has no `zip`",
        make=lambda: frame({"source": ZERO_ZIP_DEALER["source"], "zip": None}),
        via="submit",
        expect=Refused(says=("rows without one: 1",)),
    ),
    Case(
        id="submit-invalid-rows",
        what="`BatchClient.submit` of a frame with a bad check digit on row 1",
        make=lambda: frame({"vin": "WP1BE2AY6PDA28064"}),
        via="submit",
        expect=Refused(says=("row 1: vin has a wrong check digit",)),
    ),
    Case(
        id="submit-pandas-frame",
        what="`BatchClient.submit` of a pandas DataFrame",
        make=lambda: pd.DataFrame([GOOD]),
        via="submit",
        expect=Refused(error=TypeError, says=("a polars DataFrame/LazyFrame",)),
    ),
    Case(
        id="submit-lazyframe",
        what="`BatchClient.submit` of a LazyFrame (valid)",
        make=lambda: frame(OTHER_DEALER).lazy(),
        via="submit",
        expect=Submitted(),
    ),
)


def describe(expect: Expected) -> str:
    """The expected outcome in words, for the table."""
    if isinstance(expect, Refused):
        said = "; ".join(f"`{s}`" for s in expect.says)
        return f"raises `{expect.error.__name__}`: {said}; {_requests(0)}"
    if isinstance(expect, Exits):
        said = "; ".join(f"`{s}`" for s in expect.says)
        outcome = f"exit {expect.code}" + (f", {said}" if said else "")
        if expect.code == 0:
            outcome += f"; {expect.ranked} ranked, {expect.failed} failed"
        return f"{outcome}; {_requests(expect.requests)}"
    if isinstance(expect, Submitted):
        return f"job submitted; {_requests(expect.requests)} (list, submit)"
    failed = ", ".join(f"{count} `{code}`" for code, count in expect.failed.items())
    parts = [f"{expect.ranked:,} ranked", f"failed: {failed or 'none'}"]
    if expect.duplicates:
        parts.append(f"{expect.duplicates} duplicate removed")
    if expect.says:
        parts.append("; ".join(f"`{s}`" for s in expect.says))
    if expect.has:
        parts.append(", ".join(f"{k}={v!r}" for k, v in expect.has.items()))
    return f"{'; '.join(parts)}; {_requests(expect.requests)}"


def _requests(count: int | None) -> str:
    if count is None:
        return "requests: list, submit, polls, download"
    return f"{count:,} request{'' if count == 1 else 's'}"


def render_table() -> str:
    """``docs/bad-input.md``: the corpus as a table."""
    lines = [
        "# Bad input: the corpus",
        "",
        f"{len(CASES)} cases, each run by `tests/bad_input/test_corpus.py` against the sandbox "
        "over loopback. `requests` is what the sandbox received (its quota counter); a refused "
        "input costs none. Frames carry a valid pair at row 0 and the bad one at row 1, so "
        "messages name `row 1`. Regenerate with "
        "`python -m tests.bad_input.corpus > docs/bad-input.md`.",
        "",
        "| # | case | input | via | expected outcome |",
        "|---|---|---|---|---|",
    ]
    for number, case in enumerate(CASES, 1):
        outcome = describe(case.expect)
        if case.check is not None and case.check.__doc__:
            outcome += "; " + case.check.__doc__.strip().rstrip(".")
        outcome = outcome.replace("|", "\\|")
        what = case.what.replace("|", "\\|")
        lines.append(f"| {number} | `{case.id}` | {what} | {case.via} | {outcome} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_table(), end="")
