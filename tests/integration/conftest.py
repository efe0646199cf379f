"""Fixtures shared by the integration tests (the services themselves are in ``tests/conftest.py``).

A test module defines its own ``settings`` fixture (its app id, ports, store, options); the
fixtures here build on whichever ``settings`` the requesting module defines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stream_checks import start_group_at_end

from streams.demo import DemoError, WorkerProcess
from streams.settings import Settings
from streams.sources.fhir_ingest import FhirIngress, KafkaFhirSink
from triage.fhir.pseudonym import Pseudonymiser
from triage.risk.mexico import load_cohort
from triage.risk.recalibration import recalibrate
from triage.risk.scoring import FLAGS, RiskPanel
from triage.risk.training import make_splits
from triage.risk.validation import parse_table


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[WorkerProcess]:
    """The real worker process on the module's settings (fails with its log tail if it cannot).

    Its group starts at the end of every topic: the session's broker holds every earlier test's
    studies, which a new group would quantify and score first (minutes in a full run).
    """
    start_group_at_end(settings.kafka.bootstrap_servers, settings.worker.app_id)
    process = WorkerProcess(settings)
    try:
        process.start(timeout_s=180)
    except (DemoError, OSError) as e:
        process.stop()
        tail = process.log_path.read_text()[-4000:] if process.log_path.exists() else ""
        pytest.fail(f"worker did not start ({e}):\n{tail}")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def pseudonymiser(settings: Settings) -> Pseudonymiser:
    """The worker's own pseudonymiser (its configured key), to find a patient downstream."""
    key = settings.pseudonym.key.get_secret_value().encode()
    return Pseudonymiser(key, settings.pseudonym.key_version)


@pytest.fixture(scope="module")
def publish_fhir(settings: Settings, pseudonymiser: Pseudonymiser) -> Callable[..., None]:
    """``publish_fhir(hospital, *resources)``: each resource through FHIR ingress, each used."""

    def publish(hospital: str, *resources: dict[str, Any]) -> None:
        sink = KafkaFhirSink(settings.kafka.bootstrap_servers)
        ingress = FhirIngress(pseudonymiser, hospital, sink, "it")
        try:
            for resource in resources:
                report = ingress.ingest_json(json.dumps(resource))
                assert report.used == 1, (report.rejections, report.counts)
        finally:
            sink.close()

    return publish


SITE_ROWS = 6000


def _recalibrated(shared_data: Path, out: Path, rows: slice, site: str) -> Path:
    """The shipped models recalibrated on REAL held-out Mexico patients (intubation)."""
    cohort = load_cohort(shared_data / "clinical" / "mexico-ssa-2020-05-27")
    table = []
    for i in make_splits(cohort, 2020)["random"].test[rows]:
        f, o = cohort.features.iloc[int(i)], cohort.outcomes.iloc[int(i)]
        row = {"age": _cell(f["age_years"]), "sex": {1.0: "M", 0.0: "F"}.get(f["sex_male"], "")}
        row |= {flag: _cell(f.get(f"has_{flag}", np.nan)) for flag in FLAGS}
        row["ventilation"] = _cell(o["intubation"])
        table.append(row)
    recalibrate(parse_table(table), RiskPanel.load(), out, site=site, source_sha256="0" * 64)
    return out


@pytest.fixture(scope="module")
def site_models(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped models recalibrated on 6,000 REAL held-out Mexico patients (intubation)."""
    out = tmp_path_factory.mktemp("site-models")
    return _recalibrated(shared_data, out, slice(0, SITE_ROWS), "mexico-held-out")


@pytest.fixture(scope="module")
def other_site_models(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same on the last 4,593 held-out patients (232 events): another layer."""
    out = tmp_path_factory.mktemp("other-site-models")
    return _recalibrated(shared_data, out, slice(3000, None), "mexico-other")


def _cell(value: float) -> str:
    return "" if value is None or np.isnan(value) else f"{value:g}"
