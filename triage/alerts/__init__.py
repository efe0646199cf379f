"""Public API of ``triage.alerts``: what other packages import (deep imports stay inside)."""

from triage.alerts.policy import NAMED_LEVELS, AlertPolicy, risk_calibration
from triage.alerts.thresholds import (
    NO_CALIBRATION,
    AppliedChange,
    OperatingPointRow,
    ThresholdChange,
    apply_change,
    operating_point_rows,
    parse_level_name,
)
from triage.alerts.worsening import WORSENING_SETTINGS, WorseningDecision, WorseningRule

__all__ = [
    "WORSENING_SETTINGS",
    "AlertPolicy",
    "AppliedChange",
    "NAMED_LEVELS",
    "NO_CALIBRATION",
    "OperatingPointRow",
    "ThresholdChange",
    "WorseningDecision",
    "WorseningRule",
    "apply_change",
    "operating_point_rows",
    "parse_level_name",
    "risk_calibration",
]
