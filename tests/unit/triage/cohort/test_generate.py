from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streams.cli.cohort import app
from triage.cohort import (
    CohortError,
    CohortErrorReason,
    CohortManifest,
    generate_cohort,
    load_manifest,
    load_outcomes,
)
from triage.cohort.manifest import OUTCOME_COLUMNS

pytestmark = pytest.mark.unit

SEED = 5
N_PATIENTS = 12
MATRIX, SLICES = 48, 24
CONTRACT_STUDY_KEYS = {
    "patient_id",
    "study_uid",
    "series_uid",
    "study_dir",
    "fhir_bundle",
    "ct_time",
    "offset_s",
    "fhir_offset_s",
}


def _generate(out: Path, seed: int = SEED, n: int = N_PATIENTS) -> CohortManifest:
    return generate_cohort(out, n_patients=n, seed=seed, matrix=MATRIX, slices=SLICES)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CohortManifest]:
    out = tmp_path_factory.mktemp("cohort")
    return out, _generate(out)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_files(
    cohort: tuple[Path, CohortManifest], tmp_path: Path
) -> None:
    out, manifest = cohort
    again = _generate(tmp_path / "again")
    assert again == manifest
    assert _files(tmp_path / "again") == _files(out)


def test_other_seed_gives_other_patients(
    cohort: tuple[Path, CohortManifest], tmp_path: Path
) -> None:
    _, manifest = cohort
    other = _generate(tmp_path / "other", seed=SEED + 1)
    assert {s.patient_id for s in other.studies}.isdisjoint(s.patient_id for s in manifest.studies)
    assert {s.study_uid for s in other.studies}.isdisjoint(s.study_uid for s in manifest.studies)


def test_manifest_follows_the_contract(cohort: tuple[Path, CohortManifest]) -> None:
    out, manifest = cohort
    raw = json.loads((out / "manifest.json").read_text())
    assert set(raw) == {"seed", "n_patients", "hospital", "start_time", "census_bundle", "studies"}
    assert raw["seed"] == SEED and raw["n_patients"] == N_PATIENTS == len(raw["studies"])
    assert all(set(s) == CONTRACT_STUDY_KEYS for s in raw["studies"])
    assert load_manifest(out) == manifest
    offsets = [s.offset_s for s in manifest.studies]
    assert offsets == sorted(offsets) and offsets[0] >= 0
    assert len({s.patient_id for s in manifest.studies}) == N_PATIENTS
    for study in manifest.studies:
        assert study.ct_time == manifest.start_time + timedelta(seconds=study.offset_s)
        assert study.fhir_offset_s >= 0
        assert (out / study.fhir_bundle).is_file()
        assert len(list((out / study.study_dir).glob("*.dcm"))) == SLICES
    assert (out / manifest.census_bundle).is_file()
    # Most bundles arrive before their CT, some after (late clinical data).
    late = sum(s.fhir_offset_s > s.offset_s for s in manifest.studies)
    assert 0 < late < N_PATIENTS


def test_outcomes_follow_the_contract(cohort: tuple[Path, CohortManifest]) -> None:
    out, manifest = cohort
    with (out / "outcomes.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == OUTCOME_COLUMNS
        raw = list(reader)
    rows = load_outcomes(out)
    assert [r.study_uid for r in rows] == [s.study_uid for s in manifest.studies]
    for text, row in zip(raw, rows, strict=True):
        assert 0.0 <= row.severity <= 1.0
        assert (text["icu_los_days"] == "") == (not row.icu_admission)
        assert row.icu_los_days is None or row.icu_los_days > 0
        assert 2000 < row.lung_volume_ml_true < 7000
        assert 0 <= row.lesion_volume_ml_true < row.lung_volume_ml_true


def test_refuses_bad_parameters_and_non_empty_output(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(CohortError) as busy:
        _generate(tmp_path / "busy", n=1)
    assert busy.value.reason is CohortErrorReason.OUTPUT_NOT_EMPTY
    with pytest.raises(CohortError) as bad:
        generate_cohort(tmp_path / "bad", n_patients=0, seed=1, matrix=8, slices=2)
    assert bad.value.reason is CohortErrorReason.INVALID_PARAMETER
    assert "n_patients" in bad.value.detail and "matrix" in bad.value.detail


def test_load_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(CohortError) as missing:
        load_manifest(tmp_path)
    assert missing.value.reason is CohortErrorReason.MISSING_FILE
    (tmp_path / "manifest.json").write_text(json.dumps({"seed": 1, "studies": []}))
    with pytest.raises(CohortError) as invalid:
        load_manifest(tmp_path)
    assert invalid.value.reason is CohortErrorReason.INVALID_MANIFEST
    with pytest.raises(CohortError) as no_outcomes:
        load_outcomes(tmp_path)
    assert no_outcomes.value.reason is CohortErrorReason.MISSING_FILE


def _iter_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _iter_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _iter_strings(v)]
    return [node] if isinstance(node, str) else []


def test_raw_id_appears_only_in_patient_id_and_references(
    cohort: tuple[Path, CohortManifest],
) -> None:
    out, manifest = cohort
    for study in manifest.studies:
        bundle = json.loads((out / study.fhir_bundle).read_text())
        for entry in bundle["entry"]:
            resource = entry["resource"]
            hits = [s for s in _iter_strings(resource) if study.patient_id in s]
            if resource["resourceType"] == "Patient":
                assert hits == [study.patient_id]
            else:
                assert hits == [f"Patient/{study.patient_id}"]


def test_cli_generates_a_cohort(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["generate", str(out), "--patients", "2", "--seed", "3", "--matrix", "32"]
    result = CliRunner().invoke(app, [*args, "--slices", "16", "--icu-occupants", "2"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    assert len(load_manifest(out).studies) == 2
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert "output_not_empty" in again.output


def test_start_time_must_be_aware(tmp_path: Path) -> None:
    with pytest.raises(CohortError) as naive:
        generate_cohort(tmp_path, 1, 1, 32, 16, start_time=datetime(2020, 1, 1))
    assert naive.value.reason is CohortErrorReason.INVALID_PARAMETER
