"""The treatment-response export: one row per quantified study, burden change and treatments.

Pure: rows of the reporting store's ``risks`` (newest score per study) and ``treatments`` tables
go in as plain mappings, rows for a table come out (:func:`export_rows`), and
:func:`write_export` writes them as Parquet or CSV. Pseudonymised: the patient is the store's
keyed pseudonym, a study is its number in the patient's timeline (no DICOM UIDs, names or birth
dates). Times are kept. Descriptive only: the table lets a clinical team *compare* treated and
untreated trajectories; nothing in it, and nothing in ctriage, estimates a treatment's effect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage.fhir import TreatmentClassValues

NOT_CAUSAL = (
    "Descriptive export: treatments are not randomised and are given to sicker patients; "
    "differences between treated and untreated trajectories are not treatment effects."
)

_BASE_COLUMNS: dict[str, str] = {
    "pseudonym": "the patient's keyed pseudonym (HMAC; the store's patient_pseudonym)",
    "study_number": "1 for the patient's first quantified CT, 2 for the next, ... (by CT time)",
    "ct_time": "CT acquisition time, UTC",
    "lesion_percent": "lesion (GGO + consolidation) volume, % of lung",
    "ggo_percent": "ground-glass opacity, % of lung",
    "consolidation_percent": "consolidation, % of lung",
    "ct_severity_score": "CT severity score 0-30 (lesion_unet only; empty otherwise)",
    "bilateral": "lesions in both lungs (lesion_unet only; empty otherwise)",
    "rsna_category": "RSNA consensus category (rule-based decision support)",
    "model_version": "risk model version of the score",
    "prior_study_number": "study_number of the prior CT (empty for the first CT)",
    "interval_prior_days": "days since the prior CT",
    "lesion_from_prior_percent": "lesion % of the prior CT",
    "lesion_change_prior_points": "lesion % change since the prior CT (percentage points)",
    "lesion_change_prior_per_day": "the same per day",
    "severity_change_prior_points": "CT severity score change since the prior CT",
    "severity_change_prior_per_day": "the same per day",
    "interval_first_days": "days since the patient's first CT",
    "lesion_change_first_points": "lesion % change since the first CT (percentage points)",
    "lesion_change_first_per_day": "the same per day",
    "treatments_before": "treatment classes started before this CT, ';'-separated",
}


def _treatment_columns() -> dict[str, str]:
    columns = {}
    for klass in TreatmentClassValues:
        columns[f"treated_{klass.value}"] = f"class {klass.value} started before this CT"
        columns[f"days_since_{klass.value}"] = (
            f"days from the first {klass.value} start to this CT (empty: none before it)"
        )
    return columns


EXPORT_COLUMNS: dict[str, str] = _BASE_COLUMNS | _treatment_columns()
"""Every column of the export, in order, with its meaning (documented in docs/longitudinal.md)."""


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite: naive


def _first_doses(treatments: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, datetime]]:
    """Pseudonym -> treatment class -> first start of a treatment that reached the patient."""
    first: dict[str, dict[str, datetime]] = defaultdict(dict)
    for row in treatments:
        if not row["given"]:
            continue
        started, klass = _utc(row["started_at"]), str(row["treatment_class"])
        mine = first[str(row["patient_pseudonym"])]
        if klass not in mine or started < mine[klass]:
            mine[klass] = started
    return first


def export_rows(
    studies: Iterable[Mapping[str, Any]], treatments: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per study (the store's newest risk row of each), columns :data:`EXPORT_COLUMNS`.

    A study without a CT time (stored before the column existed) is left out.
    """
    first = _first_doses(treatments)
    by_patient: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for study in studies:
        if study.get("ct_time") is not None:
            by_patient[str(study["patient_pseudonym"])].append(study)
    rows = []
    for pseudonym in sorted(by_patient):
        ordered = sorted(by_patient[pseudonym], key=lambda s: (_utc(s["ct_time"]), s["study_uid"]))
        numbers = {s["study_uid"]: i + 1 for i, s in enumerate(ordered)}
        for study in ordered:
            rows.append(_row(pseudonym, study, numbers, first.get(pseudonym, {})))
    return rows


def _row(
    pseudonym: str,
    study: Mapping[str, Any],
    numbers: Mapping[str, int],
    first_doses: Mapping[str, datetime],
) -> dict[str, Any]:
    at = _utc(study["ct_time"])
    row: dict[str, Any] = {name: study.get(name) for name in _BASE_COLUMNS}
    row |= {
        "pseudonym": pseudonym,
        "study_number": numbers[study["study_uid"]],
        "ct_time": at,
        "prior_study_number": numbers.get(study.get("prior_study_uid") or ""),
    }
    before = []
    for klass in TreatmentClassValues:
        started = first_doses.get(klass.value)
        treated = started is not None and started < at
        row[f"treated_{klass.value}"] = treated
        row[f"days_since_{klass.value}"] = (
            (at - started).total_seconds() / 86400.0 if treated and started else None
        )
        if treated:
            before.append(klass.value)
    row["treatments_before"] = ";".join(before)
    return row


def write_export(rows: list[dict[str, Any]], out: Path) -> Path:
    """Write ``rows`` to ``out`` (``.parquet`` or ``.csv``); raises ``ValueError`` otherwise."""
    import pandas as pd

    suffix = out.suffix.lower()
    if suffix not in {".parquet", ".csv"}:
        raise ValueError(f"{out}: the export is written as .parquet or .csv, not {suffix!r}")
    frame = pd.DataFrame(rows, columns=list(EXPORT_COLUMNS))
    frame["ct_time"] = pd.to_datetime(frame["ct_time"], utc=True)
    for name in ("study_number", "prior_study_number"):
        frame[name] = frame[name].astype("Int64")
    for name in ("bilateral",):
        frame[name] = frame[name].astype("boolean")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    return out
