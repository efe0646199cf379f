"""The Triton outage retry: its back-off schedule and when it gives up (no services)."""

from __future__ import annotations

import asyncio

import pytest

from inference.exceptions import TritonTimeout, TritonUnavailable
from streams.agents.quantify import backoff_delays, retry_while_unavailable

pytestmark = pytest.mark.unit


def test_backoff_doubles_is_capped_and_stays_within_the_budget() -> None:
    assert backoff_delays(60, 0.5, 8) == [0.5, 1, 2, 4, 8, 8, 8, 8, 8, 8]
    assert sum(backoff_delays(60, 0.5, 8)) <= 60
    assert backoff_delays(0, 0.5, 8) == []  # 0: one attempt, no retry


def _error(cls: type[TritonUnavailable] | type[TritonTimeout]) -> Exception:
    return cls("triton down", model_name="lesion_unet", url="127.0.0.1:1", timeout_s=1.0)


class Outage:
    """A call that finds Triton unreachable ``failures`` times, then answers."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or _error(TritonUnavailable)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "result"


def test_an_outage_shorter_than_the_budget_is_ridden_out() -> None:
    outage = Outage(failures=3)
    assert asyncio.run(retry_while_unavailable(outage, 1.0, 0.01, 0.05)) == "result"
    assert outage.calls == 4


def test_a_longer_outage_gives_up_after_the_budget() -> None:
    outage = Outage(failures=100)
    with pytest.raises(TritonUnavailable):
        asyncio.run(retry_while_unavailable(outage, 0.1, 0.01, 0.05))
    assert outage.calls == len(backoff_delays(0.1, 0.01, 0.05)) + 1


def test_other_inference_errors_are_not_retried() -> None:
    outage = Outage(failures=1, error=_error(TritonTimeout))
    with pytest.raises(TritonTimeout):
        asyncio.run(retry_while_unavailable(outage, 1.0, 0.01, 0.05))
    assert outage.calls == 1
