"""What every agent does with each message: take its record, or dead-letter it with a reason."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from streams.consumer_offsets import HANDLING, LAST_HANDLED
from streams.dlq import StreamReason, dead_letter
from streams.records import Malformed, Record

RecordT = TypeVar("RecordT", bound=Record)
ResultT = TypeVar("ResultT")

logger = logging.getLogger(__name__)


async def record_or_dead_letter(
    event: Any, record_type: type[RecordT], dlq_topic: Any, stage: str
) -> RecordT | None:
    """The event's record, as its topic decoded it; if malformed, dead-letter it, return None.

    A topic of another value type than ``record_type`` is a wiring error (``TypeError``).
    """
    value = event.value
    if isinstance(value, record_type):
        return value
    if value is not None and not isinstance(value, Malformed):
        raise TypeError(f"expected {record_type.__name__}, the topic gave {type(value).__name__}")
    error = value.error if value is not None else f"an empty message is no {record_type.__name__}"
    await dead_letter(
        dlq_topic, event, stage=stage, reason=StreamReason.MALFORMED_RECORD, error=error
    )
    return None


async def send_confirmed(topic: Any, *, key: bytes, value: Any) -> None:
    """Send a record and wait until the broker has it (``acks=all``); a failed delivery raises.

    Faust's ``send`` returns once the record is buffered, and a delivery that fails later is
    only a warning in the log (``_on_published error``), while the input's offset is
    acknowledged and committed all the same: the output would be lost without a trace. Waiting
    here, a failure reaches the agent's handler (the input is dead-lettered with its payload,
    :func:`handle_or_dead_letter`) and the input is acknowledged only after its outputs are on
    the broker. Costs one round trip to the broker per record.
    """
    pending = await topic.send(key=key, value=value)
    await pending


async def in_thread(func: Callable[..., ResultT], *args: Any, **kwargs: Any) -> ResultT:
    """Run blocking work (file I/O, inference calls, SQL) off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


async def handle_or_dead_letter(
    handle: Callable[[Any], Awaitable[None]], event: Any, dlq_topic: Any, stage: str
) -> None:
    """Handle one message; an unforeseen error dead-letters it instead of crashing the agent.

    Expected failures have their own reasons inside ``handle``; this is the last line of defence
    that keeps one bad message from stopping a partition (a crashed Faust agent is restarted,
    but the message that crashed it would be lost without a trace).
    """
    message = getattr(event, "message", None)
    where = (str(getattr(message, "topic", "")), int(getattr(message, "partition", -1)))
    HANDLING[where] += 1  # the stalled-partition check waits (consumer_watchdogs.py)
    try:
        await handle(event)
    except Exception as e:
        logger.exception("unexpected error at %s; dead-lettering the message", stage)
        await dead_letter(
            dlq_topic, event, stage=stage, reason=StreamReason.INTERNAL_ERROR, error=e
        )
    finally:
        HANDLING[where] -= 1
        LAST_HANDLED[where] = time.monotonic()
