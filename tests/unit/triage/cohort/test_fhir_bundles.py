from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from triage.cohort import CohortManifest, generate_cohort, load_outcomes
from triage.cohort.patients import PNEUMONIA_LESION_FRACTION, sample_profile
from triage.fhir.codes import (
    CONDITION_VALUE_SETS,
    OBSERVATION_DEFINITIONS,
    CodeSystem,
    condition_key_for,
    is_icu_encounter,
    observation_key_for,
)
from triage.fhir.context import ClinicalContext
from triage.fhir.diagnoses import DiagnosisKey, diagnosis_key_for
from triage.fhir.features import clinical_features
from triage.fhir.icu import CensusChangeValues, census_changes, icu_change

pytestmark = pytest.mark.unit

OCCUPANTS = 4


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CohortManifest]:
    out = tmp_path_factory.mktemp("fhir-cohort")
    manifest = generate_cohort(
        out, n_patients=15, seed=11, matrix=32, slices=16, icu_occupants=OCCUPANTS
    )
    return out, manifest


def _bundles(out: Path, manifest: CohortManifest) -> list[dict[str, Any]]:
    return [json.loads((out / s.fhir_bundle).read_text()) for s in manifest.studies]


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, text
    return value


def test_every_bundle_validates_as_fhir_r4(cohort: tuple[Path, CohortManifest]) -> None:
    out, manifest = cohort
    census = json.loads((out / manifest.census_bundle).read_text())
    for bundle in [*_bundles(out, manifest), census]:
        Bundle.model_validate(bundle)
        for entry in bundle["entry"]:
            resource = entry["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_patient_bundles_carry_coded_conditions_and_observations(
    cohort: tuple[Path, CohortManifest],
) -> None:
    out, manifest = cohort
    kinds: set[str] = set()
    pneumonias = 0
    for study, bundle in zip(manifest.studies, _bundles(out, manifest), strict=True):
        assert bundle["type"] == "collection"
        resources = [e["resource"] for e in bundle["entry"]]
        patient = resources[0]
        assert patient["resourceType"] == "Patient" and patient["id"] == study.patient_id
        for field in ("name", "birthDate", "address", "telecom", "identifier"):
            assert patient[field], field
        assembled = _time(bundle["timestamp"])
        assert assembled == manifest.start_time + timedelta(seconds=study.fhir_offset_s)
        for r in resources[1:]:
            kinds.add(r["resourceType"])
            assert r["subject"] == {"reference": f"Patient/{study.patient_id}"}
            codings = r["code"]["coding"]
            if r["resourceType"] == "Condition":
                assert r["clinicalStatus"]["coding"][0]["code"] == "active"
                assert r["verificationStatus"]["coding"][0]["code"] == "confirmed"
                diagnoses = {diagnosis_key_for(c["system"], c["code"]) for c in codings}
                if diagnoses == {DiagnosisKey.PNEUMONIA}:
                    pneumonias += 1
                    assert {c["system"] for c in codings} == {
                        CodeSystem.SNOMED_CT,
                        CodeSystem.ICD_10,
                    }
                    assert _time(r["onsetDateTime"]) <= _time(r["recordedDate"]) < study.ct_time
                    assert r["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
                    continue
                assert diagnoses == {None}
                keys = {condition_key_for(c["system"], c["code"]) for c in codings}
                assert len(keys) == 1 and None not in keys
                assert {c["system"] for c in codings} == {CodeSystem.SNOMED_CT, CodeSystem.ICD_10}
                assert (key := keys.pop()) is not None and key in CONDITION_VALUE_SETS
            else:
                assert r["resourceType"] == "Observation" and r["status"] == "final"
                obs_keys = {observation_key_for(c["system"], c["code"]) for c in codings}
                assert len(obs_keys) == 1 and None not in obs_keys
                obs_key = obs_keys.pop()
                assert obs_key is not None
                definition = OBSERVATION_DEFINITIONS[obs_key]
                quantity = r["valueQuantity"]
                assert quantity["system"] == CodeSystem.UCUM
                assert quantity["code"] == quantity["unit"] == definition.unit
                assert definition.plausible_min <= quantity["value"] <= definition.plausible_max
                assert r["category"][0]["coding"][0]["code"] == definition.category.value
                effective = _time(r["effectiveDateTime"])
                assert effective < study.ct_time
                assert effective <= assembled  # nobody knows a result before it exists
                if "issued" in r:
                    assert effective <= _time(r["issued"]) <= assembled
    assert kinds == {"Condition", "Observation"}
    assert 0 < pneumonias <= len(manifest.studies)


def test_pneumonia_condition_follows_the_lesion_burden(tmp_path: Path) -> None:
    """Pneumonia-grade lesions (>= 1 % of lung) <=> a pneumonia Condition the features read."""
    n, seed = 40, 5
    manifest = generate_cohort(tmp_path, n_patients=n, seed=seed, matrix=32, slices=16)
    truth = {row.study_uid: row for row in load_outcomes(tmp_path)}
    flags = []
    for index, study in enumerate(manifest.studies):
        profile = sample_profile(seed, index)
        bundle = json.loads((tmp_path / study.fhir_bundle).read_text())
        ctx = ClinicalContext()
        for entry in bundle["entry"]:
            ctx = ctx.apply(entry["resource"])
        has = clinical_features(ctx, study.ct_time)["has_pneumonia"]
        assert has == (1.0 if profile.pneumonia else None)
        assert profile.pneumonia == (profile.lesion_fraction_target >= PNEUMONIA_LESION_FRACTION)
        row = truth[study.study_uid]
        if not profile.pneumonia:  # no pneumonia: (almost) no lesions on the phantom either
            assert row.lesion_volume_ml_true <= 0.02 * row.lung_volume_ml_true
        flags.append(profile.pneumonia)
    assert any(flags) and not all(flags)


def test_some_patients_have_no_labs(tmp_path: Path) -> None:
    manifest = generate_cohort(tmp_path, n_patients=40, seed=2, matrix=32, slices=16)
    lab_codes = {"1988-5", "48065-7", "731-0", "2532-0"}
    without = 0
    for study in manifest.studies:
        bundle = json.loads((tmp_path / study.fhir_bundle).read_text())
        codes = {
            c["code"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"
            for c in e["resource"]["code"]["coding"]
        }
        without += not (codes & lab_codes)
    assert 0 < without < 20


def test_census_lists_in_progress_icu_stays(cohort: tuple[Path, CohortManifest]) -> None:
    out, manifest = cohort
    census = json.loads((out / manifest.census_bundle).read_text())
    resources = [e["resource"] for e in census["entry"]]
    patients = {r["id"] for r in resources if r["resourceType"] == "Patient"}
    encounters = [r for r in resources if r["resourceType"] == "Encounter"]
    assert len(patients) == len(encounters) == OCCUPANTS
    assert patients.isdisjoint(s.patient_id for s in manifest.studies)
    assert {r["resourceType"] for r in resources} <= {"Patient", "Encounter", "Procedure"}
    for encounter in encounters:
        assert encounter["status"] == "in-progress"
        assert encounter["class"]["code"] == "IMP"
        assert is_icu_encounter(encounter)
        assert encounter["subject"]["reference"].removeprefix("Patient/") in patients
        start = _time(encounter["period"]["start"])
        assert manifest.start_time - timedelta(days=10) <= start <= manifest.start_time


def test_ventilated_occupants_have_an_invasive_ventilation_procedure(tmp_path: Path) -> None:
    """A ventilated ICU occupant: Procedure 1258985005 in progress, in the ICU encounter's unit."""
    manifest = generate_cohort(
        tmp_path, n_patients=1, seed=3, matrix=32, slices=16, icu_occupants=12
    )
    census = json.loads((tmp_path / manifest.census_bundle).read_text())
    resources = [e["resource"] for e in census["entry"]]
    encounters = {r["id"]: r for r in resources if r["resourceType"] == "Encounter"}
    procedures = [r for r in resources if r["resourceType"] == "Procedure"]
    assert 0 < len(procedures) < len(encounters)  # some occupants ventilated, not all
    for procedure in procedures:
        assert procedure["code"]["coding"][0] == {
            "system": CodeSystem.SNOMED_CT.value,
            "code": "1258985005",
            "display": "Invasive mechanical ventilation (regime/therapy)",
        }
        encounter = encounters[procedure["encounter"]["reference"].removeprefix("Encounter/")]
        assert procedure["subject"] == encounter["subject"]
        admission = icu_change(encounter)
        changes = census_changes(procedure)
        assert admission is not None and admission.admitted
        assert [c.kind for c in changes] == [CensusChangeValues.VENTILATION_START]
        start = changes[0]
        assert start.unit == admission.unit  # the same ICU
        assert admission.at <= start.at <= manifest.start_time
        assert start.at - admission.at <= timedelta(days=2)
        assert procedure["location"]["display"] == encounter["location"][0]["location"]["display"]


def test_census_is_deterministic_and_keeps_its_occupants(tmp_path: Path) -> None:
    """Same seed, same bytes; the ventilation draws do not change who is in the ICU."""
    texts = []
    for name in ("a", "b"):
        manifest = generate_cohort(
            tmp_path / name, n_patients=1, seed=9, matrix=32, slices=16, icu_occupants=5
        )
        texts.append((tmp_path / name / manifest.census_bundle).read_text())
    assert texts[0] == texts[1]
    occupants = [
        e["resource"]
        for e in json.loads(texts[0])["entry"]
        if e["resource"]["resourceType"] == "Patient"
    ]
    assert len(occupants) == 5
