"""JSON <-> typed polars frames: request fragments out, result frames in.

Request bodies are assembled from per-row JSON fragments that polars builds vectorised (one
``{"source": ..., "zip": ...}`` string per pair), so the fan-out only joins strings; results are
collected as plain column lists and turned into a frame once, at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

__all__ = [
    "DEALER_FIELDS",
    "FAILED_SCHEMA",
    "FAILED_WITH_ROW",
    "PAIR_COLUMNS",
    "RANKED_SCHEMA",
    "RANKED_WITH_ROW",
    "ROW",
    "VIN_FIELDS",
    "json_fragment",
    "json_fragments",
]

#: The six columns of a vehicle-dealer pair, in order.
PAIR_COLUMNS = ("vin", "price", "miles", "source", "zip", "mc_location_id")
#: The API's VINSpec and DealerSpec fields.
VIN_FIELDS = ("vin", "price", "miles")
DEALER_FIELDS = ("source", "zip", "mc_location_id")
#: Internal column: the input row number a pair came from (first occurrence).
ROW = "_row"

RANKED_SCHEMA = pl.Schema(
    {
        "vin": pl.String,
        "price": pl.Int64,
        "miles": pl.Int64,
        "source": pl.String,
        "zip": pl.String,
        "mc_location_id": pl.String,
        "vin_score": pl.Float64,
        "dealer_ymm_score": pl.Float64,
        "vin_rank": pl.UInt32,
        "rank_exact": pl.Boolean,
    }
)
FAILED_SCHEMA = pl.Schema(
    {
        "vin": pl.String,
        "price": pl.Int64,
        "miles": pl.Int64,
        "source": pl.String,
        "zip": pl.String,
        "mc_location_id": pl.String,
        "vin_score": pl.Float64,
        "dealer_ymm_score": pl.Float64,
        "vin_rank": pl.UInt32,
        "error_code": pl.String,
        "error_message": pl.String,
    }
)


#: The schemas plus ``_row``, as the frames are carried internally.
RANKED_WITH_ROW = pl.Schema([*RANKED_SCHEMA.items(), (ROW, pl.Int64())])
FAILED_WITH_ROW = pl.Schema([*FAILED_SCHEMA.items(), (ROW, pl.Int64())])


#: What JSON strings escape: a quote, a backslash and control characters.
_ESCAPED = ['"', "\\", *(chr(c) for c in (*range(0x20), 0x7F))]


def _json_value(frame: pl.DataFrame, name: str) -> pl.Expr:
    col = pl.col(name)
    if frame.schema[name] != pl.String:
        return col.cast(pl.String)
    needs_escape = frame.select(col.str.contains_any(_ESCAPED).any()).item()
    if not needs_escape:
        return pl.concat_str(pl.lit('"'), col, pl.lit('"'))
    prefix = f'{{"{name}":'
    return pl.struct(col).struct.json_encode().str.strip_prefix(prefix).str.strip_suffix("}")


def json_fragment(frame: pl.DataFrame, fields: Sequence[str]) -> pl.Expr:
    r"""Build the expression of one JSON object per row of *frame* (null fields omitted).

    Examples
    --------
    >>> frame = pl.DataFrame({"source": ["a.com", 'b"c.com'], "zip": ["30907", None]})
    >>> frame.select(json_fragment(frame, ["source", "zip"])).to_series().to_list()
    ['{"source":"a.com","zip":"30907"}', '{"source":"b\\"c.com"}']
    """
    pieces: list[pl.Expr] = []
    opened = False  # whether the first piece opens the object (it always has a value)
    for name in fields:
        nulls = frame.get_column(name).null_count()
        if nulls == frame.height and frame.height:
            continue  # never given: left out of every object
        opened = opened or (not pieces and not nulls)
        prefix = "{" if opened and not pieces else ","
        piece = pl.concat_str(pl.lit(f'{prefix}"{name}":'), _json_value(frame, name))
        pieces.append(piece.fill_null("") if nulls else piece)
    if not pieces:
        return pl.repeat(pl.lit("{}"), pl.len())
    if opened:
        return pl.concat_str(*pieces, pl.lit("}"))
    return pl.concat_str(pl.lit("{"), pl.concat_str(*pieces).str.slice(1), pl.lit("}"))


def json_fragments(frame: pl.DataFrame, fields: Sequence[str]) -> list[str]:
    r"""One JSON object per row with the given fields, omitting null fields.

    Examples
    --------
    >>> frame = pl.DataFrame({"source": ["a.com", 'b"c.com'], "zip": ["30907", None]})
    >>> json_fragments(frame, ["source", "zip"])
    ['{"source":"a.com","zip":"30907"}', '{"source":"b\\"c.com"}']
    """
    return frame.select(json_fragment(frame, fields).alias("json")).get_column("json").to_list()
