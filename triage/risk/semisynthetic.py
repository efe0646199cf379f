"""SEMI-SYNTHETIC imaging biomarkers for real patients, conditioned on their real outcomes.

No public data set links chest CT biomarkers to outcomes, so the fused (imaging + clinical)
risk models are trained on the real Mexico clinical records plus CT biomarkers *drawn* for each
patient from a documented scheme. Metrics of a fused model measure how well XGBoost recovers
this scheme next to the real clinical signal: they are SEMI-SYNTHETIC, never clinical evidence.

The scheme (:data:`SCHEME` is written verbatim into the model card), per patient, seeded:

1. latent burden ``eta = B0 + B_PNEUMONIA * pneumonia + B_SEVERE * (icu or death)
   + B_INTUBATION * intubation + SD * N(0, 1)``; ``lesion_percent = 100 * sigmoid(eta)``
   (median about 3 % without pneumonia, which the threshold quantifier also reports for normal
   lungs from hilar vessels; about 16 % with pneumonia; about 28 % when intubated);
2. ``well_aerated_percent = (100 - lesion_percent) * (1 - o)``, ``o = sigmoid(logit(0.05)
   + 0.6 * N(0, 1))``: the non-lesion lung minus hyper-inflated and dense non-lesion voxels;
3. consolidation share of the lesion ``c = sigmoid(-1.4 + 0.5 * (icu or death or intubation)
   + 1.0 * N(0, 1))`` (wide on purpose: real shares vary from a few % to most of the lesion);
   ``consolidation_percent = c * lesion_percent``, ``ggo_percent`` the rest;
4. ``lung_volume_ml = N(4700 male / 3700 female / 4200 unknown, 650) * (1 - 0.3 *
   lesion_percent / 100)`` clipped to 1500..8000 mL; ``lesion_volume_ml`` from the percentage.

``B_SEVERE`` and ``B_INTUBATION`` were tuned so that, among patients with pneumonia (the
population of both studies), the crude odds ratios land on the literature's effect sizes:

- well-aerated lung below 72 % vs ICU admission or death: target OR about 4.5 (Colombi et al.,
  Radiology 2020: well-aerated lung below about 71-73 %, OR about 4-5 for ICU or death);
- lesion (compromised lung) above 23 % vs intubation: target OR about 5 (Lanza et al., Eur
  Radiol 2020: compromised lung above about 23 % signals intubation; the OR of 5 is our
  assumption of the same order as Colombi's, not a value quoted from Lanza).

:func:`achieved_odds_ratios` measures what a draw actually gave; the card stores it.

**The pipeline's own measurement error.** The fused model is fed what the lesion model
*measures*, not the drawn truth: :func:`measured_by_lesion_model` passes each draw through the
error the learned lesion model showed on real CT (``inference/model_repository/lesion_unet_onnx/
evaluation.json``: pooled infection sensitivity 0.52 on the 50 held-out MedSeg slices, so about
half the lesion is missed; consolidation sensitivity 0.05, so consolidation reads as almost
nothing; 0.47 % lesion on the normal CT, a false-positive floor). Per patient: sensitivity
``~ Beta`` with that mean and SD 0.15 (the slice-to-slice spread is not published: assumption),
false-positive burden ``0.47 % * exp(0.5 N(0, 1))`` of the non-lesion lung (one normal CT:
assumption). So the fused model does not learn from cleaner imaging than the pipeline produces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from triage.fhir.features import IMAGING_FEATURES

B0 = float(np.log(0.03 / 0.97))
B_PNEUMONIA = 1.5
B_SEVERE = 0.7
B_INTUBATION = 0.5
SD = 0.9
WELL_AERATED_CUTOFF = 72.0
LESION_CUTOFF = 23.0
TARGET_OR_WELL_AERATED = 4.5
TARGET_OR_LESION = 5.0
#: measured by the learned lesion model (lesion_unet_onnx/evaluation.json; see the docstring)
LESION_SENSITIVITY = 0.5197
CONSOLIDATION_SENSITIVITY = 0.0515
FALSE_POSITIVE_PERCENT = 0.472
SENSITIVITY_SD = 0.15
FALSE_POSITIVE_LOG_SD = 0.5
LABEL = (
    "SEMI-SYNTHETIC: real clinical records and outcomes (Mexico), CT biomarkers drawn from "
    "outcome-conditioned distributions (triage.semisynthetic); not clinical evidence"
)
SCHEME: dict[str, Any] = {
    "label": LABEL,
    "latent": "eta = b0 + b_pneumonia*pneumonia + b_severe*(icu or death) "
    "+ b_intubation*intubation + sd*N(0,1); lesion_percent = 100*sigmoid(eta)",
    "b0": round(B0, 4),
    "b_pneumonia": B_PNEUMONIA,
    "b_severe": B_SEVERE,
    "b_intubation": B_INTUBATION,
    "sd": SD,
    "well_aerated_percent": "(100 - lesion_percent) * (1 - o), o = sigmoid(logit(0.05) "
    "+ 0.6*N(0,1))",
    "consolidation_percent": "c * lesion_percent, c = sigmoid(-1.4 + 0.5*(icu or death or "
    "intubation) + 1.0*N(0,1)); ggo_percent = lesion_percent - consolidation_percent",
    "lung_volume_ml": "N(4700 male / 3700 female / 4200 unknown, 650) * (1 - 0.3*lesion/100), "
    "clipped to 1500..8000",
    "lesion_volume_ml": "lung_volume_ml * lesion_percent / 100",
    "missing pneumonia flag": "treated as 0 for the draw",
    "measurement_error": {
        "source": "inference/model_repository/lesion_unet_onnx/evaluation.json (medseg_heldout "
        "pooled sensitivity; covid_ct_md normal001 lesion_percent)",
        "lesion_sensitivity": "Beta per patient, mean 0.5197, sd 0.15 (sd: assumption)",
        "consolidation_sensitivity": 0.0515,
        "false_positive_percent": "0.472 * exp(0.5*N(0,1)) of the non-lesion lung "
        "(spread: assumption)",
        "applied": "the fused model trains and is tested on the measured biomarkers",
    },
    "targets": {
        "well_aerated_below_72_vs_icu_or_death": {
            "odds_ratio": TARGET_OR_WELL_AERATED,
            "source": "Colombi D, et al. Well-aerated lung on admitting chest CT to predict "
            "adverse outcome in COVID-19 pneumonia. Radiology 2020;296:E86-E96 "
            "(cut-off about 71-73 %, OR about 4-5)",
        },
        "lesion_above_23_vs_intubation": {
            "odds_ratio": TARGET_OR_LESION,
            "source": "Lanza E, et al. Quantitative chest CT analysis in COVID-19 to predict the "
            "need for oxygenation support and intubation. Eur Radiol 2020;30:6770-6778 "
            "(cut-off 23 %); the OR is our assumption",
        },
        "population": "patients with pneumonia (NEUMONIA = 1), crude odds ratios",
    },
}


def draw_biomarkers(
    pneumonia: np.ndarray,
    intubation: np.ndarray,
    icu: np.ndarray,
    death: np.ndarray,
    sex_male: np.ndarray,
    seed: int,
) -> pd.DataFrame:
    """Draw the six imaging biomarkers (``IMAGING_FEATURES`` columns) for each patient.

    Inputs are 0/1 arrays; NaN (unknown) counts as 0. The same seed gives the same draw.
    """
    rng = np.random.default_rng(seed)
    n = len(pneumonia)
    p, intub = _zero_nan(pneumonia), _zero_nan(intubation)
    severe = np.maximum(_zero_nan(icu), _zero_nan(death))
    eta = B0 + B_PNEUMONIA * p + B_SEVERE * severe + B_INTUBATION * intub + SD * rng.normal(size=n)
    lesion = 100.0 * _sigmoid(eta)
    other = _sigmoid(np.log(0.05 / 0.95) + 0.6 * rng.normal(size=n))
    well_aerated = (100.0 - lesion) * (1.0 - other)
    worst = np.maximum(severe, intub)
    share = _sigmoid(-1.4 + 0.5 * worst + 1.0 * rng.normal(size=n))
    consolidation = share * lesion
    sex = np.asarray(sex_male, dtype=float)
    base = np.where(np.isnan(sex), 4200.0, np.where(sex == 1, 4700.0, 3700.0))
    lung = np.clip((base + 650.0 * rng.normal(size=n)) * (1 - 0.3 * lesion / 100), 1500, 8000)
    frame = pd.DataFrame(
        {
            "lung_volume_ml": lung,
            "lesion_volume_ml": lung * lesion / 100.0,
            "lesion_percent": lesion,
            "ggo_percent": lesion - consolidation,
            "consolidation_percent": consolidation,
            "well_aerated_percent": well_aerated,
        }
    )
    return frame[list(IMAGING_FEATURES)]


def measured_by_lesion_model(truth: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The biomarkers the pipeline's lesion model would report for drawn ``truth`` (seeded)."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    mean, sd = LESION_SENSITIVITY, SENSITIVITY_SD
    concentration = mean * (1 - mean) / sd**2 - 1
    sensitivity = rng.beta(mean * concentration, (1 - mean) * concentration, size=n)
    false_positive = FALSE_POSITIVE_PERCENT * np.exp(FALSE_POSITIVE_LOG_SD * rng.normal(size=n))
    lesion = truth["lesion_percent"].to_numpy()
    measured = sensitivity * lesion + false_positive * (1.0 - lesion / 100.0)
    consolidation = np.minimum(
        CONSOLIDATION_SENSITIVITY * truth["consolidation_percent"].to_numpy(), measured
    )
    aerated_share = truth["well_aerated_percent"].to_numpy() / np.maximum(100.0 - lesion, 1e-6)
    lung = truth["lung_volume_ml"].to_numpy()
    frame = pd.DataFrame(
        {
            "lung_volume_ml": lung,
            "lesion_volume_ml": lung * measured / 100.0,
            "lesion_percent": measured,
            "ggo_percent": measured - consolidation,
            "consolidation_percent": consolidation,
            "well_aerated_percent": (100.0 - measured) * aerated_share,
        }
    )
    return frame[list(IMAGING_FEATURES)]


def achieved_odds_ratios(
    imaging: pd.DataFrame,
    pneumonia: np.ndarray,
    intubation: np.ndarray,
    icu: np.ndarray,
    death: np.ndarray,
) -> dict[str, float | None]:
    """Crude odds ratios of the drawn biomarkers at the literature cut-offs, pneumonia only."""
    with_pneumonia = np.asarray(pneumonia) == 1
    severe = np.maximum(_zero_nan(icu), _zero_nan(death))
    known_intubation = ~np.isnan(np.asarray(intubation, dtype=float))
    low_aeration = imaging["well_aerated_percent"].to_numpy() < WELL_AERATED_CUTOFF
    high_lesion = imaging["lesion_percent"].to_numpy() > LESION_CUTOFF
    return {
        "well_aerated_below_72_vs_icu_or_death": _odds_ratio(
            low_aeration[with_pneumonia], severe[with_pneumonia]
        ),
        "lesion_above_23_vs_intubation": _odds_ratio(
            high_lesion[with_pneumonia & known_intubation],
            np.asarray(intubation)[with_pneumonia & known_intubation],
        ),
    }


def _odds_ratio(exposed: np.ndarray, outcome: np.ndarray) -> float | None:
    exposed, outcome = exposed.astype(bool), np.asarray(outcome) == 1
    a, b = int((exposed & outcome).sum()), int((exposed & ~outcome).sum())
    c, d = int((~exposed & outcome).sum()), int((~exposed & ~outcome).sum())
    if b == 0 or c == 0:
        return None
    return round(a * d / (b * c), 3)


def _zero_nan(values: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
