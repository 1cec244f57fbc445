"""Answer shapes a real server rarely produces, through an in-process httpx transport.

The sandbox answers by the book; these tests check that the fan-out stays correct and accounts
for every pair when an answer omits fields, reorders, adds or drops items, or contradicts itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import polars as pl
import pytest

import mm_pipeline as mm
from mm_pipeline._session import set_backoff_scale
from tests.conftest import make_vins

Handler = Callable[[dict[str, Any]], tuple[int, Any]]


def client_with(handler: Handler) -> mm.MarketMatchClient:
    """A client whose requests are answered in-process by ``handler(request_json)``."""

    def respond(request: httpx.Request) -> httpx.Response:
        status, body = handler(json.loads(request.content))
        return httpx.Response(status, json=body)

    return mm.MarketMatchClient(
        "mc_test_answers",
        "http://answers.test",
        transport=httpx.MockTransport(respond),
        rate_limit=1e6,
    )


def ranked_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A by-the-book answer for a /dealers/rank body: dealerN ranked by N, highest first."""
    vin = body["vin"]
    dealers = sorted(body["dealers"], key=lambda d: -int(d["source"][6:].split(".")[0]))
    return [
        {**vin, **dealer, "vin_score": 1500.0, "dealer_ymm_score": 2000.0 - rank, "vin_rank": rank}
        for rank, dealer in enumerate(dealers, start=1)
    ]


def pairs(n: int, *, zips: bool = True) -> pl.DataFrame:
    """One vehicle against n dealers."""
    frame = pl.DataFrame(
        {
            "vin": make_vins(1) * n,
            "price": [20_000] * n,
            "miles": [100] * n,
            "source": [f"dealer{i}.com" for i in range(n)],
        }
    )
    return frame.with_columns(zip=pl.lit("30907")) if zips else frame


def test_answers_without_zip_or_location_and_with_extra_fields_still_match() -> None:
    """Items lacking zip/mc_location_id, with unknown extra fields, are matched by source."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)
        for item in items:
            del item["zip"]
            item["confidence"] = 0.9
        return 200, {"ranked_matches": items, "failed_items": [], "request_id": "x"}

    result = mm.rank_dealers(pairs(3), client=client_with(handler), progress=False)
    assert result.ranked.get_column("source").to_list() == [
        "dealer2.com",
        "dealer1.com",
        "dealer0.com",
    ]
    assert result.ranked.get_column("zip").to_list() == ["30907"] * 3  # as given
    assert result.stats.unmatched_answers == 0


def test_rank_order_follows_vin_rank_not_list_order() -> None:
    """Items listed out of order are ranked by their vin_rank."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)
        return 200, {"ranked_matches": [items[1], items[2], items[0]], "failed_items": []}

    result = mm.rank_dealers(pairs(3), client=client_with(handler), progress=False)
    assert result.ranked.get_column("source").to_list() == [
        "dealer2.com",
        "dealer1.com",
        "dealer0.com",
    ]


def test_answers_with_other_json_types_are_read_like_the_published_ones() -> None:
    """Integer scores, a ZIP sent as a number and a null mc_location_id rank as usual."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)
        for item in items:
            item["vin_score"], item["dealer_ymm_score"] = 1500, int(item["dealer_ymm_score"])
            item["mc_location_id"] = None
        items[0]["zip"] = 30907
        return 200, {"ranked_matches": items, "failed_items": []}

    typed = mm.rank_dealers(pairs(3), client=client_with(handler), progress=False)
    by_the_book = mm.rank_dealers(
        pairs(3),
        client=client_with(
            lambda b: (200, {"ranked_matches": ranked_items(b), "failed_items": []})
        ),
        progress=False,
    )
    assert typed.ranked.equals(by_the_book.ranked)
    assert typed.ranked.get_column("vin_score").to_list() == [1500.0] * 3


def test_echoed_values_in_other_spelling_are_matched_tolerantly() -> None:
    """A source echoed upper-cased with blanks, and numbers as floats, still match."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)
        for item in items:
            item["source"] = f"  {item['source'].upper()} "
        return 200, {"ranked_matches": items, "failed_items": []}

    result = mm.rank_dealers(pairs(4), client=client_with(handler), progress=False)
    assert result.ranked.height == 4
    assert result.ranked.get_column("source").to_list()[0] == "dealer3.com"  # as given

    def vins_handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = [
            {
                **v,
                **body["dealer"],
                "price": float(v["price"]),
                "vin_score": 1.0,
                "dealer_ymm_score": 2.0,
                "vin_rank": rank,
            }
            for rank, v in enumerate(body["vins"], start=1)
        ]
        return 200, {"ranked_matches": items, "failed_items": []}

    frame = pl.DataFrame(
        {"vin": make_vins(3), "price": [1, 2, 3], "miles": [0, 0, 0], "source": ["d.com"] * 3}
    )
    result = mm.rank_vins(frame, client=client_with(vins_handler), progress=False)
    assert result.ranked.get_column("vin").to_list() == make_vins(3)


def test_items_missing_from_the_answer_and_strangers_are_accounted_for() -> None:
    """A pair the answer omits goes to failed (ranking_failed); an unknown item is counted."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)[:-1]  # drops dealer0
        stranger = {**items[0], "source": "stranger.com", "vin_rank": 99}
        return 200, {"ranked_matches": [*items, stranger], "failed_items": []}

    result = mm.rank_dealers(pairs(3), client=client_with(handler), progress=False)
    assert result.ranked.get_column("vin_rank").to_list() == [1, 2]
    assert result.failed.select("source", "error_code").rows() == [
        ("dealer0.com", "ranking_failed")
    ]
    assert result.stats.unmatched_answers == 1


def test_failed_items_keep_their_code_and_message() -> None:
    """failed_items of /dealers/rank go to failed with the item's code, or dealer_not_found."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)
        failed = [
            {**items.pop(), "error_code": "dealer_closed", "error_message": "closed"},
            {**items.pop()},
        ]
        for item in failed:
            item.update(vin_score=None, dealer_ymm_score=None, vin_rank=None)
        return 200, {"ranked_matches": items, "failed_items": failed}

    result = mm.rank_dealers(pairs(4), client=client_with(handler), progress=False)
    assert result.ranked.height == 2
    assert result.failed.select("source", "error_code", "error_message").rows() == [
        ("dealer0.com", "dealer_closed", "closed"),
        ("dealer1.com", "dealer_not_found", "the API does not know this dealer (failed_items)"),
    ]


def test_a_422_naming_nothing_fails_its_chunk_with_the_message() -> None:
    """A 422 without failed_vins/missing_dealers/... fails the chunk's pairs, with the reason."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        return 422, {"code": 422, "message": "Unprocessable for reasons"}

    result = mm.rank_dealers(pairs(2), client=client_with(handler), progress=False)
    assert result.ranked.is_empty()
    assert result.failed.get_column("error_code").to_list() == ["ranking_failed"] * 2
    assert "Unprocessable for reasons" in result.failed.item(0, "error_message")


def test_missing_scores_fail_the_pair() -> None:
    """An item ranked without numeric scores is not presented as ranked."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)
        items[0]["vin_score"] = "n/a"
        return 200, {"ranked_matches": items, "failed_items": []}

    result = mm.rank_dealers(pairs(3), client=client_with(handler), progress=False)
    assert result.ranked.get_column("vin_rank").to_list() == [1, 2]
    assert result.failed.get_column("error_message").to_list() == [
        "the API ranked this pair without scores"
    ]


def test_scores_that_change_between_rounds_are_counted() -> None:
    """The same pair scored differently in a later round is a consistency violation."""
    calls = 0

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        nonlocal calls
        calls += 1
        items = ranked_items(body)
        for item in items:
            item["vin_score"] += calls  # drifts with every request
        return 200, {"ranked_matches": items, "failed_items": []}

    result = mm.rank_dealers(
        pairs(30), client=client_with(handler), chunk_size=10, exact_top_k=2, progress=False
    )
    assert result.stats.rerank_rounds == 1
    # the final request: 3 x top-2 candidates and 4 more of round 1's answers as fill
    assert result.stats.consistency_violations == 10
    assert "10 consistency violations" in repr(result)


def test_an_answer_that_is_not_an_object_is_a_failed_request() -> None:
    """A 200 whose body is not a ranking answer is an error, not an empty ranking."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        return 200, ["not", "an", "answer"]

    client = client_with(handler)
    with pytest.raises(mm.TransportError, match="no ranked_matches"):
        mm.rank_dealers(pairs(2), client=client, progress=False)
    result = mm.rank_dealers(pairs(2), client=client, on_request_failed="fail", progress=False)
    assert result.failed.get_column("error_code").to_list() == ["ranking_failed"] * 2


def test_a_group_failing_in_a_later_round_raises_and_cancels() -> None:
    """A request failing in round 2 raises (after retries); nothing partial is returned."""

    ranked: set[str] = set()

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        sources = {dealer["source"] for dealer in body["dealers"]}
        if sources & ranked:  # the re-ranking request
            return 500, {"code": 500, "message": "boom"}
        ranked.update(sources)
        return 200, {"ranked_matches": ranked_items(body), "failed_items": []}

    with set_backoff_scale(0.0), pytest.raises(mm.ServerError) as info:
        mm.rank_dealers(
            pairs(20), client=client_with(handler), chunk_size=10, exact_top_k=2, progress=False
        )
    assert "1 of 1 groups (20 of 20 pairs) were not completed" in "\n".join(info.value.__notes__)
    with set_backoff_scale(0.0):
        result = mm.rank_dealers(
            pairs(20),
            client=client_with(handler),
            chunk_size=10,
            exact_top_k=2,
            on_request_failed="fail",
            progress=False,
        )
    assert result.ranked.is_empty()  # round 1 ranked them, but the group is incomplete
    assert result.failed.get_column("error_code").to_list() == ["ranking_failed"] * 20
    assert result.stats.consistency_violations == 0


def test_account_errors_stop_the_run_even_when_failing_groups() -> None:
    """A 401 is about the account, not a group: it raises even with on_request_failed='fail'."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        return 401, {"code": 401, "message": "Invalid API key"}

    with pytest.raises(mm.AuthenticationError):
        mm.rank_dealers(
            pairs(2), client=client_with(handler), on_request_failed="fail", progress=False
        )


def vins_pairs(n: int) -> pl.DataFrame:
    """One dealer against n vehicles."""
    return pl.DataFrame(
        {
            "vin": make_vins(n),
            "price": [10_000 + i for i in range(n)],
            "miles": list(range(n)),
            "source": ["d.com"] * n,
        }
    )


def vins_answer(body: dict[str, Any], *, failing: int) -> dict[str, Any]:
    """A /vins/rank answer ranking the VINs as sent, the last ``failing`` in failed_items."""
    vins = body["vins"]
    kept, failed = vins[: len(vins) - failing], vins[len(vins) - failing :]
    ranked = [
        {**v, **body["dealer"], "vin_score": 1.0, "dealer_ymm_score": 2.0, "vin_rank": rank}
        for rank, v in enumerate(kept, start=1)
    ]
    return {"ranked_matches": ranked, "failed_items": [{**v, **body["dealer"]} for v in failed]}


@pytest.mark.parametrize(
    ("failing", "codes"),
    [(1, ["vin_decode_failed"]), (3, ["dealer_not_found"] * 3)],
    ids=["beside-ranked-ones-the-vins", "all-of-them-the-dealer"],
)
def test_failed_items_of_vins_rank_are_attributed_to_the_right_side(
    failing: int, codes: list[str]
) -> None:
    """/vins/rank: failed items beside ranked ones are the VINs'; all failed is the dealer's."""
    client = client_with(lambda body: (200, vins_answer(body, failing=failing)))
    result = mm.rank_vins(vins_pairs(3), client=client, progress=False)
    assert result.failed.get_column("error_code").to_list() == codes
    assert result.ranked.height == 3 - failing


BAD_RANKS = [None, "missing", -1, 0, True, 1.5, "1", 99]


@pytest.mark.parametrize("bad", BAD_RANKS, ids=[repr(b) for b in BAD_RANKS])
def test_an_untrustworthy_rank_is_asked_again_once(bad: Any) -> None:
    """A vin_rank that is not a positive integer within the request: the chunk is re-asked."""
    calls = 0

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        nonlocal calls
        calls += 1
        items = ranked_items(body)
        if calls == 1:
            if bad == "missing":
                del items[1]["vin_rank"]
            else:
                items[1]["vin_rank"] = bad
        return 200, {"ranked_matches": items, "failed_items": []}

    result = mm.rank_dealers(pairs(3), client=client_with(handler), progress=False)
    assert calls == 2
    assert result.ranked.get_column("source").to_list() == [
        "dealer2.com",
        "dealer1.com",
        "dealer0.com",
    ]
    assert result.ranked.get_column("rank_exact").all()
    assert (result.stats.refused_answers, result.stats.reasks) == (1, 1)
    assert result.stats.requests == 2


def test_ranks_refused_twice_go_to_failed_and_duplicates_are_refused() -> None:
    """A shared vin_rank, answered again: both items fail as ranking_failed, the rest ranks."""

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)
        items[1]["vin_rank"] = items[0]["vin_rank"]  # dealer3 and dealer2 both rank 1
        return 200, {"ranked_matches": items, "failed_items": []}

    result = mm.rank_dealers(pairs(4), client=client_with(handler), progress=False)
    assert result.ranked.get_column("source").to_list() == ["dealer1.com", "dealer0.com"]
    assert result.ranked.get_column("vin_rank").to_list() == [1, 2]
    failed = result.failed.select("source", "error_code").rows()
    assert sorted(failed) == [("dealer2.com", "ranking_failed"), ("dealer3.com", "ranking_failed")]
    assert "no valid rank" in result.failed.item(0, "error_message")
    assert (result.stats.refused_answers, result.stats.reasks) == (4, 1)
    assert "4 ranks refused (1 chunks re-asked)" in repr(result)


def test_a_candidate_failing_in_a_later_round_is_replaced_and_counted() -> None:
    """A dealer ranked in round 1 that fails in the final request: ranks stay exact."""
    seen: set[str] = set()

    def handler(body: dict[str, Any]) -> tuple[int, Any]:
        items = ranked_items(body)
        failed = [i for i in items if i["source"] == "dealer29.com" and i["source"] in seen]
        seen.update(d["source"] for d in body["dealers"])
        kept = [i for i in items if i not in failed]
        for rank, item in enumerate(kept, start=1):
            item["vin_rank"] = rank
        return 200, {"ranked_matches": kept, "failed_items": failed}

    result = mm.rank_dealers(
        pairs(30), client=client_with(handler), chunk_size=10, exact_top_k=2, progress=False
    )
    assert result.failed.get_column("source").to_list() == ["dealer29.com"]
    assert result.stats.lost_candidates == 1
    assert "1 candidates lost" in repr(result)
    exact = result.ranked.filter("rank_exact").get_column("source").to_list()
    assert len(exact) >= 2
    assert exact == [f"dealer{i}.com" for i in range(28, 28 - len(exact), -1)]
