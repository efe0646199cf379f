"""Synthetic patients: demographics, comorbidities, latent severity, vitals, labs and outcomes.

All numbers are SYNTHETIC. The shapes are chosen to look like a hospital cohort of adults with
viral pneumonia (older age, age-dependent comorbidity prevalences in the range of published
COVID-19 cohorts, falling SpO2 / lymphocytes and rising CRP, D-dimer, LDH with severity), not
fitted to any data. Patient ``i`` of seed ``s`` is the same whatever the cohort size, because it
draws from its own random streams ``(s, i, stream)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from triage.fhir.codes import ConditionKey, ObservationKey

C = ConditionKey
O = ObservationKey  # noqa: E741


class Stream(IntEnum):
    """Independent random streams of one patient (part of the seed sequence)."""

    CLINICAL = 1
    IDENTITY = 2
    ANATOMY = 3
    LESIONS = 4
    NOISE = 5
    TIMING = 6
    VESSELS = 7
    FILES = 8


def patient_rng(seed: int, index: int, stream: Stream) -> np.random.Generator:
    """Return the random generator of one stream of patient ``index`` of cohort ``seed``."""
    return np.random.default_rng([seed, index, int(stream)])


# Comorbidity model: logit(p) = base + age_slope * (age - 60) + sum(weight * already drawn).
# Drawn in this order so that later conditions can depend on earlier ones.
_PREVALENCE: tuple[tuple[ConditionKey, float, float, dict[ConditionKey, float]], ...] = (
    (C.OBESITY, -1.2, -0.005, {}),
    (C.SMOKING, -1.6, -0.02, {}),
    (C.DIABETES, -1.5, 0.035, {C.OBESITY: 0.8}),
    (C.HYPERTENSION, -0.6, 0.06, {C.OBESITY: 0.6, C.DIABETES: 0.7}),
    (C.CARDIOVASCULAR, -2.4, 0.06, {C.HYPERTENSION: 0.6, C.DIABETES: 0.4, C.SMOKING: 0.5}),
    (C.COPD, -3.4, 0.05, {C.SMOKING: 1.6}),
    (C.CKD, -3.0, 0.06, {C.DIABETES: 0.8, C.HYPERTENSION: 0.6}),
    (C.ASTHMA, -2.6, -0.005, {}),
    (C.IMMUNOSUPPRESSION, -3.2, 0.0, {}),
    (C.CANCER, -3.0, 0.04, {C.SMOKING: 0.4}),
)

# Contribution of each comorbidity to the latent severity (logit scale).
_SEVERITY_WEIGHT: dict[ConditionKey, float] = {
    C.DIABETES: 0.45,
    C.HYPERTENSION: 0.2,
    C.CARDIOVASCULAR: 0.35,
    C.COPD: 0.45,
    C.ASTHMA: 0.1,
    C.CKD: 0.5,
    C.OBESITY: 0.45,
    C.IMMUNOSUPPRESSION: 0.55,
    C.CANCER: 0.35,
    C.SMOKING: 0.15,
}

# Probability that a result is missing (on top of the whole-panel "no labs yet" case).
_MISSING: dict[ObservationKey, float] = {
    O.SPO2: 0.02,
    O.RESPIRATORY_RATE: 0.04,
    O.HEART_RATE: 0.02,
    O.TEMPERATURE: 0.06,
    O.CRP: 0.08,
    O.D_DIMER: 0.25,
    O.LYMPHOCYTES: 0.08,
    O.LDH: 0.18,
}
_P_NO_LABS = 0.12
PNEUMONIA_LESION_FRACTION = 0.01
"""Lesion burden (fraction of lung) from which the simulated illness is a pneumonia (CT-visible)."""
_P_REPEAT_VITALS = 0.5
_LABS = (O.CRP, O.D_DIMER, O.LYMPHOCYTES, O.LDH)
_VITALS = (O.SPO2, O.RESPIRATORY_RATE, O.HEART_RATE, O.TEMPERATURE)


@dataclass(frozen=True)
class Measurement:
    """One vital sign or lab result, taken ``hours_before_ct`` before the CT."""

    key: ObservationKey
    value: float
    hours_before_ct: float


@dataclass(frozen=True)
class Outcome:
    """Simulated outcome of one patient (SYNTHETIC)."""

    ventilation_14d: bool
    icu_admission: bool
    icu_los_days: float | None


@dataclass(frozen=True)
class ClinicalProfile:
    """Everything clinical about one synthetic patient."""

    index: int
    age_years: int
    sex: str  # FHIR administrative gender: "male" | "female"
    conditions: tuple[ConditionKey, ...]
    severity: float  # latent, 0..1
    measurements: tuple[Measurement, ...]
    outcome: Outcome
    lesion_fraction_target: float  # fraction of lung volume the phantom aims to fill

    @property
    def pneumonia(self) -> bool:
        """Whether the illness is pneumonia-grade: CT lesions of at least 1 % of the lung.

        Derived from the lesion burden the phantom draws (no random draw of its own), so the
        diagnosis in the FHIR record and the lesions on the CT agree.
        """
        return self.lesion_fraction_target >= PNEUMONIA_LESION_FRACTION


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def sample_profile(seed: int, index: int) -> ClinicalProfile:
    """Draw the clinical profile of patient ``index`` of cohort ``seed``."""
    rng = patient_rng(seed, index, Stream.CLINICAL)
    age = int(25 + 70 * rng.beta(2.6, 2.0))
    sex = "male" if rng.random() < 0.58 else "female"
    have: set[ConditionKey] = set()
    for key, base, age_slope, weights in _PREVALENCE:
        logit = base + age_slope * (age - 60) + sum(w for k, w in weights.items() if k in have)
        if rng.random() < _sigmoid(logit):
            have.add(key)
    z = (
        -1.4
        + 0.045 * (age - 60)
        + (0.3 if sex == "male" else 0.0)
        + sum(_SEVERITY_WEIGHT[k] for k in have)
        + rng.normal(0.0, 1.0)
    )
    severity = _sigmoid(z)
    measurements = _measurements(rng, severity, age, have)
    outcome = _outcome(rng, severity)
    lesion_target = 0.0
    if severity > 0.05:
        lesion_target = float(np.clip(0.6 * severity**1.5 * np.exp(rng.normal(0, 0.3)), 0, 0.7))
    return ClinicalProfile(
        index=index,
        age_years=age,
        sex=sex,
        conditions=tuple(k for k in ConditionKey if k in have),
        severity=severity,
        measurements=measurements,
        outcome=outcome,
        lesion_fraction_target=lesion_target,
    )


def _true_values(
    rng: np.random.Generator, sev: float, age: int, have: set[ConditionKey]
) -> dict[ObservationKey, float]:
    copd = 1.0 if C.COPD in have else 0.0
    return {
        O.SPO2: float(np.clip(97.5 - 15.0 * sev**1.5 - 2.0 * copd + rng.normal(0, 1.3), 62, 100)),
        O.RESPIRATORY_RATE: float(np.clip(15 + 16 * sev + rng.normal(0, 2.5), 9, 48)),
        O.HEART_RATE: float(np.clip(78 + 28 * sev + rng.normal(0, 10), 45, 170)),
        O.TEMPERATURE: float(np.clip(37.1 + 1.0 * sev + rng.normal(0, 0.5), 35.5, 41.0)),
        O.CRP: float(np.clip(np.exp(np.log(8) + 3.0 * sev + rng.normal(0, 0.6)), 0.3, 450)),
        O.D_DIMER: float(
            np.clip(
                np.exp(np.log(380) + 2.0 * sev + 0.012 * (age - 60) + rng.normal(0, 0.5)),
                100,
                20000,
            )
        ),
        O.LYMPHOCYTES: float(
            np.clip(np.exp(np.log(1.7) - 1.2 * sev + rng.normal(0, 0.3)), 0.1, 6.0)
        ),
        O.LDH: float(np.clip(175 + 360 * sev + rng.normal(0, 45), 100, 2000)),
    }


_DECIMALS: dict[ObservationKey, int] = {
    O.SPO2: 0,
    O.RESPIRATORY_RATE: 0,
    O.HEART_RATE: 0,
    O.TEMPERATURE: 1,
    O.CRP: 1,
    O.D_DIMER: 0,
    O.LYMPHOCYTES: 2,
    O.LDH: 0,
}


def _measurements(
    rng: np.random.Generator, sev: float, age: int, have: set[ConditionKey]
) -> tuple[Measurement, ...]:
    values = _true_values(rng, sev, age, have)
    out: list[Measurement] = []
    first_vitals_h = float(rng.uniform(2.0, 8.0))
    repeat = rng.random() < _P_REPEAT_VITALS
    repeat_h = float(rng.uniform(0.3, 1.5))
    for key in _VITALS:
        if rng.random() < _MISSING[key]:
            continue
        # The first set is a little better than at the CT (the patient deteriorates).
        early = values[key] + {O.SPO2: 1.0, O.RESPIRATORY_RATE: -1.5, O.HEART_RATE: -4.0}.get(
            key, 0.0
        )
        out.append(Measurement(key, _round(key, early), first_vitals_h))
        if repeat:
            noisy = values[key] * float(rng.normal(1.0, 0.01))
            out.append(Measurement(key, _round(key, noisy), repeat_h))
    if rng.random() >= _P_NO_LABS:
        labs_h = float(rng.uniform(0.5, 6.0))
        for key in _LABS:
            if rng.random() >= _MISSING[key]:
                out.append(Measurement(key, _round(key, values[key]), labs_h))
    return tuple(out)


def _round(key: ObservationKey, value: float) -> float:
    value = round(value, _DECIMALS[key])
    if key is O.SPO2:
        value = min(value, 100.0)
    return float(value)


def _outcome(rng: np.random.Generator, sev: float) -> Outcome:
    draws = rng.random(3)
    ventilated = bool(draws[0] < _sigmoid(-5.6 + 8.0 * sev))
    # ICU admission is a superset of ventilation, minus a few ventilated on a ward (3 %).
    icu = (ventilated and draws[1] < 0.97) or bool(draws[2] < _sigmoid(-4.6 + 5.5 * sev))
    los: float | None = None
    if icu:
        mu = np.log(3.5) + 0.7 * ventilated + 0.5 * sev
        los = float(np.clip(round(float(np.exp(rng.normal(mu, 0.55))), 1), 0.5, 60.0))
    return Outcome(ventilation_14d=ventilated, icu_admission=bool(icu), icu_los_days=los)
