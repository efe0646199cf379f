"""Results back to the PACS: a DICOM SEG and a TID 1500 SR per quantified study, by STOW-RS.

The Segmentation holds the lung and lesion masks of the model that produced the numbers (the
masks claim check of the quantification; the threshold baseline's masks are recomputed, being
deterministic); the measurement report the biomarkers, coded. A learned-model result without its
masks is refused rather than given another method's masks. The masks file is removed once stored.

Off the critical path: it reads ``ct.quantification`` beside the risk agent, so a slow or
absent PACS never delays an alert. Enabled by ``CTRIAGE_INGEST__WRITEBACK_URL``; it authenticates
to the PACS and checks its certificate with the poller's DICOMweb settings
(``CTRIAGE_INGEST__DICOMWEB_TOKEN`` / ``_USERNAME`` / ``_PASSWORD`` / ``_CA_FILE``,
:func:`~streams.sources.dicomweb.pacs_session`). UIDs derive from the series and the model
version, so a redelivered quantification replaces its objects. The SR compares the study with
the patient's prior CT when ``patient_to_timeline`` (co-partitioned) already holds one.
A failure is dead-lettered on ``ct.quantification.dlq`` as ``pacs_writeback_failed``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from requests.exceptions import RequestException

from inference import (
    THRESHOLD_MODEL,
    InferenceError,
    PriorComparison,
    load_masks,
    results_for_volume,
    threshold_masks,
)
from streams import topics as t
from streams.agents.base import handle_or_dead_letter, in_thread, record_or_dead_letter
from streams.claim_check import StudyUnavailable, study_path, uri_path
from streams.dlq import StreamReason, dead_letter
from streams.mapping import timeline_point
from streams.metrics import MESSAGES
from streams.pipeline import Pipeline
from streams.records import Quantification
from streams.sources.dicomweb import pacs_session, store_results
from triage.timeline import follow_up, parse_time

logger = logging.getLogger(__name__)

STAGE = "pacs_writeback"


def masks_file_of(quantification: Quantification) -> Path | None:
    """The masks file a quantification points to; ``None`` when it has none."""
    if not quantification.masks_uri:
        return None
    path = uri_path(quantification.masks_uri)
    if not path.is_file():
        raise StudyUnavailable(
            StreamReason.STUDY_NOT_FOUND, f"masks {path.name} missing (stored already, or removed)"
        )
    return path


def prior_comparison(
    stored: list[dict[str, Any]] | None, quantification: Quantification
) -> PriorComparison | None:
    """The SR's comparison with the patient's prior CT (None: no earlier CT is known)."""
    change = follow_up(stored or [], timeline_point(quantification)).since_prior
    if change is None:
        return None
    return PriorComparison(
        study_uid=change.since_study_uid,
        study_date=parse_time(change.since_time).date(),
        lesion_percent=change.lesion_from_percent,
        lesion_points=change.lesion_points,
        interval_days=change.interval_days,
        severity_points=change.severity_points,
    )


def register(pipeline: Pipeline) -> None:
    """Declare the write-back agent when a STOW-RS address is configured."""
    url = pipeline.settings.ingest.writeback_url
    if not url:
        return
    ingest = pipeline.settings.ingest
    # the same credentials and CA as the poller; a contradictory or missing one stops the worker
    # at start (ValueError), not each study later
    session = pacs_session(
        url,
        ingest.dicomweb_token,
        ingest.dicomweb_username,
        ingest.dicomweb_password,
        ingest.dicomweb_ca_file,
    )
    app = pipeline.app
    dlq = pipeline.topic(t.CT_QUANTIFICATION.dlq)
    read_series = pipeline.deps.read_series

    def write_back(quantification: Quantification, prior: PriorComparison | None) -> int:
        volume = read_series(study_path(quantification.study_uri))
        masks_file = masks_file_of(quantification)
        if masks_file is not None:
            lung, lesion = load_masks(masks_file)
        elif quantification.lesion_model == THRESHOLD_MODEL:
            lung, lesion = threshold_masks(volume.hu, volume.spacing_mm)
        else:
            raise ValueError(f"no masks of {quantification.lesion_model} for the SEG")
        datasets = results_for_volume(
            volume,
            (lung, lesion),
            quantification.biomarkers,
            quantification.lesion_model,
            quantification.lesion_model_version,
            # the SR codes the RSNA category (records before issue 16 have none)
            (quantification.rsna_category, quantification.rsna_findings)
            if quantification.rsna_category
            else None,
            prior,
        )
        store_results(url, datasets, session=session, timeout_s=ingest.dicomweb_timeout_s)
        if masks_file is not None:
            masks_file.unlink(missing_ok=True)
        return len(datasets)

    @app.agent(pipeline.topic(t.CT_QUANTIFICATION.name), name="write_back_results")
    async def write_back_results(stream: Any) -> None:
        async def handle(event: Any) -> None:
            quantification = await record_or_dead_letter(event, Quantification, dlq, STAGE)
            if quantification is None or not quantification.study_uri:
                return
            timeline = pipeline.tables.get("patient_to_timeline")  # the risk agent's table
            known = timeline.get(quantification.patient_pseudonym) if timeline is not None else None
            prior = prior_comparison(known, quantification)
            try:
                stored = await in_thread(write_back, quantification, prior)
            except (StudyUnavailable, InferenceError, RequestException, ValueError) as e:
                await dead_letter(
                    dlq, event, stage=STAGE, reason=StreamReason.PACS_WRITEBACK_FAILED, error=e
                )
                return
            logger.info("stored %d result objects for study %s", stored, quantification.study_uid)
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)
