"""CT study event -> load the series from its claim check -> Triton -> ``ct.quantification``.

The record carries the core biomarkers, the regional ones when the served model has them
(``lesion_unet``: zones, CT severity score, distribution) and, only when the PACS write-back is
on, a claim check of the model's own masks (:mod:`inference.masks`) for the SEG it stores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from inference import (
    InferenceError,
    InferenceRejected,
    SeriesRejected,
    StudyResult,
    TritonTimeout,
    TritonUnavailable,
    check_chest,
    masks_path,
    save_masks,
)
from streams import topics as t
from streams.agents.base import handle_or_dead_letter, in_thread, record_or_dead_letter
from streams.claim_check import StudyUnavailable, study_path
from streams.dlq import StreamReason, dead_letter
from streams.mapping import quantification_record
from streams.metrics import MESSAGES, STAGE_SECONDS
from streams.pipeline import Pipeline
from streams.records import CtStudy, StageTimings

logger = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")

STAGE = "quantify"


INFERENCE_REASONS: dict[type[InferenceError], StreamReason] = {
    TritonUnavailable: StreamReason.TRITON_UNAVAILABLE,
    TritonTimeout: StreamReason.TRITON_TIMEOUT,
    InferenceRejected: StreamReason.INFERENCE_REJECTED,
}


def backoff_delays(budget_s: float, first_s: float, max_s: float) -> list[float]:
    """Waits between attempts: doubling from ``first_s``, capped at ``max_s``, summing <= budget."""
    delays: list[float] = []
    delay_s = first_s
    while sum(delays) + min(delay_s, max_s) <= budget_s:
        delays.append(min(delay_s, max_s))
        delay_s *= 2
    return delays


async def retry_while_unavailable(
    call: Callable[[], Awaitable[ResultT]], budget_s: float, first_s: float, max_s: float
) -> ResultT:
    """Await ``call()``, again after each back-off while Triton is unreachable, within ``budget_s``.

    Any other error, or :class:`TritonUnavailable` once the budget is spent, propagates (the
    agent dead-letters it). One line per attempt, and one when Triton answers again.
    """
    delays = backoff_delays(budget_s, first_s, max_s)
    for attempt, delay_s in enumerate([*delays, None], start=1):
        try:
            result = await call()
        except TritonUnavailable:
            if delay_s is None:
                logger.warning("Triton still unavailable after %.1fs; dead-lettering", sum(delays))
                raise
            logger.warning("Triton unavailable (attempt %d), retrying in %.1fs", attempt, delay_s)
            await asyncio.sleep(delay_s)
            continue
        if attempt > 1:
            logger.info("Triton answered again after %d attempts", attempt)
        return result
    raise AssertionError("unreachable: the last attempt returns or raises")


def keep_study_masks(
    result: StudyResult, folder: Path, study_uid: str, model: str, version: str
) -> str:
    """Save the masks the model returned; their ``file://`` URI, or "" when it returned none."""
    if result.lung is None or result.classes is None:
        return ""
    path = masks_path(folder, study_uid, model, version)
    return save_masks(path, result.lung, result.classes > 0).resolve().as_uri()


def register(pipeline: Pipeline) -> None:
    """Declare the quantification agent."""
    app = pipeline.app
    dlq = pipeline.topic(t.CT_STUDIES.dlq)
    out = pipeline.topic(t.CT_QUANTIFICATION.name)
    deps = pipeline.deps
    quantifier = deps.quantifier
    # the write-back stores a SEG: keep the masks of the model that made the numbers
    keep_masks = bool(pipeline.settings.ingest.writeback_url)
    masks_dir = pipeline.settings.worker.data_dir / "masks"

    triton = pipeline.settings.triton

    async def infer_with_retry(volume: Any) -> StudyResult:
        async def infer() -> StudyResult:
            return await in_thread(quantifier.quantify_volume, volume, keep_masks)

        return await retry_while_unavailable(
            infer, triton.outage_retry_s, triton.retry_backoff_s, triton.retry_backoff_max_s
        )

    @app.agent(pipeline.topic(t.CT_STUDIES.name), name="quantify_study")
    async def quantify_study(stream: Any) -> None:
        async def handle(event: Any) -> None:
            study = await record_or_dead_letter(event, CtStudy, dlq, STAGE)
            if study is None:
                return
            try:
                started = time.perf_counter()
                volume = await in_thread(deps.read_series, study_path(study.study_uri))
                await in_thread(check_chest, volume.hu, volume.spacing_mm)  # no_lung_found
                loaded = time.perf_counter()
                study_result = await infer_with_retry(volume)
                inferred = time.perf_counter()
                version = quantifier.model_version()
                masks_uri = await in_thread(
                    keep_study_masks, study_result, masks_dir, study.study_uid,
                    quantifier.model_name, version,
                )  # fmt: skip
            except (StudyUnavailable, SeriesRejected) as e:
                await dead_letter(dlq, event, stage=STAGE, reason=e.reason, error=e)
                return
            except InferenceError as e:
                reason = INFERENCE_REASONS.get(type(e), StreamReason.TRITON_ERROR)
                await dead_letter(dlq, event, stage=STAGE, reason=reason, error=e)
                return
            timings = StageTimings(load_s=loaded - started, inference_s=inferred - loaded)
            STAGE_SECONDS.labels(stage="load").observe(timings.load_s)
            STAGE_SECONDS.labels(stage="inference").observe(timings.inference_s)
            result = quantification_record(
                study, study_result, quantifier.model_name, version, timings, masks_uri
            )
            await out.send(key=event.key, value=result)
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)
