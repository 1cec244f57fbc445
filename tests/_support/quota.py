"""What the sandbox counted against an account, read straight from its headers."""

from __future__ import annotations

from mm_pipeline.sandbox import Sandbox
from tests.conftest import SANDBOX_OPTIONS, client_for


def requests_received(sb: Sandbox) -> int:
    """API requests the sandbox counted against account A since its last reset."""
    with client_for(sb) as probe:
        response = probe.get("/v2/batch/marketmatch/rank/jobs", params={"rows": 1})
    # The probe itself spends one unit of the quota.
    return int(SANDBOX_OPTIONS["quota"]) - int(response.headers["Quota-Remaining"]) - 1
