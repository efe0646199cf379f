"""External validation of the risk models on a table of patients with outcomes.

``ctriage risk validate --csv FILE`` reads a scoring CSV (the columns of
:mod:`triage.risk.scoring`) with outcome columns ``ventilation``, ``icu``, ``death`` (0/1;
empty = unknown, left out of that outcome only) and an optional ``comorbidity_count``. Every
row is parsed as ``risk score`` parses it; a row with a bad field is reported (row number,
field, reason), never dropped silently. Per outcome present, on the same rows:

- the model (the panel's calibrated probabilities; fused model for rows with all imaging
  biomarkers, clinical-only otherwise): AUC with bootstrap 95 % CI, calibration-in-the-large,
  calibration slope (:mod:`triage.risk.calibration`), Brier score, observed and expected rate,
  net benefit at the alert thresholds (decision curve; against treating everyone);
- age alone and comorbidity count (``comorbidity_count`` if given, else the number of
  comorbidities recorded as present): AUC with CI;
- the cohort's own ceiling: a logistic regression on the same fields (every model input the
  table records, plus ``comorbidity_count``), fitted on the cohort itself, 5-fold
  cross-validated (out-of-fold predictions): AUC with CI (none below 5 events);
- a reliability plot (PNG, deciles of predicted risk) when a plot folder is given.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from triage.exceptions import ValidationReason, ValidationRefused
from triage.fhir.features import CONDITION_FEATURES, FEATURES, IMAGING_FEATURES
from triage.risk.calibration import calibration_in_the_large, fit_intercept_slope
from triage.risk.card import OUTCOME_MODELS, RISK_COLUMNS
from triage.risk.evaluation import (
    LogisticModel,
    auc_bootstrap_ci,
    brier,
    roc_auc,
    stratified_folds,
)
from triage.risk.scoring import RiskPanel, RowRejectionReason, parse_row

OUTCOMES: tuple[str, ...] = tuple(OUTCOME_MODELS)
COUNT_COLUMN = "comorbidity_count"
CEILING_FOLDS = 5
RELIABILITY_BINS = 10
MAX_REPORTED_ERRORS = 50
_CONDITIONS = [FEATURES.index(name) for name in CONDITION_FEATURES.values()]
_AGE = FEATURES.index("age_years")


@dataclass
class ValidationTable:
    """Parsed rows: model features (NaN = not recorded), outcomes (NaN = unknown), rejections."""

    matrix: np.ndarray
    outcomes: dict[str, np.ndarray]
    comorbidity_count: np.ndarray | None
    rows: int
    errors: list[str] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Rows not used (a bad field)."""
        return self.rows - len(self.matrix)


def parse_table(rows: Iterable[Mapping[str, object]]) -> ValidationTable:
    """Parse CSV-like rows (see the module docstring); raises :class:`ValidationRefused`."""
    vectors: list[list[float]] = []
    labels: dict[str, list[float]] = {name: [] for name in OUTCOMES}
    counts: list[float] = []
    present: set[str] = set()
    errors: list[str] = []
    rejections: dict[str, int] = {}
    total = 0
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        total += 1
        cells = {str(k).strip().lower(): str(v or "").strip() for k, v in row.items() if k}
        present |= {name for name in (*OUTCOMES, COUNT_COLUMN) if name in cells}
        raw: dict[str | None, object] = dict(row.items())
        values, problems = parse_row(raw)
        outcome = {name: _outcome(cells.get(name, ""), name, problems) for name in OUTCOMES}
        count = _nan(values.get(COUNT_COLUMN))
        if problems:
            errors.append(f"row {number}: {'; '.join(problems)}")
            for problem in problems:
                reason = problem.rsplit(": ", 1)[-1]
                rejections[reason] = rejections.get(reason, 0) + 1
            continue
        vectors.append([_nan(values[f]) for f in FEATURES])
        for name in OUTCOMES:
            labels[name].append(outcome[name])
        counts.append(count)
    if not present & set(OUTCOMES):
        raise ValidationRefused(
            ValidationReason.NO_OUTCOME_COLUMN,
            f"no outcome column: give one of {', '.join(OUTCOMES)} (0/1)",
        )
    if not vectors:
        raise ValidationRefused(ValidationReason.NO_SCORED_ROWS, f"all {total} rows rejected")
    return ValidationTable(
        matrix=np.array(vectors, dtype=np.float32),
        outcomes={n: np.array(v, dtype=float) for n, v in labels.items() if n in present},
        comorbidity_count=np.array(counts, dtype=float) if COUNT_COLUMN in present else None,
        rows=total,
        errors=errors,
        rejections=rejections,
    )


def read_table(path: Path) -> ValidationTable:
    """Read and parse a validation CSV; OSError / ValueError for an unreadable file."""
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise ValueError(f"{path}: no header row")
        return parse_table(list(reader))


def score_table(table: ValidationTable, panel: RiskPanel) -> tuple[dict[str, np.ndarray], int]:
    """Risk column -> probabilities for every parsed row, and how many rows the fused models got."""
    imaging = [FEATURES.index(name) for name in IMAGING_FEATURES]
    fused = ~np.isnan(table.matrix[:, imaging]).any(axis=1)
    out = {column: np.full(len(table.matrix), np.nan) for column in RISK_COLUMNS.values()}
    for kind, rows in (("fused", fused), ("clinical", ~fused)):
        if rows.any():
            counts = None if table.comorbidity_count is None else table.comorbidity_count[rows]
            for column, probs in panel.score_matrix(table.matrix[rows], kind, counts).items():
                out[column][rows] = probs
    return out, int(fused.sum())


def validate(
    table: ValidationTable,
    panel: RiskPanel,
    *,
    thresholds: Sequence[float],
    n_boot: int = 1000,
    seed: int = 2020,
    plot_dir: Path | None = None,
) -> dict[str, Any]:
    """The validation report of every outcome the table has (see the module docstring)."""
    risks, fused_rows = score_table(table, panel)
    report: dict[str, Any] = {
        "rows": table.rows,
        "scored": len(table.matrix),
        "rejected": table.rejected,
        "rejections": dict(table.rejections),
        "errors": table.errors[:MAX_REPORTED_ERRORS],
        "fused_rows": fused_rows,
        "fields_recorded": recorded_fields(table),
        "model_versions": {
            name: {"fused": panel.fused[name].version, "clinical": panel.clinical[name].version}
            for name in panel.fused
        },
        "outcomes": {},
    }
    for name, labels in table.outcomes.items():
        known = ~np.isnan(labels)
        y = labels[known]
        if len(np.unique(y)) < 2:
            report["outcomes"][name] = {"n": int(known.sum()), "refused": "single_class"}
            continue
        probs = risks[RISK_COLUMNS[name]][known]
        entry = outcome_report(y, probs, thresholds, n_boot=n_boot, seed=seed)
        entry["age_alone"] = _auc_entry(y, _age_score(table.matrix[known]), n_boot, seed)
        count = comorbidity_count(table)
        entry["comorbidity_count"] = (
            None if count is None else _auc_entry(y, count[known], n_boot, seed)
        )
        entry["ceiling_logistic_cv"] = None
        if min(y.sum(), len(y) - y.sum()) >= CEILING_FOLDS:  # every fold sees both outcomes
            ceiling = ceiling_scores(table, known, y, seed)
            entry["ceiling_logistic_cv"] = _auc_entry(y, ceiling, n_boot, seed)
        if plot_dir is not None:
            path = Path(plot_dir) / f"reliability_{name}.png"
            reliability_plot(y, probs, path, f"{name}: {len(y)} patients, {int(y.sum())} events")
            entry["reliability_png"] = str(path)
        report["outcomes"][name] = entry
    if not report["outcomes"]:
        raise ValidationRefused(ValidationReason.NO_OUTCOME_COLUMN, "no outcome with known values")
    return report


def outcome_report(
    labels: np.ndarray,
    probs: np.ndarray,
    thresholds: Sequence[float],
    *,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Discrimination, calibration and net benefit of probabilities against 0/1 outcomes."""
    try:
        intercept, slope = fit_intercept_slope(probs, labels)
    except ValueError:  # predictions without spread: no slope to report
        intercept, slope = math.nan, math.nan
    return {
        "n": len(labels),
        "events": int(labels.sum()),
        "model": _auc_entry(labels, probs, n_boot, seed),
        "observed_rate": round(float(labels.mean()), 4),
        "expected_rate": round(float(np.mean(probs)), 4),
        "calibration_in_the_large": round(calibration_in_the_large(probs, labels), 4),
        "calibration_intercept": _rounded(intercept),
        "calibration_slope": _rounded(slope),
        "brier": round(brier(labels, probs), 4),
        "net_benefit": [net_benefit(labels, probs, t) for t in thresholds],
    }


def net_benefit(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Net benefit of alerting at ``threshold`` vs alerting on everyone (Vickers 2006)."""
    n = len(labels)
    odds = threshold / (1.0 - threshold)
    alert = probs >= threshold
    tp = int((alert & (labels == 1)).sum())
    fp = int((alert & (labels == 0)).sum())
    prevalence = float(labels.mean())
    return {
        "threshold": threshold,
        "model": round(tp / n - fp / n * odds, 4),
        "treat_all": round(prevalence - (1.0 - prevalence) * odds, 4),
        "alerts_per_100": round(100.0 * (tp + fp) / n, 2),
    }


def recorded_fields(table: ValidationTable) -> list[str]:
    """Model inputs the table records for at least one row."""
    recorded = ~np.isnan(table.matrix).all(axis=0)
    return [name for name, seen in zip(FEATURES, recorded, strict=True) if seen]


def comorbidity_count(table: ValidationTable) -> np.ndarray | None:
    """The given count, else the comorbidities recorded as present; None if none recorded."""
    if table.comorbidity_count is not None:
        return table.comorbidity_count
    flags = table.matrix[:, _CONDITIONS]
    if np.isnan(flags).all():
        return None
    return np.nansum(flags, axis=1)


def ceiling_scores(
    table: ValidationTable, rows: np.ndarray, labels: np.ndarray, seed: int
) -> np.ndarray:
    """Out-of-fold probabilities of a logistic regression on the table's own fields."""
    columns = [FEATURES.index(name) for name in recorded_fields(table)]
    design = table.matrix[rows][:, columns].astype(float)
    if table.comorbidity_count is not None:
        design = np.column_stack([design, table.comorbidity_count[rows]])
    return out_of_fold(design, labels, seed)


def out_of_fold(design: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Probabilities of a logistic regression on ``design``, each from the fold that held it out.

    :data:`CEILING_FOLDS` stratified folds: the cross-validated ceiling of a table's own fields.
    """
    out = np.empty(len(labels))
    folds = stratified_folds(labels.astype(int), CEILING_FOLDS, np.random.default_rng(seed))
    for train, held_out in folds:
        model = LogisticModel().fit(design[train], labels[train])
        out[held_out] = model.predict_proba(design[held_out])
    return out


def reliability_plot(labels: np.ndarray, probs: np.ndarray, path: Path, title: str) -> Path:
    """Observed vs predicted risk by decile of predicted risk (PNG), with the diagonal."""
    from matplotlib.figure import Figure  # imported here: only plots need matplotlib

    edges = np.unique(np.quantile(probs, np.linspace(0, 1, RELIABILITY_BINS + 1)))
    which = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, max(len(edges) - 2, 0))
    bins = [b for b in range(max(len(edges) - 1, 1)) if (which == b).any()]
    predicted = [float(probs[which == b].mean()) for b in bins]
    observed = [float(labels[which == b].mean()) for b in bins]
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.add_subplot()
    top = max(max(predicted), max(observed), 0.05) * 1.1
    axes.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1)
    axes.plot(predicted, observed, marker="o")
    axes.set(xlabel="predicted risk", ylabel="observed rate", title=title, xlim=(0, top))
    axes.set_ylim(0, top)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def _auc_entry(labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    auc = roc_auc(labels, scores)
    ci = auc_bootstrap_ci(labels, scores, n_boot, seed) if n_boot > 0 else None
    return {
        "auc": None if auc is None else round(auc, 4),
        "auc_ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
    }


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _age_score(matrix: np.ndarray) -> np.ndarray:
    age = matrix[:, _AGE].astype(float)
    return np.where(np.isnan(age), np.nanmedian(age) if (~np.isnan(age)).any() else 0.0, age)


def _outcome(text: str, name: str, problems: list[str]) -> float:
    if not text:
        return math.nan
    if text in ("0", "1", "0.0", "1.0"):
        return float(text)
    problems.append(f"{name}={text!r}: {RowRejectionReason.INVALID_OUTCOME.value}")
    return math.nan
