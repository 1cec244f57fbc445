"""Shape validation of the online ranking request bodies (no HTTP here).

What the sandbox accepts (anything else is a 400 naming every offending field):

* the body is a JSON object; unknown fields are ignored;
* ``vin``: a string of exactly 17 characters (whether it *decodes* is the market's business: 422
  or ``failed_items``);
* ``price``: a positive integer; ``miles``: a non-negative integer. A JSON number with an integral
  value (``20000.0``) is accepted as that integer; ``true``/``false`` and strings are not numbers;
* ``source``: a non-empty string; ``zip`` (optional): a string of exactly 5 ASCII digits (a US
  ZIP code; fullwidth or other non-ASCII digits are refused, as in a batch file);
  ``mc_location_id`` (optional): a non-empty string. ``null`` for an optional field means absent;
* ``dealers``: 1-100 dealer objects (``/dealers/rank``); ``vins``: 1-20 vehicle objects
  (``/vins/rank``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

import orjson

from mm_pipeline.sandbox._market import DealerSpec, VinSpec

__all__ = [
    "MAX_DEALERS",
    "MAX_VINS",
    "InvalidRequestError",
    "parse_dealers_request",
    "parse_vins_request",
]

MAX_DEALERS = 100
MAX_VINS = 20
_MAX_REPORTED = 10
_INT64_MAX = 2**63 - 1
_ZIP = re.compile(r"[0-9]{5}")  # not \d, which matches any Unicode digit


class InvalidRequestError(Exception):
    """The request body breaks the published schema or constraints (a 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:_MAX_REPORTED]
        more = len(self.items) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more else "")
        raise InvalidRequestError(f"Invalid request: {text}")


def parse_dealers_request(body: bytes) -> tuple[VinSpec, list[DealerSpec]]:
    """Validate a ``/dealers/rank`` body; return the vehicle and the dealers.

    Examples
    --------
    >>> vin, dealers = parse_dealers_request(
    ...     b'{"vin": {"vin": "WP1BE2AY5PDA28064", "price": 20000.0, "miles": 3000},'
    ...     b' "dealers": [{"source": "mbofaugusta.com", "zip": "30907", "mc_location_id": null}]}'
    ... )
    >>> vin, dealers
    ({'vin': 'WP1BE2AY5PDA28064', 'price': 20000, 'miles': 3000}, [{'source': 'mbofaugusta.com', 'zip': '30907'}])
    >>> parse_dealers_request(b'{"vin": {"vin": "short", "price": true, "miles": -1}, "dealers": []}')
    Traceback (most recent call last):
    ...
    mm_pipeline.sandbox._validation.InvalidRequestError: Invalid request: vin.vin must be a string of exactly 17 characters; vin.price must be a positive integer; vin.miles must be a non-negative integer; dealers must be an array of 1 to 100 dealers
    """  # noqa: E501
    data = _load(body)
    errors = _Errors()
    vin = _vin_spec(data.get("vin"), "vin", errors)
    dealers = _array(data.get("dealers"), "dealers", MAX_DEALERS, _dealer_spec, errors)
    errors.raise_if_any()
    return vin, dealers


def parse_vins_request(body: bytes) -> tuple[DealerSpec, list[VinSpec]]:
    """Validate a ``/vins/rank`` body; return the dealer and the vehicles.

    Examples
    --------
    >>> dealer, vins = parse_vins_request(
    ...     b'{"dealer": {"source": "carvana.com", "zip": "95765"},'
    ...     b' "vins": [{"vin": "JTMDFREV7JJ214231", "price": 25990, "miles": 34307}]}'
    ... )
    >>> dealer, len(vins)
    ({'source': 'carvana.com', 'zip': '95765'}, 1)
    """
    data = _load(body)
    errors = _Errors()
    dealer = _dealer_spec(data.get("dealer"), "dealer", errors)
    vins = _array(data.get("vins"), "vins", MAX_VINS, _vin_spec, errors)
    errors.raise_if_any()
    return dealer, vins


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"Malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("Invalid request: the body must be a JSON object")
    return data


_Spec = TypeVar("_Spec", VinSpec, DealerSpec)


def _array(
    value: object,
    path: str,
    limit: int,
    item: Callable[[object, str, _Errors], _Spec],
    errors: _Errors,
) -> list[_Spec]:
    noun = "dealers" if path == "dealers" else "vehicles"
    if not isinstance(value, list) or not 1 <= len(value) <= limit:
        errors.add(f"{path} must be an array of 1 to {limit} {noun}")
        return []
    return [item(entry, f"{path}[{i}]", errors) for i, entry in enumerate(value)]


def _vin_spec(value: object, path: str, errors: _Errors) -> VinSpec:
    if not isinstance(value, dict):
        errors.add(f"{path} must be an object with vin, price and miles")
        return cast("VinSpec", {})
    vin = value.get("vin")
    if not isinstance(vin, str) or len(vin) != 17:
        errors.add(f"{path}.vin must be a string of exactly 17 characters")
    price = _integer(value.get("price"), minimum=1)
    if price is None:
        errors.add(f"{path}.price must be a positive integer")
    miles = _integer(value.get("miles"), minimum=0)
    if miles is None:
        errors.add(f"{path}.miles must be a non-negative integer")
    return cast("VinSpec", {"vin": vin, "price": price, "miles": miles})


def _dealer_spec(value: object, path: str, errors: _Errors) -> DealerSpec:
    if not isinstance(value, dict):
        errors.add(f"{path} must be an object with source and zip or mc_location_id")
        return cast("DealerSpec", {})
    spec: dict[str, Any] = {}
    source = value.get("source")
    if not isinstance(source, str) or not source:
        errors.add(f"{path}.source must be a non-empty string")
    spec["source"] = source
    zip_code = value.get("zip")
    if zip_code is not None:
        if not isinstance(zip_code, str) or not _ZIP.fullmatch(zip_code):
            errors.add(f"{path}.zip must be a string of exactly 5 digits 0-9")
        spec["zip"] = zip_code
    location = value.get("mc_location_id")
    if location is not None:
        if not isinstance(location, str) or not location:
            errors.add(f"{path}.mc_location_id must be a non-empty string")
        spec["mc_location_id"] = location
    return cast("DealerSpec", spec)


def _integer(value: object, *, minimum: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and minimum <= value <= _INT64_MAX:
        return value
    return None
