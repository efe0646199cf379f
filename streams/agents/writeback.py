"""Results back to the PACS: a DICOM SEG and a TID 1500 SR per quantified study, by STOW-RS.

The Segmentation holds the lung and lesion masks; the measurement report the biomarkers, coded.

Off the critical path: it reads ``ct.quantification`` beside the risk agent, so a slow or
absent PACS never delays an alert. Enabled by ``CTRIAGE_INGEST__WRITEBACK_URL``. UIDs derive from
the series and the model version, so a redelivered quantification replaces its objects.
A failure is dead-lettered on ``ct.quantification.dlq`` as ``pacs_writeback_failed``.
"""

from __future__ import annotations

import logging
from typing import Any

from requests.exceptions import RequestException

from inference.dicom_results import results_for_volume
from inference.exceptions import InferenceError
from streams import topics as t
from streams.agents.base import handle_or_dead_letter, in_thread, parse_or_dead_letter
from streams.agents.quantify import StudyUnavailable, study_path
from streams.app import Pipeline
from streams.dlq import StreamReason, dead_letter
from streams.metrics import MESSAGES
from streams.records import Quantification
from streams.sources.dicomweb import store_results

logger = logging.getLogger(__name__)

STAGE = "pacs_writeback"


def register(pipeline: Pipeline) -> None:
    """Declare the write-back agent when a STOW-RS address is configured."""
    url = pipeline.settings.ingest.writeback_url
    if not url:
        return
    app = pipeline.app
    dlq = pipeline.topic(t.CT_QUANTIFICATION.dlq)
    read_series = pipeline.deps.read_series

    def write_back(quantification: Quantification) -> int:
        volume = read_series(study_path(quantification.study_uri))
        datasets = results_for_volume(
            volume,
            quantification.biomarkers,
            quantification.lesion_model,
            quantification.lesion_model_version,
        )
        store_results(url, datasets)
        return len(datasets)

    @app.agent(pipeline.topic(t.CT_QUANTIFICATION.name), name="write_back_results")
    async def write_back_results(stream: Any) -> None:
        async def handle(event: Any) -> None:
            quantification = await parse_or_dead_letter(event, Quantification, dlq, STAGE)
            if quantification is None or not quantification.study_uri:
                return
            try:
                stored = await in_thread(write_back, quantification)
            except (StudyUnavailable, InferenceError, RequestException, ValueError) as e:
                await dead_letter(
                    dlq, event, stage=STAGE, reason=StreamReason.PACS_WRITEBACK_FAILED, error=e
                )
                return
            logger.info("stored %d result objects for study %s", stored, quantification.study_uid)
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)
