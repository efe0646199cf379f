"""The worker on the large lesion variant, end to end: ``CTRIAGE_TRITON__MODEL_NAME`` chooses
``lesion_unet_large`` and every study's quantification and risk come from it (issue 12).

A small SYNTHETIC cohort on the session's real broker and Triton; the flow is the one
test_pipeline checks in depth with the compact default, so this module checks only what the
variant changes: the model named in the records and that the studies are scored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stream_checks import topic_values

from inference.client import LARGE_MODEL
from streams import topics as t
from streams.demo import DemoOptions, run_pipeline
from streams.records import Quantification
from streams.settings import Settings, load_settings
from triage.cohort import generate_cohort, load_manifest

pytestmark = pytest.mark.integration

PATIENTS = 4


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("large-cohort")
    # seed 29: no other module's cohort uses it (their study UIDs would mix on the shared broker)
    generate_cohort(out, n_patients=PATIENTS, seed=29, matrix=256, slices=48, icu_occupants=0)
    return out


@pytest.fixture(scope="module")
def settings(
    kafka_broker, triton_server, postgres_server, port_offset: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:  # fmt: skip
    run_dir = tmp_path_factory.mktemp("large-pipeline")
    triton_port = int(triton_server.http_url.rsplit(":", 1)[1])
    with pytest.MonkeyPatch.context() as patch:  # the operator's way to choose the variant
        patch.setenv("CTRIAGE_TRITON__MODEL_NAME", LARGE_MODEL)
        chosen = load_settings().triton.model_name
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        triton={"http_port": triton_port, "model_name": chosen},
        store={"url": postgres_server.create_database("large_variant_it")},
        worker={
            "app_id": "ctriage-it-large",
            "data_dir": run_dir / "worker",
            "metrics_port": 29240 + port_offset,
            "web_port": 26206 + port_offset,
        },
    )


def test_the_worker_quantifies_and_scores_every_study_with_the_large_variant(
    settings: Settings, worker, cohort: Path
) -> None:
    assert settings.triton.model_name == LARGE_MODEL
    report, collector, _ = run_pipeline(
        settings, cohort, DemoOptions(patients=PATIENTS, speed=86400.0, timeout_s=600)
    )
    collector.close()
    studies = {s.study_uid for s in load_manifest(cohort).studies}
    assert report.studies == len(studies) == PATIENTS
    # the session's broker holds earlier modules' records too: this cohort's studies only
    assert studies <= set(collector.outcome.risks), "every study gets a risk record"
    values = topic_values(settings.kafka.bootstrap_servers, t.CT_QUANTIFICATION.name)
    # other modules' bad records share the topic (test_pipeline's dead-letter cases): read ours
    ours = [
        Quantification.model_validate_json(value) for value in values if _study_of(value) in studies
    ]
    assert {r.study_uid for r in ours} == studies
    assert {r.lesion_model for r in ours} == {LARGE_MODEL}
    assert all(r.lesion_model_version == "1" and r.regional for r in ours)
    assert all(r.biomarkers["lung_volume_ml"] > 0 for r in ours)


def _study_of(value: bytes) -> str | None:
    try:
        record = json.loads(value)
    except ValueError:
        return None
    return record.get("study_uid") if isinstance(record, dict) else None
