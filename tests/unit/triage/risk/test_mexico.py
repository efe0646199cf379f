"""Mexico case-file loader: coding decisions on a hand-written file, and the real snapshot."""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import pytest

from triage.exceptions import TrainingDataError, TrainingDataReason
from triage.risk.mexico import (
    CASE_FILE,
    FLAG_COLUMNS,
    cohort_description,
    file_sha256,
    load_cohort,
)

pytestmark = pytest.mark.unit

COLUMNS = [
    "FECHA_ACTUALIZACION",
    "ID_REGISTRO",
    "SEXO",
    "TIPO_PACIENTE",
    "FECHA_INGRESO",
    "FECHA_DEF",
    "INTUBADO",
    "NEUMONIA",
    "EDAD",
    "RESULTADO",
    "UCI",
    "OTRA_COM",
    *[c for c in FLAG_COLUMNS.values() if c != "NEUMONIA"],
]
CATALOGUES = {
    "resultado": [(1, "Positivo SARS-CoV-2"), (2, "No positivo SARS-CoV-2"), (3, "Pendiente")],
    "si_no": [(1, "SI"), (2, "NO"), (97, "NO APLICA"), (98, "SE IGNORA"), (99, "NO ESPECIFICADO")],
    "sexo": [(1, "MUJER"), (2, "HOMBRE"), (99, "NO ESPECIFICADO")],
    "tipo_paciente": [(1, "AMBULATORIO"), (2, "HOSPITALIZADO"), (99, "NO ESPECIFICADO")],
}


def person(rid: str, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(COLUMNS, 2)
    row.update(
        FECHA_ACTUALIZACION="2020-05-27",
        ID_REGISTRO=rid,
        SEXO=2,
        TIPO_PACIENTE=2,
        FECHA_INGRESO="2020-04-10",
        FECHA_DEF="9999-99-99",
        INTUBADO=2,
        UCI=2,
        EDAD=60,
        RESULTADO=1,
    )
    row.update(overrides)
    return row


def write_case_file(folder: Path, rows: list[dict[str, object]], catalogues=CATALOGUES) -> Path:
    (folder / "catalogos").mkdir(parents=True)
    for name, codes in catalogues.items():
        with (folder / "catalogos" / f"{name}.csv").open("w", encoding="latin-1") as handle:
            handle.write("CLAVE,DESCRIPCION\n")
            handle.writelines(f"{code},{text}\n" for code, text in codes)
    with gzip.open(folder / CASE_FILE, "wt", encoding="latin-1", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, quoting=csv.QUOTE_NONNUMERIC)
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.fixture
def small(tmp_path: Path) -> Path:
    rows = [
        person("a", INTUBADO=1, UCI=1, NEUMONIA=1, DIABETES=1, FECHA_DEF="2020-04-20"),
        person("b", TIPO_PACIENTE=1, INTUBADO=97, UCI=97, SEXO=1, EDAD=30),  # outpatient
        person("c", INTUBADO=99, UCI=98, DIABETES=98, OBESIDAD=97),  # unknowns
        person("d", FECHA_DEF="2020-05-20"),  # died 40 days after admission: not within 21
        person("e", FECHA_DEF="2020-04-01"),  # death before admission: data error
        person("f", FECHA_INGRESO="2020-05-20"),  # too recent for 21 days of follow-up
        person("g", RESULTADO=2),  # not positive
        person("h", RESULTADO=3),  # pending
        person("i", EDAD=130, SEXO=99, TABAQUISMO=1),
    ]
    return write_case_file(tmp_path / "mx", rows)


def test_coding_decisions(small: Path) -> None:
    cohort = load_cohort(small)
    assert cohort.counts["rows"] == 9 and cohort.counts["positive"] == 7
    assert cohort.counts["excluded_admitted_within_follow_up"] == 1
    assert cohort.counts["excluded_death_before_admission"] == 1
    assert len(cohort) == 5
    f, o = cohort.features, cohort.outcomes
    # a: intubated, ICU, died 10 days after admission; flags and pneumonia read
    assert list(o.iloc[0]) == [1.0, 1.0, 1.0]
    assert f.loc[0, "has_diabetes"] == 1.0 and f.loc[0, "has_pneumonia"] == 1.0
    assert f.loc[0, "sex_male"] == 1.0 and f.loc[0, "age_years"] == 60
    # b: outpatient, 97 (not applicable) -> not intubated, not in ICU
    assert list(o.iloc[1]) == [0.0, 0.0, 0.0]
    assert f.loc[1, "sex_male"] == 0.0
    # c: hospitalised with 99 / 98 -> unknown outcome; 98 / 97 flags -> NaN
    assert math.isnan(o.loc[2, "intubation"]) and math.isnan(o.loc[2, "icu"])
    assert o.loc[2, "death"] == 0.0
    assert math.isnan(f.loc[2, "has_diabetes"]) and math.isnan(f.loc[2, "has_obesity"])
    # d: death outside the follow-up window counts as no death
    assert o.loc[3, "death"] == 0.0
    # i: implausible age and unknown sex -> NaN
    assert math.isnan(f.loc[4, "age_years"]) and math.isnan(f.loc[4, "sex_male"])
    assert f.loc[4, "has_smoking"] == 1.0
    assert "has_cancer" not in f.columns  # the file has no cancer flag
    assert cohort.sha256 == file_sha256(small / CASE_FILE)
    card = cohort_description(cohort)
    assert card["synthetic"] is False and card["sha256"] == cohort.sha256
    assert card["counts"]["positive_intubation"] == 1


def test_catalogue_that_codes_differently_is_refused(tmp_path: Path) -> None:
    flipped = {**CATALOGUES, "resultado": [(1, "No positivo SARS-CoV-2"), (2, "Positivo")]}
    folder = write_case_file(tmp_path / "mx", [person("a")], flipped)
    with pytest.raises(TrainingDataError) as info:
        load_cohort(folder)
    assert info.value.reason is TrainingDataReason.INVALID_MANIFEST
    assert "resultado" in str(info.value.detail)


def test_missing_case_file(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError) as info:
        load_cohort(tmp_path)
    assert info.value.reason is TrainingDataReason.MISSING_FILE


def test_real_snapshot(shared_data: Path) -> None:
    """The REAL file: the counts its data README states, and our cohort on top of them."""
    cohort = load_cohort(shared_data / "clinical" / "mexico-ssa-2020-05-27")
    assert cohort.counts["rows"] == 244_858
    assert cohort.counts["positive"] == 78_023
    assert len(cohort) == cohort.counts["cohort"] > 30_000
    assert str(cohort.admitted.max().date()) == "2020-05-06"  # 21 days before the snapshot
    rates = cohort.outcomes.mean()
    assert 0.03 < rates["intubation"] < 0.07 and 0.03 < rates["icu"] < 0.07
    assert 0.10 < rates["death"] < 0.20
    # intubation only among the hospitalised
    assert cohort.outcomes["intubation"][~cohort.hospitalised].sum() == 0
