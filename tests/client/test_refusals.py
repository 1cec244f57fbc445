"""Pure attribution and trust: 422s, failed_items, answered ranks, and the matcher (tables)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from mm_pipeline._online._match import Keys, index_of, take
from mm_pipeline._online._refusals import failed_item_code, refusals_of_422, refused_ranks

DEALERS = pl.DataFrame(
    {
        "vin": ["V1"] * 4,
        "price": [1] * 4,
        "miles": [0] * 4,
        "source": ["a.com", "b.com", "b.com", "c.com"],
        "zip": ["30907", None, "02134", None],
        "mc_location_id": [None, None, None, "loc9"],
    }
)
VINS = pl.DataFrame(
    {
        "vin": ["V1", "V2", "V3"],
        "price": [1, 2, 3],
        "miles": [0, 0, 0],
        "source": ["d.com"] * 3,
        "zip": [None] * 3,
        "mc_location_id": [None] * 3,
    }
)


@pytest.mark.parametrize(
    ("frame", "endpoint", "refusal", "expected"),
    [
        # /dealers/rank: one VIN, many dealers
        (DEALERS, "dealers", {"failed_vins": ["v1"]}, dict.fromkeys(range(4), "vin_decode_failed")),
        (
            DEALERS,
            "dealers",
            {"missing_dealers": [{"source": "A.com ", "zip": "30907"}, "c.com"]},
            {0: "dealer_not_found", 3: "dealer_not_found"},
        ),
        (DEALERS, "dealers", {"missing_dealers": [{"source": "a.com", "zip": "99999"}]}, {}),
        # a multi-location source: the rooftops named without zip or id
        (
            DEALERS,
            "dealers",
            {"multi_location_sources": ["b.com"]},
            {1: "multi_location_requires_zip"},
        ),
        # the VIN wins over a dealer named as well
        (
            DEALERS,
            "dealers",
            {"failed_vins": ["V1"], "missing_dealers": ["c.com"]},
            dict.fromkeys(range(4), "vin_decode_failed"),
        ),
        (DEALERS, "dealers", {}, {}),
        # /vins/rank: one dealer, many VINs
        (VINS, "vins", {"failed_vins": ["v2"]}, {1: "vin_decode_failed"}),
        (
            VINS,
            "vins",
            {"missing_dealers": [{"source": "d.com"}]},
            dict.fromkeys(range(3), "dealer_not_found"),
        ),
        (
            VINS,
            "vins",
            {"multi_location_sources": ["d.com"], "failed_vins": ["V3"]},
            {
                0: "multi_location_requires_zip",
                1: "multi_location_requires_zip",
                2: "vin_decode_failed",
            },
        ),
        (VINS, "vins", {"failed_vins": ["OTHER"]}, {}),
    ],
)
def test_a_422_is_attributed_to_the_positions_it_names(
    frame: pl.DataFrame, endpoint: Any, refusal: dict[str, Any], expected: dict[int, str]
) -> None:
    """refusals_of_422 maps what a 422 names to the chunk's positions and their codes."""
    keys = Keys.of(frame, endpoint)
    assert refusals_of_422(keys, list(range(frame.height)), **refusal) == expected


@pytest.mark.parametrize(
    ("endpoint", "item", "none_ranked", "code"),
    [
        ("dealers", {"source": "a.com"}, False, "dealer_not_found"),
        ("dealers", {"source": "a.com"}, True, "dealer_not_found"),
        ("vins", {"vin": "V1"}, False, "vin_decode_failed"),
        ("vins", {"vin": "V1"}, True, "dealer_not_found"),
        ("dealers", {"source": "a.com", "error_code": "dealer_closed"}, False, "dealer_closed"),
        ("vins", {"vin": "V1", "error_code": " vin_sold "}, True, "vin_sold"),
        ("vins", {"vin": "V1", "error_code": ""}, False, "vin_decode_failed"),
        ("vins", {"vin": "V1", "error_code": 7}, True, "dealer_not_found"),
        ("dealers", "not an object", False, "dealer_not_found"),
    ],
)
def test_failed_items_are_attributed_to_the_right_side(
    endpoint: Any, item: Any, none_ranked: bool, code: str
) -> None:
    """/dealers/rank: the dealer's; /vins/rank: the VINs' beside ranked ones; own codes win."""
    assert failed_item_code(endpoint, item, none_ranked=none_ranked) == code


@pytest.mark.parametrize(
    ("ranks", "size", "refused"),
    [
        ([1, 2, 3], 3, set()),
        ([1, 2], 3, set()),  # one item failed: ranks 1..2 of a request of 3
        ([2, 1, 3], 3, set()),  # out of order, but each known
        ([1.0, 2.0], 2, set()),  # integral floats
        ([1, None, 3], 3, {1}),
        ([1, True, 3], 3, {1}),
        ([1, 2.5, 3], 3, {1}),
        ([0, 2, 3], 3, {0}),
        ([-1, 2, 3], 3, {0}),
        ([1, 2, 4], 3, {2}),
        ([1, "2", 3], 3, {1}),
        ([1, 1, 2], 3, {0, 1}),
        ([], 3, set()),
    ],
)
def test_untrustworthy_ranks_are_refused(ranks: list[Any], size: int, refused: set[int]) -> None:
    """A rank is trusted only as a distinct integer from 1 to the request's size."""
    assert refused_ranks(ranks, size) == refused


@pytest.mark.parametrize(
    ("item", "position"),
    [
        ({"source": "a.com", "zip": "30907"}, 0),
        ({"source": " A.COM ", "zip": 30907}, 0),  # other spelling, a number for the ZIP
        ({"source": "b.com"}, 1),  # a missing side matches: the first b.com
        ({"source": "b.com", "zip": "02134"}, 1),  # the first whose given side agrees
        ({"source": "c.com", "mc_location_id": "loc9", "zip": "10001"}, 3),
        ({"source": "c.com", "mc_location_id": "other"}, None),
        ({"source": "z.com"}, None),
        (["a.com"], None),
    ],
)
def test_the_tolerant_matcher(item: Any, position: int | None) -> None:
    """take() finds the position an answered item stands for, tolerantly, once."""
    keys = Keys.of(DEALERS, "dealers")
    index = index_of(keys, list(range(DEALERS.height)))
    assert take(keys, index, item) == position
    if position is not None:  # taken: not found twice
        assert take(keys, index, item) != position
