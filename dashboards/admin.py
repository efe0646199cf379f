"""The "ctriage — administration" dashboard: thresholds in force, alert rates, versions, audit.

For the administrators who tune the alert levels. Store panels query the reporting store
(:mod:`dashboards.store`) through ``$store``: the ``threshold_audit`` table (one row per policy
change, written by the worker's audit sink), ``alerts`` and ``risks``. The live alert rate comes
from the worker counter ``ctriage_alerts_total`` through ``$prometheus``.

What "in force" means here: the levels of the latest audited change of a hospital. Until the
first change through the admin API or ``ctriage thresholds set``, the configured default
(``CTRIAGE_WORKER__ALERT_THRESHOLD`` / ``CTRIAGE_WORKER__THRESHOLD_VERSION``) is in force and has
no audit row: the alerts' ``threshold version`` column still names it. The model version is the
SHA-256 of the booster *and* its calibration map (``triage.risk.model.model_version``), so a
recalibration shows as a new model version. The observed operating point (alerts per 100 scored
studies, level mix) is set against the model card's expected one, which the admin API serves
(``GET /v1/operating-points``, ``ctriage thresholds show``). SQL is PostgreSQL that SQLite also
runs (the unit tests); JSON levels are read with ``->`` / ``->>``, which both understand.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    AxisPlacement,
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    VariableHide,
    VariableRefresh,
    VariableSort,
)

from dashboards.datasources import (
    PROMETHEUS_DATASOURCE,
    STORE_DATASOURCE,
    SqlFormatValues,
    datasource_variables,
    prometheus_expr,
    store_sql,
)

UID = "ctriage-admin"
TITLE = "ctriage — administration"
#: The levels a policy sets (triage.alerts.policy.NAMED_LEVELS; not imported: no triage here).
LEVELS = ("moderate", "high", "critical")
#: Suffix of a threshold series, so it never shares a name with the level's alert series.
FROM = " from"

HOSPITAL_VARIABLE_SQL = """\
SELECT hospital FROM threshold_audit
UNION
SELECT hospital FROM alerts WHERE hospital IS NOT NULL
ORDER BY 1"""


def _level(column: str, level: str) -> str:
    return f"CAST({column} -> 'levels' ->> '{level}' AS DOUBLE PRECISION)"


def _levels(column: str, suffix: str = FROM) -> str:
    return ",\n  ".join(f'{_level(column, lv)} AS "{lv}{suffix}"' for lv in LEVELS)


_LATEST_CHANGE = "SELECT max(changed_at) FROM threshold_audit WHERE hospital = '$hospital'"

#: The levels in force over the time range, as steps: the change in force when the range
#: starts, every change inside it, and the latest one again at the range's end.
THRESHOLDS_SQL = f"""\
SELECT time, {", ".join(f'"{lv}{FROM}"' for lv in LEVELS)}
FROM (
  SELECT $__timeFrom() AS time,
  {_levels("new_policy")}
  FROM threshold_audit
  WHERE hospital = '$hospital' AND changed_at = (
    {_LATEST_CHANGE} AND changed_at < $__timeFrom())
  UNION ALL
  SELECT changed_at AS time,
  {_levels("new_policy")}
  FROM threshold_audit
  WHERE hospital = '$hospital' AND $__timeFilter(changed_at)
  UNION ALL
  SELECT $__timeTo() AS time,
  {_levels("new_policy")}
  FROM threshold_audit
  WHERE hospital = '$hospital' AND changed_at = ({_LATEST_CHANGE})
) AS steps
ORDER BY 1"""

ALERTS_PER_HOUR_SQL = """\
SELECT
  $__timeGroupAlias(raised_at, '1h', 0),
  level AS metric,
  count(*) AS "alerts"
FROM alerts
WHERE hospital = '$hospital' AND $__timeFilter(raised_at)
GROUP BY 1, 2
ORDER BY 1"""

POLICIES_IN_FORCE_SQL = f"""\
SELECT
  a.hospital AS "hospital",
  a.new_version AS "threshold version",
  {_levels("a.new_policy")},
  a.new_policy ->> 'alert_from' AS "alerts from level",
  a.changed_at AS "since",
  a.changed_by AS "changed by"
FROM threshold_audit AS a
JOIN (
  SELECT hospital, max(changed_at) AS latest FROM threshold_audit GROUP BY hospital
) AS l ON a.hospital = l.hospital AND a.changed_at = l.latest
ORDER BY a.hospital"""

_LEVEL_MIX = ",\n  ".join(
    f"100.0 * sum(CASE WHEN r.level = '{lv}' THEN 1 ELSE 0 END) / count(*) AS \"{lv} %\""
    for lv in ("low", *LEVELS)
)

#: Observed operating point of each (model, threshold) version pair in the time range.
OPERATING_POINT_SQL = f"""\
SELECT
  r.model_version AS "model version",
  r.threshold_version AS "threshold version",
  count(*) AS "studies scored",
  {_LEVEL_MIX},
  100.0 * (
    SELECT count(*) FROM alerts AS a
    WHERE a.model_version = r.model_version AND a.threshold_version = r.threshold_version
      AND $__timeFilter(a.raised_at)
  ) / count(*) AS "alerts per 100 studies",
  avg(r.probability) AS "mean risk",
  min(r.scored_at) AS "first scored",
  max(r.scored_at) AS "last scored"
FROM risks AS r
WHERE $__timeFilter(r.scored_at)
GROUP BY r.model_version, r.threshold_version
ORDER BY "last scored" DESC"""

HISTORY_SQL = f"""\
SELECT
  changed_at AS "changed at",
  hospital AS "hospital",
  changed_by AS "changed by",
  role AS "role",
  source AS "source",
  old_version AS "old version",
  new_version AS "new version",
  {_level("old_policy", "high")} AS "high from (old)",
  {_level("new_policy", "high")} AS "high from (new)",
  new_policy ->> 'alert_from' AS "alerts from level",
  reason AS "reason"
FROM threshold_audit
WHERE $__timeFilter(changed_at)
ORDER BY changed_at DESC
LIMIT 200"""

MODEL_NOW_SQL = """\
SELECT model_version AS "model + calibration version"
FROM risks
ORDER BY scored_at DESC
LIMIT 1"""

THRESHOLD_NOW_SQL = """\
SELECT new_version AS "threshold version"
FROM threshold_audit
WHERE hospital = '$hospital'
ORDER BY changed_at DESC
LIMIT 1"""

ALERT_RATE = "sum by (level) (rate(ctriage_alerts_total[$__rate_interval])) * 3600"


def _legend() -> common_builder.VizLegendOptions:
    return (
        common_builder.VizLegendOptions()
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _variables() -> list[Any]:
    hospital = (
        dashboard_builder.QueryVariable("hospital")
        .label("Hospital")
        .description("Hospital whose policy is shown (audited changes and alerts).")
        .datasource(STORE_DATASOURCE)
        .query(HOSPITAL_VARIABLE_SQL)
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .hide(VariableHide.DONT_HIDE)
    )
    return [*datasource_variables(), hospital]


def _text_stat(panel_id: int, title: str, description: str, sql: str) -> stat.Panel:
    return (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(sql, SqlFormatValues.TABLE))
        .span(6)
        .height(4)
        .graph_mode(BigValueGraphMode.NONE)
        .color_mode(BigValueColorMode.NONE)
        .text_mode(BigValueTextMode.VALUE)
        .reduce_options(
            common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/.*/")
        )
    )


def _policies_in_force() -> table.Panel:
    return (
        table.Panel()
        .id(3)
        .title("Policies in force (latest audited change per hospital)")
        .description(
            "Probability from which each level starts, the lowest alerting level, and who set "
            "it. A hospital absent here runs the configured default "
            "(CTRIAGE_WORKER__ALERT_THRESHOLD, version CTRIAGE_WORKER__THRESHOLD_VERSION)."
        )
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(POLICIES_IN_FORCE_SQL, SqlFormatValues.TABLE))
        .span(12)
        .height(4)
        .show_header(True)
    )


def _alerts_vs_thresholds() -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(4)
        .title("Alerts per hour by level vs the levels in force ($hospital)")
        .description(
            "Bars: alerts raised per clock hour by level (store). Lines, right axis: the "
            "probability from which each level starts, as set by the audited changes."
        )
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(ALERTS_PER_HOUR_SQL, SqlFormatValues.TIME_SERIES, "A"))
        .with_target(store_sql(THRESHOLDS_SQL, SqlFormatValues.TIME_SERIES, "B"))
        .span(16)
        .height(9)
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builder.StackingConfig().mode(StackingMode.NORMAL))
        .unit("short")
        .decimals(0)
        .legend(_legend())
    )
    for level in LEVELS:
        panel = panel.override_by_name(
            f"{level}{FROM}",
            [
                DynamicConfigValue(id_val="custom.drawStyle", value=GraphDrawStyle.LINE),
                DynamicConfigValue(id_val="custom.lineInterpolation", value="stepAfter"),
                DynamicConfigValue(id_val="custom.fillOpacity", value=0),
                DynamicConfigValue(id_val="custom.stacking", value={"mode": "none"}),
                DynamicConfigValue(id_val="custom.axisPlacement", value=AxisPlacement.RIGHT),
                DynamicConfigValue(id_val="unit", value="percentunit"),
                DynamicConfigValue(id_val="decimals", value=2),
                DynamicConfigValue(id_val="min", value=0),
                DynamicConfigValue(id_val="max", value=1),
            ],
        )
    return panel


def _alert_rate() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(5)
        .title("Alert rate by level (worker counter, all hospitals)")
        .description(
            "Alerts per hour from ctriage_alerts_total, live from the workers' /metrics: "
            "drops to zero when no worker runs, whatever the store holds."
        )
        .datasource(PROMETHEUS_DATASOURCE)
        .with_target(prometheus_expr(ALERT_RATE, "{{level}}", "A"))
        .span(8)
        .height(9)
        .unit("short")
        .legend(_legend())
    )


def _operating_point() -> table.Panel:
    percent = [DynamicConfigValue(id_val="unit", value="percent"),
               DynamicConfigValue(id_val="decimals", value=1)]  # fmt: skip
    panel = (
        table.Panel()
        .id(6)
        .title("Observed operating point by model and threshold version")
        .description(
            "Studies scored in the time range, their level mix and alerts per 100 studies, per "
            "(model + calibration, threshold) version pair, all hospitals. Compare with the "
            "model card's expected alerts per 100 at the same threshold (admin API "
            "GET /v1/operating-points, or `ctriage thresholds show`)."
        )
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(OPERATING_POINT_SQL, SqlFormatValues.TABLE))
        .span(24)
        .height(7)
        .show_header(True)
        .override_by_name("mean risk", [DynamicConfigValue(id_val="unit", value="percentunit")])
    )
    for name in (*(f"{lv} %" for lv in ("low", *LEVELS)), "alerts per 100 studies"):
        panel = panel.override_by_name(name, percent)
    return panel


def _history() -> table.Panel:
    return (
        table.Panel()
        .id(7)
        .title("Threshold change history (audit trail)")
        .description(
            "Every audited policy change in the time range, newest first: who, from which "
            "source, old -> new version and high level, and why. The full record, with its FHIR "
            "AuditEvent, is the threshold_audit table and the triage.audit topic."
        )
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(HISTORY_SQL, SqlFormatValues.TABLE))
        .span(24)
        .height(8)
        .show_header(True)
    )


def build_admin() -> dict[str, Any]:
    """The dashboard's JSON model (what Grafana's ``/api/dashboards/db`` takes as ``dashboard``)."""
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Alert levels in force, alert rates against them, the observed operating point, "
            "model and calibration versions, and the audit trail of threshold changes. In the "
            "demo every figure comes from a synthetic cohort: it shows the plumbing, not "
            "clinical validity."
        )
        .tags(["ctriage", "administration"])
        .time("now-7d", "now")
        .refresh("5m")
        .variables(_variables())
        .with_panel(
            _text_stat(
                1,
                "Model + calibration version (latest score)",
                "Version of the risk model that scored the latest study: the SHA-256 of the "
                "booster and its calibration map, so a recalibration is a new version.",
                MODEL_NOW_SQL,
            )
        )
        .with_panel(
            _text_stat(
                2,
                "Threshold version in force ($hospital)",
                "Version set by the latest audited change; empty while the configured default "
                "is in force.",
                THRESHOLD_NOW_SQL,
            )
        )
        .with_panel(_policies_in_force())
        .with_panel(_alerts_vs_thresholds())
        .with_panel(_alert_rate())
        .with_panel(_operating_point())
        .with_panel(_history())
    )
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return model
