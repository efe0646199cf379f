"""What every agent does with each message: parse it, or dead-letter it with a reason."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from streams.dlq import StreamReason, dead_letter

RecordT = TypeVar("RecordT", bound=BaseModel)
ResultT = TypeVar("ResultT")


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
