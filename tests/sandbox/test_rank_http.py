"""The online rank endpoints over real HTTP: published examples, 400s, 422s, error shapes."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

DEALERS = "/v2/marketmatch/dealers/rank"
VINS = "/v2/marketmatch/vins/rank"
PORSCHE = {"vin": "WP1BE2AY5PDA28064", "price": 20000, "miles": 3000}
PUBLISHED_DEALERS = [
    {"source": "mbofaugusta.com", "zip": "30907"},
    {"source": "acceleride.mbofaugusta.com", "zip": "30907"},
    {"source": "acceleride.esterobaychevrolet.com", "zip": "33928"},
]
PUBLISHED_VINS = [
    {"vin": "5FNYF8H54SB000197", "price": 37610, "miles": 14428},
    {"vin": "JTJBM7FX1K5236458", "price": 35087, "miles": 73788},
    {"vin": "YV4L12RL4R1757085", "price": 33085, "miles": 45490},
]
CARVANA_VINS = [
    {"vin": "JTMDFREV7JJ214231", "price": 25990, "miles": 34307},
    {"vin": "7YAKN4DA1SY001014", "price": 38990, "miles": 38990},
    {"vin": "KL79MPSL8SB184667", "price": 20355, "miles": 15313},
    {"vin": "1FMCU0GD0JUD56190", "price": 13790, "miles": 73592},
    {"vin": "4T1C11BKXNU065125", "price": 22590, "miles": 50947},
]
UNDECODABLE = {"vin": "AAAAAAAAAAAAAAAAA", "price": 20000, "miles": 3000}
RANKED_FIELDS = {
    "vin",
    "price",
    "miles",
    "source",
    "zip",
    "mc_location_id",
    "vin_score",
    "dealer_ymm_score",
    "vin_rank",
}


def assert_ranked(body: dict[str, Any], count: int) -> list[dict[str, Any]]:
    matches: list[dict[str, Any]] = body["ranked_matches"]
    assert [m["vin_rank"] for m in matches] == list(range(1, count + 1))
    for match in matches:
        assert set(match) == RANKED_FIELDS
        assert 400 <= match["vin_score"] <= 3000
        assert 400 <= match["dealer_ymm_score"] <= 3000
    return matches


# -- the published examples ---------------------------------------------------------------------


def test_published_dealers_example(api: httpx.Client) -> None:
    """The published /dealers/rank example ranks all three dealers 1..3."""
    response = api.post(DEALERS, json={"vin": PORSCHE, "dealers": PUBLISHED_DEALERS})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    matches = assert_ranked(body, 3)
    assert body["failed_items"] == []
    assert {(m["source"], m["zip"]) for m in matches} == {
        (d["source"], d["zip"]) for d in PUBLISHED_DEALERS
    }
    assert all(m["vin"] == PORSCHE["vin"] and m["price"] == 20000 for m in matches)


def test_published_vins_example(api: httpx.Client) -> None:
    """The published /vins/rank example ranks all three vehicles for mbofaugusta.com."""
    body = api.post(
        VINS, json={"dealer": {"source": "mbofaugusta.com", "zip": "30907"}, "vins": PUBLISHED_VINS}
    ).json()
    matches = assert_ranked(body, 3)
    assert {m["vin"] for m in matches} == {v["vin"] for v in PUBLISHED_VINS}


def test_published_carvana_example(api: httpx.Client) -> None:
    """carvana.com at 95765 (a multi-location source with its ZIP) ranks the five vehicles."""
    body = api.post(
        VINS, json={"dealer": {"source": "carvana.com", "zip": "95765"}, "vins": CARVANA_VINS}
    ).json()
    matches = assert_ranked(body, 5)
    assert {m["zip"] for m in matches} == {"95765"}


def test_same_request_same_answer(api: httpx.Client) -> None:
    """The market is deterministic: the same request gets byte-identical bodies."""
    payload = {"vin": PORSCHE, "dealers": PUBLISHED_DEALERS}
    assert api.post(DEALERS, json=payload).content == api.post(DEALERS, json=payload).content


def test_integral_float_is_accepted_as_integer(api: httpx.Client) -> None:
    """A JSON number with an integral value (20000.0) is accepted and echoed as an integer."""
    vin = {**PORSCHE, "price": 20000.0, "miles": 3000.0}
    response = api.post(DEALERS, json={"vin": vin, "dealers": PUBLISHED_DEALERS[:1]})
    assert response.status_code == 200
    assert b'"price":20000,' in response.content


def test_null_optional_fields_mean_absent(api: httpx.Client) -> None:
    """zip/mc_location_id set to null behave as if absent."""
    dealer = {"source": "mbofaugusta.com", "zip": "30907", "mc_location_id": None}
    assert api.post(DEALERS, json={"vin": PORSCHE, "dealers": [dealer]}).status_code == 200


def test_some_vins_failing_is_200_with_failed_items(api: httpx.Client) -> None:
    """If only some VINs fail to decode, the answer is 200 with them in failed_items."""
    body = api.post(
        VINS,
        json={"dealer": PUBLISHED_DEALERS[0], "vins": [*PUBLISHED_VINS[:2], UNDECODABLE]},
    ).json()
    assert_ranked(body, 2)
    (failed,) = body["failed_items"]
    assert failed["vin"] == UNDECODABLE["vin"]
    assert failed["vin_rank"] is failed["vin_score"] is failed["dealer_ymm_score"] is None


def test_one_hundred_dealers_is_the_maximum(api: httpx.Client) -> None:
    """Exactly 100 dealers is accepted (here the same rooftop repeated)."""
    dealers = [PUBLISHED_DEALERS[0]] * 100
    assert api.post(DEALERS, json={"vin": PORSCHE, "dealers": dealers}).status_code == 200


# -- 422 ----------------------------------------------------------------------------------------


def test_all_vins_failing_is_422_with_failed_vins(api: httpx.Client) -> None:
    """Every VIN failing to decode is 422 with failed_vins."""
    response = api.post(DEALERS, json={"vin": UNDECODABLE, "dealers": PUBLISHED_DEALERS})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == 422
    assert body["failed_vins"] == [UNDECODABLE["vin"]]
    assert "missing_dealers" not in body


def test_unknown_dealer_is_422_with_missing_dealers(api: httpx.Client) -> None:
    """A dealer that is not in the universe is 422 with missing_dealers."""
    unknown = {"source": "no-such-dealer.example", "zip": "12345"}
    response = api.post(DEALERS, json={"vin": PORSCHE, "dealers": [*PUBLISHED_DEALERS, unknown]})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == 422
    assert unknown["source"] in orjson.dumps(body["missing_dealers"]).decode()


def test_multi_location_without_zip_is_422(api: httpx.Client) -> None:
    """carvana.com without zip or mc_location_id is 422 with multi_location_sources."""
    response = api.post(VINS, json={"dealer": {"source": "carvana.com"}, "vins": CARVANA_VINS})
    assert response.status_code == 422
    assert response.json()["multi_location_sources"] == ["carvana.com"]


# -- 400 ----------------------------------------------------------------------------------------


def dealers_body(**vin: Any) -> dict[str, Any]:
    return {"vin": {**PORSCHE, **vin}, "dealers": PUBLISHED_DEALERS}


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (dealers_body(vin="WP1BE2AY5PDA2806"), "vin.vin"),
        (dealers_body(vin="WP1BE2AY5PDA280644"), "vin.vin"),
        (dealers_body(vin=None), "vin.vin"),
        (dealers_body(price=0), "vin.price"),
        (dealers_body(price=-5), "vin.price"),
        (dealers_body(price=19999.5), "vin.price"),
        (dealers_body(price="20000"), "vin.price"),
        (dealers_body(price=True), "vin.price"),
        (dealers_body(price=2**63), "vin.price"),
        (dealers_body(miles=-1), "vin.miles"),
        (dealers_body(miles=1.5), "vin.miles"),
        (dealers_body(miles=False), "vin.miles"),
        ({"vin": PORSCHE, "dealers": []}, "dealers"),
        ({"vin": PORSCHE, "dealers": PUBLISHED_DEALERS * 34}, "dealers"),
        ({"vin": PORSCHE, "dealers": {"source": "a.com"}}, "dealers"),
        ({"vin": PORSCHE, "dealers": [{"source": "a.com", "zip": "3090"}]}, "dealers[0].zip"),
        ({"vin": PORSCHE, "dealers": [{"source": "a.com", "zip": 30907}]}, "dealers[0].zip"),
        # fullwidth and Arabic-Indic digits: 5 characters, but not a ZIP code
        ({"vin": PORSCHE, "dealers": [{"source": "a.com", "zip": "3090\uff17"}]}, "digits 0-9"),
        (
            {
                "vin": PORSCHE,
                "dealers": [{"source": "a.com", "zip": "\u0663\u0660\u0669\u0660\u0667"}],
            },
            "digits 0-9",
        ),
        ({"vin": PORSCHE, "dealers": [{"zip": "30907"}]}, "dealers[0].source"),
        ({"vin": PORSCHE, "dealers": [{"source": ""}]}, "dealers[0].source"),
        ({"vin": PORSCHE, "dealers": ["a.com"]}, "dealers[0]"),
        ({"vin": PORSCHE, "dealers": [{"source": "a", "mc_location_id": 7}]}, "mc_location_id"),
        ({"dealers": PUBLISHED_DEALERS}, "vin"),
        ([PORSCHE], "JSON object"),
    ],
)
def test_dealers_rank_rejects_bad_shapes(api: httpx.Client, payload: Any, fragment: str) -> None:
    """Schema and constraint violations are 400 with a message naming the field."""
    response = api.post(DEALERS, content=orjson.dumps(payload))
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == 400
    assert fragment in body["message"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"dealer": PUBLISHED_DEALERS[0], "vins": []}, "vins"),
        ({"dealer": PUBLISHED_DEALERS[0], "vins": [PORSCHE] * 21}, "vins"),
        ({"dealer": PUBLISHED_DEALERS[0], "vins": [{**PORSCHE, "miles": -3}]}, "vins[0].miles"),
        ({"vins": [PORSCHE]}, "dealer"),
        ({"dealer": {"source": "a.com", "zip": "123456"}, "vins": [PORSCHE]}, "dealer.zip"),
    ],
)
def test_vins_rank_rejects_bad_shapes(api: httpx.Client, payload: Any, fragment: str) -> None:
    """/vins/rank has the same 400 rules, with 1-20 vehicles."""
    response = api.post(VINS, json=payload)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]


def test_twenty_vins_is_the_maximum(api: httpx.Client) -> None:
    """Exactly 20 vehicles is accepted."""
    vins = (PUBLISHED_VINS * 7)[:20]
    response = api.post(VINS, json={"dealer": PUBLISHED_DEALERS[0], "vins": vins})
    assert response.status_code == 200


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'{"vin": }', b"\xff\xfe"])
def test_malformed_json_is_400(api: httpx.Client, body: bytes) -> None:
    """A body that is not JSON is 400 Malformed JSON."""
    response = api.post(DEALERS, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("Malformed JSON")


def test_many_errors_are_summarised(api: httpx.Client) -> None:
    """A message lists at most ten problems and counts the rest."""
    dealers = [{"source": "a.com", "zip": "1"}] * 15
    message = api.post(DEALERS, json={"vin": PORSCHE, "dealers": dealers}).json()["message"]
    assert "dealers[9].zip" in message
    assert "dealers[10].zip" not in message
    assert message.endswith("and 5 more")


def test_oversized_body_is_413(api: httpx.Client) -> None:
    """A JSON body over 1 MiB is refused with 413 in the published shape."""
    response = api.post(DEALERS, content=b" " * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["code"] == 413


def test_wrong_method_and_unknown_path(api: httpx.Client) -> None:
    """GET on a rank endpoint is 405 and an unknown path 404, both in the published shape."""
    wrong = api.get(DEALERS)
    assert (wrong.status_code, wrong.json()["code"], wrong.headers["Allow"]) == (405, 405, "POST")
    missing = api.post("/v2/marketmatch/dealer/rank", json={})
    assert missing.json() == {"code": 404, "message": "Not found: POST /v2/marketmatch/dealer/rank"}
