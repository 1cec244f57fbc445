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


def _json_value(frame: pl.DataFrame, name: str) -> pl.Expr:
    col = pl.col(name)
    if frame.schema[name] != pl.String:
        return col.cast(pl.String)
    needs_escape = frame.select(col.str.contains(r'["\\\x00-\x1f\x7f]').any()).item()
    if not needs_escape:
        return pl.concat_str(pl.lit('"'), col, pl.lit('"'))
    prefix = f'{{"{name}":'
    return pl.struct(col).struct.json_encode().str.strip_prefix(prefix).str.strip_suffix("}")


def json_fragments(frame: pl.DataFrame, fields: Sequence[str]) -> list[str]:
    r"""One JSON object per row with the given fields, omitting null fields.

    Examples
    --------
    >>> frame = pl.DataFrame({"source": ["a.com", 'b"c.com'], "zip": ["30907", None]})
    >>> json_fragments(frame, ["source", "zip"])
    ['{"source":"a.com","zip":"30907"}', '{"source":"b\\"c.com"}']
    """
    pieces: list[pl.Expr] = []
    for index, name in enumerate(fields):
        prefix = ("{" if index == 0 else ",") + f'"{name}":'
        piece = pl.concat_str(pl.lit(prefix), _json_value(frame, name))
        pieces.append(piece.fill_null("{" if index == 0 else ""))
    if not pieces:
        return ["{}"] * frame.height
    expr = pl.concat_str(*pieces, pl.lit("}"))
    return frame.select(expr.alias("json")).get_column("json").to_list()
