"""FHIR R4 clinical record -> model features (codes with systems, UCUM units, never free text).

:class:`ClinicalContext` is the per-patient state the stream keeps in a table: it folds FHIR
resources one at a time (:meth:`ClinicalContext.apply`, pure) and serialises to JSON.
:func:`clinical_features` reads it at the CT time; :func:`feature_vector` puts imaging biomarkers
and clinical features in the model's order. A missing value stays ``None``: nothing is imputed
(XGBoost learns a direction for missing values).

Value sets, UCUM conversions and plausible ranges are data (``triage/valuesets/``, loaded by
:mod:`triage.codes`). Observations whose ``in_model`` is false there (blood pressure, BMI,
supplemental oxygen, ferritin, creatinine, ...) are extracted into :data:`CONTEXT_FEATURES` but
are not part of the model vector :data:`FEATURES` until a model is trained on data that has them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from triage.fhir.codes import (
    OBSERVATION_DEFINITIONS,
    ConditionKey,
    ObservationCategory,
    ObservationKey,
)
from triage.fhir.context import ClinicalContext
from triage.fhir.diagnoses import DiagnosisKey

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)

IMAGING_FEATURES: tuple[str, ...] = (
    "lung_volume_ml",
    "lesion_volume_ml",
    "lesion_percent",
    "ggo_percent",
    "consolidation_percent",
    "well_aerated_percent",
)
# Feature name of each observation the model scores: key + canonical UCUM unit as a suffix.
OBSERVATION_FEATURES: dict[ObservationKey, str] = {
    key: d.feature for key, d in OBSERVATION_DEFINITIONS.items() if d.in_model
}
# Observations kept in the context and shown, not (yet) scored.
CONTEXT_OBSERVATION_FEATURES: dict[ObservationKey, str] = {
    key: d.feature for key, d in OBSERVATION_DEFINITIONS.items() if not d.in_model
}
CONDITION_FEATURES: dict[ConditionKey, str] = {key: f"has_{key.value}" for key in ConditionKey}
DEMOGRAPHIC_FEATURES: tuple[str, ...] = ("age_years", "sex_male")
# Diagnoses of the current illness the risk model was trained with (the Mexico case file's
# NEUMONIA flag), read from Conditions coded in triage/valuesets/diagnoses.json. Unlike a
# comorbidity, no such Condition in the record is not a "no": the diagnosis comes with the CT,
# often after it. So 1 when one is present at the CT time, else missing (never 0).
DIAGNOSIS_CONDITION_FEATURES: dict[DiagnosisKey, str] = {
    key: f"has_{key.value}" for key in DiagnosisKey
}
DIAGNOSIS_FEATURES: tuple[str, ...] = tuple(DIAGNOSIS_CONDITION_FEATURES.values())
CLINICAL_FEATURES: tuple[str, ...] = (
    *DEMOGRAPHIC_FEATURES,
    *CONDITION_FEATURES.values(),
    *DIAGNOSIS_FEATURES,
    *OBSERVATION_FEATURES.values(),
)
FEATURES: tuple[str, ...] = (*IMAGING_FEATURES, *CLINICAL_FEATURES)
"""The model vector, in the order of the risk model's card."""
CONTEXT_FEATURES: tuple[str, ...] = (*CLINICAL_FEATURES, *CONTEXT_OBSERVATION_FEATURES.values())
"""Every clinical feature extracted (the model's and the context-only ones)."""

FEATURE_UNITS: dict[str, str] = {
    "lung_volume_ml": "mL",
    "lesion_volume_ml": "mL",
    **{name: "%" for name in IMAGING_FEATURES if name.endswith("_percent")},
    "age_years": "a",
    "sex_male": "1 (0 = female, 1 = male)",
    **{name: "1 (0 = absent, 1 = present)" for name in CONDITION_FEATURES.values()},
    **{name: "1 (0 = absent, 1 = present)" for name in DIAGNOSIS_FEATURES},
    **{d.feature: d.unit for d in OBSERVATION_DEFINITIONS.values()},
}

# Accepted UCUM units per observation -> (scale, offset) to the canonical unit (from the data).
UNIT_CONVERSIONS: dict[ObservationKey, dict[str, tuple[float, float]]] = {
    key: dict(d.conversions) for key, d in OBSERVATION_DEFINITIONS.items()
}

_SEX = {"male": 1.0, "female": 0.0}


class CompletenessValues(StrEnum):
    """How complete a patient's features are when scored (closed list)."""

    COMPLETE = "complete"
    NO_IMAGING = "no imaging"
    NO_CLINICAL_RECORD = "no clinical record"
    NO_VITALS_OR_LABS = "no vitals or labs yet"
    NO_LABS = "no labs yet"
    NO_VITALS = "no vitals yet"
    PARTIAL = "partial"


def clinical_features(
    ctx: ClinicalContext, at: datetime, window_h: float = 72
) -> dict[str, float | None]:
    """Return every clinical feature (:data:`CONTEXT_FEATURES`) at time ``at`` (tz-aware).

    Age from the birth year (the only part of the birth date that passes ingress), sex as 0/1,
    comorbidity flags as of ``at`` (onset, abatement and statuses honoured; 0 when the record
    has no such condition, ``None`` when there is no record at all), diagnosis flags
    (``has_pneumonia``) honoured the same way but 1 or ``None`` (a diagnosis not yet made is
    unknown, not absent), and for each observation
    the value nearest before ``at`` (at or before it, no earlier than ``window_h`` hours).
    """
    if at.tzinfo is None:
        raise ValueError("clinical_features needs a timezone-aware time")
    out: dict[str, float | None] = dict.fromkeys(CONTEXT_FEATURES)
    out["age_years"] = float(at.year - ctx.birth_year) if ctx.birth_year is not None else None
    out["sex_male"] = _SEX.get(ctx.sex or "")
    end = at.astimezone(UTC)
    at_iso = end.isoformat(timespec="microseconds")
    if ctx.resources_seen > 0:
        active = ctx.conditions_at(at_iso)
        for condition, name in CONDITION_FEATURES.items():
            out[name] = 1.0 if active.get(condition.value, False) else 0.0
        for diagnosis, name in DIAGNOSIS_CONDITION_FEATURES.items():
            out[name] = 1.0 if active.get(diagnosis.value, False) else None
    start = end - timedelta(hours=window_h)
    for key, definition in OBSERVATION_DEFINITIONS.items():
        for when, value in reversed(ctx.observations.get(key.value, [])):
            moment = datetime.fromisoformat(when)
            if moment <= end:
                out[definition.feature] = value if moment >= start else None
                break
    return out


def feature_vector(
    biomarkers: Mapping[str, float] | None, clinical: Mapping[str, float | None]
) -> dict[str, float | None]:
    """Return every model feature in :data:`FEATURES` order (``None`` where unknown)."""
    merged: dict[str, float | None] = {**(biomarkers or {}), **clinical}
    return {name: _optional_float(merged.get(name)) for name in FEATURES}


def completeness(features: Mapping[str, float | None]) -> CompletenessValues:
    """Summarise which groups of features are present (for clinicians and dashboards)."""
    if any(features.get(name) is None for name in IMAGING_FEATURES):
        return CompletenessValues.NO_IMAGING
    if all(features.get(name) is None for name in CLINICAL_FEATURES):
        return CompletenessValues.NO_CLINICAL_RECORD
    vitals = _group_present(features, ObservationCategory.VITAL_SIGNS)
    labs = _group_present(features, ObservationCategory.LABORATORY)
    if not vitals and not labs:
        return CompletenessValues.NO_VITALS_OR_LABS
    if not labs:
        return CompletenessValues.NO_LABS
    if not vitals:
        return CompletenessValues.NO_VITALS
    # Diagnoses (has_pneumonia) do not count: they come with the CT, often after it, so a
    # record without one yet is as complete as the EHR can be at scoring time.
    if any(features.get(name) is None for name in FEATURES if name not in DIAGNOSIS_FEATURES):
        return CompletenessValues.PARTIAL
    return CompletenessValues.COMPLETE


def _group_present(features: Mapping[str, float | None], category: ObservationCategory) -> bool:
    return any(
        features.get(name) is not None
        for key, name in OBSERVATION_FEATURES.items()
        if OBSERVATION_DEFINITIONS[key].category is category
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
