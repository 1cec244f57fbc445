"""Which side an API refusal concerns, and which answered ranks cannot be trusted (pure).

- :func:`refusals_of_422`: a 422 names failing VINs, missing dealers or multi-location sources;
  map the chunk's positions it concerns to their error codes. On ``/vins/rank`` (one dealer,
  many VINs) a dealer problem concerns the whole chunk; on ``/dealers/rank`` (one VIN, many
  dealers) a VIN problem does.
- :func:`failed_item_code`: the error code of an item of a 200's ``failed_items``, which
  carries no reason. On ``/dealers/rank`` the request has one VIN, and a VIN that does not
  decode gets a 422, so a failed item is the dealer's (``dealer_not_found``). On ``/vins/rank``
  the request has one dealer: failed items beside ranked ones are the VINs'
  (``vin_decode_failed``); every item failed and none ranked is the dealer's. A code the item
  gives itself wins.
- :func:`refused_ranks`: the ranked items whose ``vin_rank`` is not a positive integer within
  the request (missing, null, boolean, fractional, zero, negative, beyond the request's size),
  or is shared with another item: their place is unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from mm_pipeline._online._match import Keys, index_of, take, text
from mm_pipeline._plan import Endpoint

__all__ = ["MESSAGES", "failed_item_code", "refusals_of_422", "refused_ranks"]

#: Our words for each code, when the API gives none.
MESSAGES = {
    "vin_decode_failed": "the API could not decode this VIN",
    "dealer_not_found": "the API does not know this dealer",
    "multi_location_requires_zip": (
        "this dealer has several locations: give zip or mc_location_id"
    ),
}


def refusals_of_422(
    keys: Keys,
    positions: list[int],
    *,
    failed_vins: Iterable[Any] = (),
    missing_dealers: Iterable[Any] = (),
    multi_location_sources: Iterable[Any] = (),
) -> dict[int, str]:
    """Map the chunk's positions a 422 names to their error codes (empty: it names none).

    Examples
    --------
    >>> import polars as pl
    >>> pairs = pl.DataFrame({"vin": ["V1"] * 2, "price": [1] * 2, "miles": [0] * 2,
    ...     "source": ["a.com", "b.com"], "zip": ["30907", None],
    ...     "mc_location_id": [None, None]})
    >>> keys = Keys.of(pairs, "dealers")
    >>> refusals_of_422(keys, [0, 1], missing_dealers=[{"source": "a.com", "zip": "30907"}])
    {0: 'dealer_not_found'}
    >>> refusals_of_422(keys, [0, 1], multi_location_sources=["B.com"])
    {1: 'multi_location_requires_zip'}
    """
    named: dict[int, str] = {}
    vins = {str(v).strip().upper() for v in failed_vins}
    missing = list(missing_dealers)
    multi = list(multi_location_sources)
    if keys.endpoint == "vins":
        # One dealer, many VINs: a dealer problem concerns the whole chunk.
        dealer_code = (
            "dealer_not_found" if missing else "multi_location_requires_zip" if multi else None
        )
        for p in positions:
            code = "vin_decode_failed" if keys.key[p] in vins else dealer_code
            if code:
                named[p] = code
        return named
    if vins:  # one VIN, many dealers: the VIN concerns the whole chunk
        named = dict.fromkeys(positions, "vin_decode_failed")
    index = index_of(keys, positions)
    for dealer in missing:
        found = take(keys, index, dealer if isinstance(dealer, dict) else {"source": dealer})
        if found is not None:
            named.setdefault(found, "dealer_not_found")
    for source in multi:
        host = (text(source) or "").lower()
        same = [p for p in positions if keys.key[p] == host]
        bare = [p for p in same if keys.second[p] is None and keys.third[p] is None]
        for p in bare or same:
            named.setdefault(p, "multi_location_requires_zip")
    return named


def failed_item_code(endpoint: Endpoint, item: Any, *, none_ranked: bool) -> str:
    """Return the error code of one ``failed_items`` entry (see the module docstring).

    Examples
    --------
    >>> failed_item_code("dealers", {"source": "a.com"}, none_ranked=False)
    'dealer_not_found'
    >>> failed_item_code("vins", {"vin": "V1"}, none_ranked=False)
    'vin_decode_failed'
    >>> failed_item_code("vins", {"vin": "V1"}, none_ranked=True)
    'dealer_not_found'
    >>> failed_item_code("vins", {"vin": "V1", "error_code": "sold"}, none_ranked=True)
    'sold'
    """
    code = item.get("error_code") if isinstance(item, dict) else None
    if isinstance(code, str) and code.strip():
        return code.strip()
    if endpoint == "vins" and not none_ranked:
        return "vin_decode_failed"
    return "dealer_not_found"


def refused_ranks(ranks: Sequence[Any], size: int) -> set[int]:
    """Return the indices of the ranks that are not a distinct integer from 1 to ``size``.

    An integral float (``2.0``) counts as its integer; a boolean does not.

    Examples
    --------
    >>> sorted(refused_ranks([1, 2, 3], 3))
    []
    >>> sorted(refused_ranks([1, None, True, 2.5, 0, -1, 4, "2"], 4))
    [1, 2, 3, 4, 5, 7]
    >>> sorted(refused_ranks([1, 2, 2], 3))  # a shared rank says nothing about the order
    [1, 2]
    """
    if len(ranks) <= size and ranks == list(range(1, len(ranks) + 1)):
        return set()  # as the API answers: 1..n in order
    numbers = [_whole(rank) for rank in ranks]
    counts = Counter(number for number in numbers if number is not None and 1 <= number <= size)
    return {
        i
        for i, number in enumerate(numbers)
        if number is None or not 1 <= number <= size or counts[number] > 1
    }


def _whole(rank: Any) -> int | None:
    """Read a rank as an integer (``2.0`` too); None for booleans, fractions, text, null."""
    if rank.__class__ is int:
        return int(rank)
    if rank.__class__ is float and rank.is_integer():
        return int(rank)
    return None
