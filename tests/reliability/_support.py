"""Helpers shared by the reliability tests: workloads, frame comparison, sandbox observation."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Generic, TypeVar

import httpx
import polars as pl
from polars.testing import assert_frame_equal

import mm_pipeline as mm
from mm_pipeline.sandbox import Sandbox
from mm_pipeline.sandbox._market import Market
from tests.conftest import make_vins

__all__ = [
    "ALL_FAULT_KINDS",
    "JOBS",
    "KEY",
    "Background",
    "ServedRequests",
    "account_jobs",
    "assert_same_frames",
    "placement_pairs",
]

T = TypeVar("T")

KEY: Final = "mc_test_reliability_primary_key"
"""The account every reliability sandbox serves."""
JOBS: Final = "/v2/batch/marketmatch/rank/jobs"
ALL_FAULT_KINDS: Final = ("429", "429_no_retry_after", "500", "502", "503", "drop", "slow")
"""Every non-download fault the sandbox can inject (``slow`` included: it outlasts timeouts)."""
_UNDECODABLE_VIN: Final = "ZZZBE2AY3PDA28064"
"""A well-formed VIN (valid check digit) whose manufacturer the API does not know."""
_UNKNOWN_DEALER: Final = {"source": "no-such-rooftop.example", "zip": "10001"}
"""A well-formed dealer the API does not know."""
_PROBE_ATTEMPTS: Final = 50


def placement_pairs(vehicles: int, dealers: int, *, offset: int = 0) -> pl.DataFrame:
    """Every vehicle against every dealer, plus pairs the API refuses.

    ``vehicles`` decodable vehicles and one undecodable one, each against ``dealers`` sandbox
    rooftops (from ``offset``) and one unknown rooftop: the result has ranked rows and failed
    rows of three kinds (``vin_decode_failed``, ``dealer_not_found`` and, online, the 422
    pruning that goes with them).
    """
    cars = pl.DataFrame(
        {
            "vin": [*make_vins(vehicles), _UNDECODABLE_VIN],
            "price": [15_000 + 370 * i for i in range(vehicles + 1)],
            "miles": [1_000 + 2_900 * i for i in range(vehicles + 1)],
        }
    )
    rooftops = Market.default().dealers.slice(offset, dealers).select("source", "zip")
    rooftops = pl.concat([rooftops, pl.DataFrame([_UNKNOWN_DEALER])])
    return mm.cross_pairs(cars, rooftops)


def assert_same_frames(
    got: mm.RankResult, expected: mm.RankResult, *, ignore_job_ids: bool = False
) -> None:
    """Assert both results have identical ``ranked`` and ``failed`` frames (order included).

    With ``ignore_job_ids``, the batch job ids that ``failed`` messages name (each run of the
    same work on another sandbox has its own job) are replaced by ``<job>`` on both sides.
    """
    assert_frame_equal(got.ranked, expected.ranked)
    assert_frame_equal(_failed(got, ignore_job_ids), _failed(expected, ignore_job_ids))


def _failed(result: mm.RankResult, ignore_job_ids: bool) -> pl.DataFrame:
    if not ignore_job_ids:
        return result.failed
    message = pl.col("error_message")
    for job_id in result.stats.batch_job_ids:
        message = message.str.replace_all(job_id, "<job>", literal=True)
    return result.failed.with_columns(message)


def account_jobs(sb: Sandbox, key: str = KEY) -> list[dict[str, Any]]:
    """Every batch job of the key's account, newest first, straight from the API.

    Asked again past injected faults (a sandbox with a fault rate answers this request too).
    """
    with httpx.Client(timeout=10) as http:
        for _ in range(_PROBE_ATTEMPTS):
            try:
                response = http.get(sb.url(JOBS), params={"api_key": key, "rows": 100})
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                jobs: list[dict[str, Any]] = response.json()["jobs"]
                return jobs
            assert "X-Sandbox-Fault" in response.headers, response.text
    raise AssertionError(f"no answer to the job list after {_PROBE_ATTEMPTS} attempts")


class ServedRequests:
    """Count the API requests the sandbox served an account, as the sandbox itself reports it.

    Each probe is a cheap API request whose ``Quota-Limit`` / ``Quota-Remaining`` headers tell
    how many calls the account has spent this month; the probes' own calls are subtracted.
    Injected faults and rate-limited requests spend no quota, so they are not counted.
    """

    def __init__(self, http: httpx.Client) -> None:
        self._http = http
        self._probes = 0

    def __call__(self) -> int:
        """Return the number of requests served to the account so far (probes excluded)."""
        response = self._http.get(JOBS, params={"rows": 1})
        self._probes += 1
        spent = int(response.headers["Quota-Limit"]) - int(response.headers["Quota-Remaining"])
        return spent - self._probes

    @classmethod
    @contextmanager
    def on(cls, sb: Sandbox, key: str = KEY) -> Iterator[ServedRequests]:
        """Count the requests of ``key``'s account on ``sb`` (the account's quota as it is now)."""
        with httpx.Client(base_url=sb.base_url, params={"api_key": key}, timeout=10) as http:
            yield cls(http)


class Background(Generic[T]):
    """Run a blocking call (such as ``mm.rank_dealers``) on a thread; collect what it returns."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._call = call
        self._value: list[T] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="reliability-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value.append(self._call())
        except BaseException as exc:  # handed to the test thread by result()
            self._error.append(exc)

    def result(self, *, timeout: float = 60.0) -> T:
        """Wait for the call to end; return its value or raise its exception."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the call did not end within {timeout} s"
        if self._error:
            raise self._error[0]
        return self._value[0]
