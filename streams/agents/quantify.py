"""CT study event -> load the series from its claim check -> Triton -> ``ct.quantification``."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from inference.exceptions import (
    InferenceError,
    InferenceRejected,
    SeriesRejected,
    TritonTimeout,
    TritonUnavailable,
)
from streams import topics as t
from streams.agents.base import handle_or_dead_letter, in_thread, parse_or_dead_letter
from streams.app import Pipeline
from streams.dlq import StreamReason, dead_letter
from streams.metrics import MESSAGES, STAGE_SECONDS
from streams.records import CtStudy, Quantification, StageTimings

logger = logging.getLogger(__name__)

STAGE = "quantify"
#: Attempts and first back-off when Triton is unreachable; a study is dead-lettered after that,
#: so an outage delays the pipeline by seconds, never stops it.
TRITON_ATTEMPTS = 3
TRITON_BACKOFF_S = 1.0


INFERENCE_REASONS: dict[type[InferenceError], StreamReason] = {
    TritonUnavailable: StreamReason.TRITON_UNAVAILABLE,
    TritonTimeout: StreamReason.TRITON_TIMEOUT,
    InferenceRejected: StreamReason.INFERENCE_REJECTED,
}


class StudyUnavailable(Exception):
    """The claim check does not point to a readable study."""

    def __init__(self, reason: StreamReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def study_path(study_uri: str) -> Path:
    """Resolve a ``file://`` claim check to a folder; other schemes are not served yet."""
    parsed = urlparse(study_uri)
    if parsed.scheme != "file":
        raise StudyUnavailable(StreamReason.UNSUPPORTED_URI, f"unsupported study URI {study_uri!r}")
    path = Path(unquote(parsed.path))
    if not path.is_dir():
        raise StudyUnavailable(StreamReason.STUDY_NOT_FOUND, f"no study folder at {path}")
    return path


def register(pipeline: Pipeline) -> None:
    """Declare the quantification agent."""
    app = pipeline.app
    dlq = pipeline.topic(t.CT_STUDIES.dlq)
    out = pipeline.topic(t.CT_QUANTIFICATION.name)
    deps = pipeline.deps
    quantifier = deps.quantifier

    async def infer_with_retry(volume: Any) -> Any:
        delay_s = TRITON_BACKOFF_S
        for attempt in range(1, TRITON_ATTEMPTS + 1):
            try:
                return await in_thread(quantifier.quantify, volume)
            except TritonUnavailable:
                if attempt == TRITON_ATTEMPTS:
                    raise
                logger.warning(
                    "Triton unavailable (attempt %d), retrying in %.1fs", attempt, delay_s
                )
                await asyncio.sleep(delay_s)
                delay_s *= 2
        raise AssertionError("unreachable")

    @app.agent(pipeline.topic(t.CT_STUDIES.name), name="quantify_study")
    async def quantify_study(stream: Any) -> None:
        async def handle(event: Any) -> None:
            study = await parse_or_dead_letter(event, CtStudy, dlq, STAGE)
            if study is None:
                return
            try:
                started = time.perf_counter()
                volume = await in_thread(deps.read_series, study_path(study.study_uri))
                loaded = time.perf_counter()
                biomarkers = await infer_with_retry(volume)
                inferred = time.perf_counter()
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
            result = Quantification(
                study_uid=study.study_uid,
                patient_pseudonym=study.patient_pseudonym,
                biomarkers=biomarkers.as_dict(),
                lesion_model=quantifier.model_name,
                lesion_model_version=quantifier.model_version(),
                ct_time=study.ct_time,
                published_at=study.published_at,
                hospital=study.hospital,
                timings=timings,
                study_uri=study.study_uri,
            )
            await out.send(key=event.key, value=result.to_bytes())
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)
