"""``send_confirmed``: an output is on the broker before the input counts as handled.

The broker side (acks=all, a real producer) runs in every integration test that scores a study;
here, what Faust's ``send`` hands back is a future that resolves (or fails) later, as aiokafka's
does, so the test can hold the delivery and see that the handler waits for it and that a failed
delivery reaches the handler instead of vanishing into a log warning.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from streams.agents.base import send_confirmed

pytestmark = pytest.mark.unit


class _Topic:
    """What an agent's topic gives back: ``await send()`` -> the delivery future."""

    def __init__(self) -> None:
        self.delivery: asyncio.Future[Any] | None = None
        self.sent: list[tuple[bytes, Any]] = []

    async def send(self, *, key: bytes, value: Any) -> asyncio.Future[Any]:
        self.sent.append((key, value))
        self.delivery = asyncio.get_running_loop().create_future()
        return self.delivery


def test_the_send_returns_only_once_the_broker_has_the_record() -> None:
    async def scenario() -> list[str]:
        topic, steps = _Topic(), []

        async def handler() -> None:
            await send_confirmed(topic, key=b"p", value="risk")
            steps.append("handled")

        task = asyncio.create_task(handler())
        await asyncio.sleep(0.01)
        steps.append("buffered")  # sent, not yet delivered: the handler still waits
        assert topic.delivery is not None and not task.done()
        topic.delivery.set_result("metadata")
        await task
        return steps

    assert asyncio.run(scenario()) == ["buffered", "handled"]


def test_a_failed_delivery_reaches_the_handler() -> None:
    async def scenario() -> None:
        topic = _Topic()
        task = asyncio.create_task(send_confirmed(topic, key=b"p", value="risk"))
        await asyncio.sleep(0.01)
        assert topic.delivery is not None
        topic.delivery.set_exception(KafkaTimeoutError())
        await task

    with pytest.raises(KafkaTimeoutError):
        asyncio.run(scenario())
