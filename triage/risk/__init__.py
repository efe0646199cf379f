"""Public API of ``triage.risk``: what other packages import (deep imports stay inside)."""

from triage.risk.assess import (
    RecentStudy,
    StudyFindings,
    StudyOutcome,
    StudyRisk,
    rescore,
    score_study,
)
from triage.risk.card import REAL_LABEL
from triage.risk.external import DEFAULT_THRESHOLDS
from triage.risk.model import (
    SYNTHETIC_LABEL,
    Contribution,
    RiskModel,
    load_card,
    recalibrated_version,
)
from triage.risk.recalibration import calibrated_model, calibration_of, file_digest, recalibrate
from triage.risk.scoring import MODELS_DIR, RiskPanel, score_csv
from triage.risk.semisynthetic import LABEL as SEMI_SYNTHETIC_LABEL
from triage.risk.synthetic import train_from_cohort
from triage.risk.training import train_mexico
from triage.risk.validation import read_table, validate

__all__ = [
    "Contribution",
    "DEFAULT_THRESHOLDS",
    "MODELS_DIR",
    "REAL_LABEL",
    "RecentStudy",
    "RiskModel",
    "RiskPanel",
    "SEMI_SYNTHETIC_LABEL",
    "SYNTHETIC_LABEL",
    "StudyFindings",
    "StudyOutcome",
    "StudyRisk",
    "calibrated_model",
    "calibration_of",
    "file_digest",
    "load_card",
    "read_table",
    "recalibrate",
    "recalibrated_version",
    "rescore",
    "score_csv",
    "score_study",
    "train_from_cohort",
    "train_mexico",
    "validate",
]
