"""What FHIR ingress did with a payload: counts by resource type, rejections, OperationOutcome.

Counts add up for every row and in total: ``received = used + ignored + rejected``. A part of a
payload that is not a resource at all (a line or file that is not JSON, JSON that is not a
resource, a file that cannot be read) is received and rejected under a row of its own
(:data:`UNREADABLE`, :data:`NOT_A_RESOURCE`), so that the table counts everything it lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from triage.exceptions import FhirRejectionReason

#: Rows of the count table for parts of a payload that are not resources.
UNREADABLE = "(unreadable)"
NOT_A_RESOURCE = "(not a resource)"
REASON_SYSTEM = "https://ctriage.invalid/fhir-rejection-reason"
# FhirRejectionReason -> FHIR R4 IssueType (hl7.org/fhir/R4/valueset-issue-type.html).
_ISSUE_CODES = {
    "invalid_json": "structure",
    "not_a_resource": "structure",
    "unreadable_file": "exception",
    "unknown_resource_type": "not-supported",
    "validation_failed": "invalid",
    "missing_subject": "required",
    "unit_mismatch": "code-invalid",
    "implausible_value": "value",
    "unknown_patient": "not-found",
    "unsupported_version": "not-supported",
    "unsupported_bundle_type": "not-supported",
    "r5_content_as_r4": "not-supported",
}
_ROW_OF_REASON = {
    FhirRejectionReason.INVALID_JSON.value: UNREADABLE,
    FhirRejectionReason.UNREADABLE_FILE.value: UNREADABLE,
    FhirRejectionReason.NOT_A_RESOURCE.value: NOT_A_RESOURCE,
}


@dataclass
class TypeCounts:
    """What happened to the resources of one type (``received = used + ignored + rejected``)."""

    received: int = 0
    used: int = 0
    ignored: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Rejection:
    """One rejected resource (or unreadable part of a payload), safe to show the sender."""

    location: str
    resource_type: str | None
    reason: str
    detail: str


@dataclass
class IngestReport:
    """Counts by resource type, and every rejection, of one or more payloads."""

    counts: dict[str, TypeCounts] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    withheld: int = 0  # valid resources not published: their transaction had a rejected entry

    def count(self, resource_type: str) -> TypeCounts:
        """The counters of one resource type (created on first use)."""
        return self.counts.setdefault(resource_type, TypeCounts())

    def reject(self, rejection: Rejection, received: bool = True) -> None:
        """Record a rejection in its row; ``received=False`` when the row already counted it."""
        row = rejection.resource_type or _ROW_OF_REASON.get(rejection.reason, NOT_A_RESOURCE)
        counts = self.count(row)
        counts.received += int(received)
        counts.rejected += 1
        self.rejections.append(rejection)

    @property
    def received(self) -> int:
        """Everything received: resources and unreadable parts."""
        return sum(c.received for c in self.counts.values())

    @property
    def used(self) -> int:
        """Resources published."""
        return sum(c.used for c in self.counts.values())

    @property
    def ignored(self) -> int:
        """Valid resources that carry nothing ctriage reads."""
        return sum(c.ignored for c in self.counts.values())

    @property
    def rejected(self) -> int:
        """Rejections (resources and unreadable parts of payloads)."""
        return len(self.rejections)

    def merge(self, other: IngestReport) -> None:
        """Add another report's numbers to this one."""
        for rtype, c in other.counts.items():
            mine = self.count(rtype)
            mine.received += c.received
            mine.used += c.used
            mine.ignored += c.ignored
            mine.rejected += c.rejected
        self.rejections.extend(other.rejections)
        self.withheld += other.withheld


def operation_outcome(rejections: Iterable[Rejection], report: IngestReport) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome: one issue per rejection, plus an information summary."""
    issues: list[dict[str, Any]] = [
        {
            "severity": "error",
            "code": _ISSUE_CODES.get(r.reason, "invalid"),
            "details": {
                "coding": [{"system": REASON_SYSTEM, "code": r.reason}],
                "text": r.detail[:1000],
            },
            "expression": [r.location],
        }
        for r in rejections
    ]
    issues.append(
        {"severity": "information", "code": "informational", "diagnostics": summary(report)}
    )
    return {"resourceType": "OperationOutcome", "issue": issues}


def summary(report: IngestReport) -> str:
    """One line: received, used, ignored, rejected (and withheld, for a refused transaction)."""
    used = f"{report.used} used"
    if report.withheld:
        used = (
            f"0 used ({report.withheld} valid resources not published: the transaction had a "
            "rejected entry)"
        )
    return (
        f"{report.received} received: {used}, {report.ignored} ignored, {report.rejected} rejected"
    )


def report_lines(report: IngestReport) -> list[str]:
    """A plain-text table of the counts by resource type, then the rejections."""
    lines = [f"{'resource type':24} {'received':>9} {'used':>6} {'ignored':>8} {'rejected':>9}"]
    for rtype, c in sorted(report.counts.items()):
        lines.append(f"{rtype:24} {c.received:9} {c.used:6} {c.ignored:8} {c.rejected:9}")
    lines.append(
        f"{'total':24} {report.received:9} {report.used:6} {report.ignored:8} {report.rejected:9}"
    )
    lines += [f"rejected  {r.reason}  {r.location}: {r.detail}" for r in report.rejections]
    return lines
