"""``triage.config`` -> the alert policy in force, on every worker.

The topic is compacted and read in full by every worker with a group-less consumer (not an
agent): each worker must know every hospital's levels (and site calibration of the risk model),
whichever partitions it owns, and a change applies to the next score without a restart. A
record that is not a valid policy (levels out of
[0, 1] or out of order, unknown level, no levels at all) is dead-lettered with its reason code
and the previous policy stays in force. A starting worker scores nothing until it has read the
topic to the end it had at start-up (:meth:`Pipeline.policies_read`, bounded by
``config_catch_up_s``).
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from pydantic import ValidationError

from streams import topics as t
from streams.dlq import StreamReason, dead_letter_message
from streams.kafka_security import KafkaSecurity
from streams.pipeline import Pipeline
from streams.records import Malformed, TriageConfig
from triage.alerts import AlertPolicy
from triage.exceptions import ConfigRejected
from triage.risk import calibrated_model

logger = logging.getLogger(__name__)

STAGE = "config"


def policy_of(config: TriageConfig) -> AlertPolicy:
    """The policy a record sets: named levels or an old single threshold (or ConfigRejected)."""
    return AlertPolicy.from_dict(config.model_dump())


def apply_config(pipeline: Pipeline, config: TriageConfig) -> None:
    """Make ``config`` the policy in force for its hospital (raises ConfigRejected).

    A policy with a site calibration also puts the worker's risk model with that layer in
    force for the hospital (refused, and the previous policy kept, when the layer was fitted on
    another model than the worker's); one without goes back to the model as loaded.
    """
    policy = policy_of(config)
    model = calibrated_model(pipeline.deps.risk_model, policy.calibration)
    pipeline.policies[config.hospital] = policy
    if policy.calibration is None:
        pipeline.site_models.pop(config.hospital, None)
    else:
        pipeline.site_models[config.hospital] = model
    levels = ", ".join(f"{k} {v:g}" for k, v in policy.to_dict()["levels"].items())
    logger.info(
        "alert policy of %s is now %s (%s; alerts from %s; risk model %s) by %s: %s",
        config.hospital,
        policy.threshold_version,
        levels,
        policy.alert_from,
        model.version,
        config.changed_by,
        config.reason,
    )


def register(pipeline: Pipeline) -> None:
    """Declare the background task that follows ``triage.config``."""
    app = pipeline.app
    dlq = pipeline.topic(t.TRIAGE_CONFIG.dlq)

    async def take(message: ConsumerRecord[bytes, bytes]) -> None:
        config = TriageConfig.from_data(message.value)  # the topic's value type
        error: ValidationError | ConfigRejected | None = None
        if isinstance(config, Malformed):
            error = config.error
        else:
            try:
                apply_config(pipeline, config)
            except ConfigRejected as e:
                error = e
        if error is not None:
            reason = getattr(error, "reason", StreamReason.INVALID_CONFIG)
            await dead_letter_message(
                dlq, message, message.key, stage=STAGE, reason=reason, error=error
            )

    @app.task
    async def follow_triage_config() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=pipeline.settings.kafka.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **KafkaSecurity.from_settings(pipeline.settings.kafka).aiokafka(),
        )
        await consumer.start()
        try:
            await t.read_from_start(consumer, (t.TRIAGE_CONFIG.name,), take)  # start-up's first
            logger.info("triage.config read: %d hospital policies", len(pipeline.policies))
            pipeline.config_read.set()
            async for message in consumer:
                await take(message)
        finally:
            await consumer.stop()
