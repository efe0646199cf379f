"""What the agents share: the app, settings, services and models, topics, tables, policies.

Built by :func:`streams.app.build_app` and handed to every agent module's ``register``; agents
import this module, never :mod:`streams.app` and never each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faust
from sqlalchemy.engine import Engine

from inference import CtVolume, load_series
from streams.settings import Settings
from triage.alerts import AlertPolicy
from triage.capacity import CapacityPlanner, CapacityRegistry, LengthOfStay, build_registry
from triage.risk import RiskModel

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
    #: hospitals whose policy carries a site calibration: the risk model with its layer
    site_models: dict[str, RiskModel] = field(default_factory=dict)
    #: set once ``triage.config`` was read to the end it had at start-up (streams.agents.config)
    config_read: asyncio.Event = field(default_factory=asyncio.Event)
    registry: CapacityRegistry = field(default_factory=CapacityRegistry)

    def topic(self, name: str) -> faust.TopicT:
        """The declared topic called ``name`` (dead-letter twins included)."""
        return self.topics[name]

    def policy_for(self, hospital: str) -> AlertPolicy:
        """The alert policy in force for ``hospital`` (latest ``triage.config``, else default)."""
        return self.policies.get(hospital, self.deps.default_policy)

    async def policies_read(self) -> None:
        """Wait until the policies in force are known (at most ``config_catch_up_s``, once).

        A restarted worker that scored a redelivered study before reading ``triage.config``
        alerted under the default policy, a version no longer in force.
        """
        if self.config_read.is_set():
            return
        try:
            await asyncio.wait_for(self.config_read.wait(), self.settings.worker.config_catch_up_s)
        except TimeoutError:
            logger.warning(
                "triage.config not read within %.0f s: scoring with the policies known so far "
                "(the defaults for hospitals not read yet)",
                self.settings.worker.config_catch_up_s,
            )
            self.config_read.set()

    def model_for(self, hospital: str) -> RiskModel:
        """The risk model for ``hospital``: with its site calibration if its policy has one."""
        return self.site_models.get(hospital, self.deps.risk_model)

    def capacity_planner(self) -> CapacityPlanner:
        """The capacity core with this worker's units, horizon and lengths of stay."""
        worker = self.settings.worker
        return CapacityPlanner(
            registry=self.registry,
            days=worker.forecast_days,
            breach_probability=worker.capacity_breach_probability,
            icu_stay=LengthOfStay(worker.icu_stay_mean_days, worker.icu_stay_sigma),
            ventilation=LengthOfStay(worker.ventilation_mean_days, worker.ventilation_sigma),
        )


def load_registry(
    settings: Settings,
    default_beds: dict[str, int] | None = None,
    fallback_beds: int | None = None,
) -> CapacityRegistry:
    """The capacity registry from configuration and the FHIR Locations file (read once)."""
    worker = settings.worker
    return build_registry(
        worker.capacity_locations,
        worker.unit_capacity,
        worker.hospital,
        default_beds=default_beds,
        fallback_beds=worker.icu_capacity_beds if fallback_beds is None else fallback_beds,
        fallback_ventilators=worker.icu_ventilators,
    )
