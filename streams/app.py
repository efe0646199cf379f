"""The Faust application: records, app, topics, tables, agents, built from explicit settings.

The app is built by :func:`build_app` rather than at import, so importing ``streams`` reads no
environment and opens no connection. Agents live in ``streams/agents/``; each module has a
``register(pipeline)`` that declares its agents on the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faust
from sqlalchemy.engine import Engine

from inference.volume import CtVolume, load_series
from streams import topics as t
from streams.metrics import ASSIGNED_PARTITIONS
from streams.settings import Settings
from triage.alerts.policy import AlertPolicy
from triage.risk.model import RiskModel

logger = logging.getLogger(__name__)


class Quantifier(Protocol):
    """What the quantify agent needs from a lesion model client."""

    model_name: str

    def quantify_volume(self, volume: Any, masks: bool = False) -> Any:
        """Return the biomarkers (regional ones and masks where the model has them)."""

    def model_version(self) -> str:
        """Return the served model version."""


@dataclass
class Dependencies:
    """The services and models the agents call: built by the worker, replaced in tests."""

    quantifier: Quantifier
    risk_model: RiskModel
    store: Engine
    default_policy: AlertPolicy
    hospital_capacity_beds: dict[str, int]
    default_capacity_beds: int
    # how a study folder becomes a volume: in a sandboxed child process in the worker
    read_series: Callable[[Path], CtVolume] = load_series


@dataclass
class Pipeline:
    """The app plus everything the agents share."""

    app: faust.App
    settings: Settings
    deps: Dependencies
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    policies: dict[str, AlertPolicy] = field(default_factory=dict)

    def topic(self, name: str) -> faust.TopicT:
        """The declared topic called ``name`` (dead-letter twins included)."""
        return self.topics[name]

    def policy_for(self, hospital: str) -> AlertPolicy:
        """The alert policy in force for ``hospital`` (latest ``triage.config``, else default)."""
        return self.policies.get(hospital, self.deps.default_policy)


def _faust_app(settings: Settings) -> faust.App:
    worker = settings.worker
    return faust.App(
        worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        autodiscover=False,
        web_enabled=True,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=worker.web_port,
        datadir=str(worker.data_dir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        table_standby_replicas=0,
        broker_commit_every=50,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
    )


def build_app(settings: Settings, deps: Dependencies) -> Pipeline:
    """Declare topics, tables and agents on a new Faust app."""
    from streams.agents import capacity, clinical, config, quantify, risk, sinks, writeback

    app = _faust_app(settings)
    pipeline = Pipeline(app=app, settings=settings, deps=deps)
    for name, (partitions, _compacted) in t.topic_layout(settings.kafka.partitions).items():
        pipeline.topics[name] = app.topic(
            name,
            partitions=partitions,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )
    for module in (config, clinical, quantify, risk, capacity, sinks, writeback):
        module.register(pipeline)

    async def _count_partitions(sender: Any, **_: Any) -> None:
        ASSIGNED_PARTITIONS.set(len(app.consumer.assignment()))

    app.on_rebalance_complete.connect(_count_partitions)  # type: ignore[arg-type]

    return pipeline
