"""What every agent does with each message: parse it, or dead-letter it with a reason."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from streams.dlq import StreamReason, dead_letter

RecordT = TypeVar("RecordT", bound=BaseModel)
ResultT = TypeVar("ResultT")

logger = logging.getLogger(__name__)


async def parse_or_dead_letter(
    event: Any, record_type: type[RecordT], dlq_topic: Any, stage: str
) -> RecordT | None:
    """Parse the event's JSON value as ``record_type``; if invalid, dead-letter it, return None."""
    try:
        return record_type.model_validate_json(event.value or b"")
    except ValidationError as e:
        await dead_letter(
            dlq_topic, event, stage=stage, reason=StreamReason.MALFORMED_RECORD, error=e
        )
        return None


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
    try:
        await handle(event)
    except Exception as e:
        logger.exception("unexpected error at %s; dead-lettering the message", stage)
        await dead_letter(
            dlq_topic, event, stage=stage, reason=StreamReason.INTERNAL_ERROR, error=e
        )
