"""RSNA expert-consensus CT category for COVID-19 pneumonia, from the measured findings.

Rule-based decision support, not a diagnosis: the four categories of Simpson et al. (Radiology:
Cardiothoracic Imaging 2020; 2(2):e200152) are applied to what the lesion model measures
(:mod:`inference.biomarkers`, :mod:`inference.regional`). Only some of the criteria can be
measured from lung and lesion masks; the others are listed in :data:`UNMEASURED_CRITERIA` and
``docs/rsna-category.md`` says how the category degrades without them.

Rules, in the order the consensus applies them (each category requires the absence of the one
before):

- **negative**: lesion volume below :data:`NEGATIVE_MAX_LESION_PERCENT` of the lung and no zone
  at :data:`NEGATIVE_MAX_ZONE_PERCENT` or more (a normal lung shows specks in the masks);
- **typical**: bilateral, peripheral-predominant lesions, ground glass at least
  :data:`GGO_PREDOMINANT_SHARE` % of the lesion volume ("peripheral, bilateral GGO with or
  without consolidation");
- **atypical**: consolidation without ground glass (ground glass under
  :data:`ATYPICAL_MAX_GGO_SHARE` %) confined to one lung, at most two zones and two lesions
  ("isolated lobar or segmental consolidation without GGO");
- **indeterminate**: everything else with lesions (multifocal, diffuse, unilateral or
  non-peripheral ground glass "lacking a specific distribution").

Without the regional biomarkers (the ``lesion_threshold`` model measures no zones) only
negative or indeterminate can be said, and the finding ``distribution_measured`` is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: Whole-lung lesion % below which (with no zone at the next bound) the CT is negative.
NEGATIVE_MAX_LESION_PERCENT = 1.0
#: A zone at or above this % (zone score 2 or more) is a finding, whatever the total.
NEGATIVE_MAX_ZONE_PERCENT = 5.0
#: Ground glass share (% of lesion volume) from which lesions are ground-glass predominant.
GGO_PREDOMINANT_SHARE = 50.0
#: Ground glass share under which lesions count as consolidation without ground glass.
ATYPICAL_MAX_GGO_SHARE = 20.0
#: Zone involvement (%) counted as an involved zone (the zone score's noise floor).
ZONE_FLOOR_PERCENT = 0.5

NOTE = (
    "Rule-based decision support from measured findings (RSNA expert consensus, Simpson et al. "
    "2020), not a diagnosis; criteria not measured are listed."
)

#: Consensus criteria the masks cannot measure (see docs/rsna-category.md for the effect).
UNMEASURED_CRITERIA = (
    "rounded_morphology",
    "crazy_paving",
    "reverse_halo_organizing_pneumonia",
    "centrilobular_nodules_tree_in_bud",
    "cavitation",
    "smooth_septal_thickening_with_effusion",
    "perihilar_distribution",
)

_SIDES = ("right", "left")
_LEVELS = ("upper", "middle", "lower")


class RsnaCategoryValues(StrEnum):
    """The four RSNA consensus categories."""

    TYPICAL = "typical"
    INDETERMINATE = "indeterminate"
    ATYPICAL = "atypical"
    NEGATIVE = "negative"


@dataclass(frozen=True)
class RsnaAssessment:
    """A category, the findings that decided it, why, and everything measured."""

    category: RsnaCategoryValues
    deciding: dict[str, float]
    reasons: tuple[str, ...]
    findings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``rsna_category``, ``rsna_findings`` (deciding) and the details."""
        return {
            "rsna_category": str(self.category),
            "rsna_findings": dict(self.deciding),
            "rsna_reasons": list(self.reasons),
            "rsna_measured": dict(self.findings),
            "rsna_unmeasured": list(UNMEASURED_CRITERIA),
            "rsna_note": NOTE,
        }


def measured_findings(
    biomarkers: Mapping[str, float], regional: Mapping[str, float] | None
) -> dict[str, float]:
    """The consensus findings that the biomarkers measure (booleans as 1.0 / 0.0)."""
    lesion = float(biomarkers.get("lesion_percent", 0.0))
    ggo = float(biomarkers.get("ggo_percent", 0.0))
    found = {
        "lesion_percent": lesion,
        "ggo_share_percent": 100.0 * ggo / lesion if lesion > 0 else 0.0,
        "distribution_measured": float(bool(regional)),
    }
    if not regional:
        return found
    zones = {
        (side, level): float(regional.get(f"{side}_{level}_zone_percent", 0.0))
        for side in _SIDES
        for level in _LEVELS
    }
    lower = sum(zones[(s, "lower")] for s in _SIDES) / 2
    upper = sum(zones[(s, "upper")] for s in _SIDES) / 2
    return found | {
        "max_zone_percent": max(zones.values()),
        "involved_zones": float(sum(v >= ZONE_FLOOR_PERCENT for v in zones.values())),
        "bilateral": float(regional.get("bilateral", 0.0)),
        "peripheral_lesion_percent": float(regional.get("peripheral_lesion_percent", 0.0)),
        "peripheral_predominant": float(regional.get("peripheral_predominant", 0.0)),
        "lesion_count": float(regional.get("lesion_count", 0.0)),
        "multifocal": float(regional.get("lesion_count", 0.0) >= 2),
        "lower_zone_predominant": float(lower > upper and lower >= ZONE_FLOOR_PERCENT),
    }


def _pick(found: Mapping[str, float], *names: str) -> dict[str, float]:
    return {n: round(found[n], 2) for n in names if n in found}


def rsna_category(
    biomarkers: Mapping[str, float], regional: Mapping[str, float] | None = None
) -> RsnaAssessment:
    """The RSNA consensus category of one quantified CT (see the module docstring)."""
    f = measured_findings(biomarkers, regional)
    if f["lesion_percent"] < NEGATIVE_MAX_LESION_PERCENT and (
        f.get("max_zone_percent", 0.0) < NEGATIVE_MAX_ZONE_PERCENT
    ):
        reason = (
            f"lesions {f['lesion_percent']:.2f} % of lung, under the "
            f"{NEGATIVE_MAX_LESION_PERCENT:g} % floor, no zone at {NEGATIVE_MAX_ZONE_PERCENT:g} %"
        )
        deciding = _pick(f, "lesion_percent", "max_zone_percent")
        return RsnaAssessment(RsnaCategoryValues.NEGATIVE, deciding, (reason,), f)
    if not f["distribution_measured"]:
        reason = "lesions present; distribution not measured by this lesion model"
        deciding = _pick(f, "lesion_percent", "ggo_share_percent", "distribution_measured")
        return RsnaAssessment(RsnaCategoryValues.INDETERMINATE, deciding, (reason,), f)
    ggo_predominant = f["ggo_share_percent"] >= GGO_PREDOMINANT_SHARE
    if f["bilateral"] and f["peripheral_predominant"] and ggo_predominant:
        reason = "bilateral, peripheral-predominant, ground-glass-predominant lesions"
        deciding = _pick(
            f, "bilateral", "peripheral_predominant", "peripheral_lesion_percent",
            "ggo_share_percent", "lower_zone_predominant",
        )  # fmt: skip
        return RsnaAssessment(RsnaCategoryValues.TYPICAL, deciding, (reason,), f)
    if (
        f["ggo_share_percent"] < ATYPICAL_MAX_GGO_SHARE
        and not f["bilateral"]
        and f["involved_zones"] <= 2
        and f["lesion_count"] <= 2
    ):
        reason = "isolated unilateral consolidation without ground glass"
        deciding = _pick(f, "ggo_share_percent", "bilateral", "involved_zones", "lesion_count")
        return RsnaAssessment(RsnaCategoryValues.ATYPICAL, deciding, (reason,), f)
    return RsnaAssessment(
        RsnaCategoryValues.INDETERMINATE,
        _pick(
            f,
            "bilateral",
            "peripheral_predominant",
            "peripheral_lesion_percent",
            "ggo_share_percent",
            "multifocal",
            "lesion_count",
            "lower_zone_predominant",
        ),  # fmt: skip
        tuple(_missing_typical(f, ggo_predominant)),
        f,
    )


def _missing_typical(f: Mapping[str, float], ggo_predominant: bool) -> list[str]:
    """Why lesions that are not negative fall short of typical (plain words)."""
    missing = []
    if not f["bilateral"]:
        missing.append("unilateral")
    if not f["peripheral_predominant"]:
        missing.append(
            f"not peripheral-predominant ({f['peripheral_lesion_percent']:.0f} % of the lesion "
            "volume in the lung rim, not 10 points above the rim's share of lung)"
        )
    if not ggo_predominant:
        missing.append(f"ground glass only {f['ggo_share_percent']:.0f} % of the lesion volume")
    return ["no typical pattern: " + "; ".join(missing)]
