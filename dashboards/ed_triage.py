"""The "ctriage — ED triage" dashboard: alerts, risk distribution, throughput and latency.

Store panels query the reporting store (:mod:`dashboards.store`) through ``$store``; pipeline
panels query the worker metrics (:mod:`streams.metrics`, by name only) through ``$prometheus``.
Only pseudonyms are shown: the store holds no names or birth dates.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import histogram, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    ValueMap,
    ValueMappingResult,
)

from dashboards.datasources import (
    PROMETHEUS_DATASOURCE,
    STORE_DATASOURCE,
    SqlFormatValues,
    datasource_variables,
    prometheus_expr,
    store_sql,
)

UID = "ctriage-ed-triage"
TITLE = "ctriage — ED triage"

# The store has no acknowledgement state yet, so the table lists every alert raised in the
# dashboard's time range. Quoted aliases are valid in PostgreSQL and SQLite alike.
ALERTS_SQL = """\
SELECT
  raised_at AS "raised at",
  patient_pseudonym AS "pseudonym",
  probability AS "probability",
  level AS "level",
  lesion_percent AS "lesion %",
  change_text AS "since the prior CT",
  ct_severity_score AS "CT severity /30",
  bilateral AS "bilateral",
  rsna_category AS "RSNA category",
  model_version AS "model version",
  threshold_version AS "threshold version"
FROM alerts
WHERE (kind IS NULL OR kind <> 'worsening') AND $__timeFilter(raised_at)
ORDER BY raised_at DESC
LIMIT 500"""

# Worsening alerts (issue 16): a rule on measured change between a patient's CTs, stored in the
# alerts table with kind 'worsening' and the change that fired the rule (docs/longitudinal.md).
WORSENING_SQL = """\
SELECT
  raised_at AS "raised at",
  patient_pseudonym AS "pseudonym",
  change_text AS "lung burden",
  lesion_change_earlier_points AS "rise (points)",
  interval_earlier_days AS "within (days)",
  severity_change_earlier_points AS "CT severity rise",
  worsening_reasons AS "rule fired on",
  secondary_worsening AS "mild first CT",
  rsna_category AS "RSNA category",
  level AS "risk level",
  probability AS "probability"
FROM alerts
WHERE kind = 'worsening' AND $__timeFilter(raised_at)
ORDER BY raised_at DESC
LIMIT 200"""

# Every follow-up CT scored in the time range (improving, stable or worsening): the change since
# the patient's prior and first CT, from the risks table (one row per study and model version).
FOLLOW_UP_SQL = """\
SELECT
  scored_at AS "scored at",
  patient_pseudonym AS "pseudonym",
  ct_time AS "CT time",
  lesion_from_prior_percent AS "prior CT lesion %",
  prior_ct_time AS "prior CT time",
  lesion_percent AS "lesion % now",
  lesion_change_prior_points AS "change (points)",
  lesion_change_prior_per_day AS "points per day",
  lesion_change_first_points AS "since first CT (points)",
  severity_change_prior_points AS "CT severity change",
  rsna_category AS "RSNA category"
FROM risks
WHERE prior_study_uid IS NOT NULL AND $__timeFilter(scored_at)
ORDER BY lesion_change_prior_per_day DESC
LIMIT 500"""

RISK_DISTRIBUTION_SQL = """\
SELECT probability * 100 AS "risk %"
FROM risks
WHERE $__timeFilter(scored_at)"""

ALERTS_PER_HOUR_SQL = """\
SELECT
  $__timeGroupAlias(raised_at, '1h', 0),
  level AS metric,
  count(*) AS "alerts"
FROM alerts
WHERE (kind IS NULL OR kind <> 'worsening') AND $__timeFilter(raised_at)
GROUP BY 1, 2
ORDER BY 1"""

DEAD_LETTERS_PER_HOUR = "sum by (stage, reason) (increase(ctriage_dead_letters_total[1h]))"
END_TO_END_QUANTILE = (
    "histogram_quantile({q}, "
    "sum by (le) (rate(ctriage_end_to_end_seconds_bucket[$__rate_interval])))"
)
STAGE_P95 = (
    "histogram_quantile(0.95, "
    "sum by (le, stage) (rate(ctriage_stage_seconds_bucket[$__rate_interval])))"
)

# Colours of triage.alerts.RiskLevelValues (not imported: dashboards do not depend on triage).
LEVEL_COLOURS = {"low": "green", "moderate": "orange", "high": "red", "critical": "dark-red"}


def _legend() -> common_builder.VizLegendOptions:
    return (
        common_builder.VizLegendOptions()
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _alerts_table() -> table.Panel:
    level_mapping = ValueMap(
        options={
            level: ValueMappingResult(text=level, color=colour, index=i)
            for i, (level, colour) in enumerate(LEVEL_COLOURS.items())
        }
    )
    return (
        table.Panel()
        .id(1)
        .title("Alerts (most recent first)")
        .description(
            "Ventilation-risk alerts raised in the time range, newest first, by patient "
            "pseudonym, with the lung burden's change since the patient's prior CT (empty for a "
            "first CT) and the RSNA category (rule-based decision support, not a diagnosis). "
            "Every alert carries the model and threshold versions that raised it; worsening "
            "alerts have their own panel."
        )
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(ALERTS_SQL, SqlFormatValues.TABLE))
        .span(24)
        .height(10)
        .show_header(True)
        .mappings([level_mapping])
        .override_by_name(
            "probability",
            [
                DynamicConfigValue(id_val="unit", value="percentunit"),
                DynamicConfigValue(id_val="decimals", value=1),
            ],
        )
        .override_by_name("lesion %", _percent())
        .override_by_name(
            "level", [DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})]
        )
    )


def _percent(decimals: int = 1) -> list[DynamicConfigValue]:
    return [
        DynamicConfigValue(id_val="unit", value="percent"),
        DynamicConfigValue(id_val="decimals", value=decimals),
    ]


def _signed(unit: str) -> list[DynamicConfigValue]:
    """A change shown with its sign and one decimal, coloured red when rising."""
    steps = [{"color": "green", "value": None}, {"color": "red", "value": 0.05}]
    return [
        DynamicConfigValue(id_val="unit", value=unit),
        DynamicConfigValue(id_val="decimals", value=1),
        DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": steps}),
        DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
    ]


def _worsening_table() -> table.Panel:
    return (
        table.Panel()
        .id(7)
        .title("Patients worsening (lung burden rising between CTs)")
        .description(
            "Worsening alerts: lesion % rose by the rule's points (default +10, or +5 CT "
            "severity points) within its days (default 7) since an earlier CT of the patient "
            '(the least-affected one in the interval). "Mild first CT": the patient\'s first '
            "CT was under 10 % (secondary worsening). A rule on measured change, not a model "
            "score; each patient's curve: ctriage patient timeline PSEUDONYM --png FILE "
            "(docs/longitudinal.md)."
        )
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(WORSENING_SQL, SqlFormatValues.TABLE))
        .span(24)
        .height(8)
        .show_header(True)
        .override_by_name("rise (points)", _signed("none"))
        .override_by_name("CT severity rise", _signed("none"))
        .override_by_name(
            "within (days)",
            [
                DynamicConfigValue(id_val="unit", value="d"),
                DynamicConfigValue(id_val="decimals", value=1),
            ],
        )
        .override_by_name(
            "probability",
            [
                DynamicConfigValue(id_val="unit", value="percentunit"),
                DynamicConfigValue(id_val="decimals", value=1),
            ],
        )
    )


def _follow_up_table() -> table.Panel:
    return (
        table.Panel()
        .id(8)
        .title("Follow-up CTs: change since the prior CT")
        .description(
            "Every CT of a patient with an earlier CT, scored in the time range, fastest rise "
            "first: improving, stable and worsening alike (treatment response is for the cohort "
            "export, docs/longitudinal.md; differences are not treatment effects)."
        )
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(FOLLOW_UP_SQL, SqlFormatValues.TABLE))
        .span(24)
        .height(8)
        .show_header(True)
        .override_by_name("prior CT lesion %", _percent())
        .override_by_name("lesion % now", _percent())
        .override_by_name("change (points)", _signed("none"))
        .override_by_name("points per day", _signed("none"))
        .override_by_name("since first CT (points)", _signed("none"))
        .override_by_name("CT severity change", _signed("none"))
    )


def _risk_distribution() -> histogram.Panel:
    return (
        histogram.Panel()
        .id(2)
        .title("Risk distribution")
        .description("Predicted ventilation risk of every study scored in the time range.")
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(RISK_DISTRIBUTION_SQL, SqlFormatValues.TABLE))
        .span(8)
        .height(8)
        .bucket_size(5)
        .unit("percent")
        .min(0)
        .max(100)
        .legend(_legend())
    )


def _alerts_per_hour() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(3)
        .title("Alerts per hour by level")
        .description("Alerts raised per clock hour, from the reporting store.")
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(ALERTS_PER_HOUR_SQL, SqlFormatValues.TIME_SERIES))
        .span(8)
        .height(8)
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builder.StackingConfig().mode(StackingMode.NORMAL))
        .unit("short")
        .decimals(0)
        .legend(_legend())
    )


def _dead_letters() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(4)
        .title("Dead letters per hour by reason")
        .description(
            "Messages sent to a dead-letter topic over the last hour, by stage and reason code "
            "(worker metric ctriage_dead_letters_total)."
        )
        .datasource(PROMETHEUS_DATASOURCE)
        .with_target(prometheus_expr(DEAD_LETTERS_PER_HOUR, "{{stage}}: {{reason}}", "A"))
        .span(8)
        .height(8)
        .unit("short")
        .legend(_legend())
    )


def _end_to_end_latency() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(5)
        .title("End-to-end latency p50 / p95")
        .description("Seconds from a CT event's publication to its risk record.")
        .datasource(PROMETHEUS_DATASOURCE)
        .with_target(prometheus_expr(END_TO_END_QUANTILE.format(q="0.5"), "p50", "A"))
        .with_target(prometheus_expr(END_TO_END_QUANTILE.format(q="0.95"), "p95", "B"))
        .span(12)
        .height(8)
        .unit("s")
        .legend(_legend())
    )


def _stage_latency() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(6)
        .title("Stage latency p95")
        .description("95th percentile of the time a study spends in each stage.")
        .datasource(PROMETHEUS_DATASOURCE)
        .with_target(prometheus_expr(STAGE_P95, "{{stage}}", "A"))
        .span(12)
        .height(8)
        .unit("s")
        .legend(_legend())
    )


def build_ed_triage() -> dict[str, Any]:
    """The dashboard's JSON model (what Grafana's ``/api/dashboards/db`` takes as ``dashboard``)."""
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Emergency-department view of the ctriage pipeline. In the demo every figure comes "
            "from a synthetic cohort: it shows the plumbing, not clinical validity."
        )
        .tags(["ctriage", "triage"])
        .time("now-24h", "now")
        .refresh("1m")
        .variables(list(datasource_variables()))
        .with_panel(_alerts_table())
        .with_panel(_worsening_table())
        .with_panel(_follow_up_table())
        .with_panel(_risk_distribution())
        .with_panel(_alerts_per_hour())
        .with_panel(_dead_letters())
        .with_panel(_end_to_end_latency())
        .with_panel(_stage_latency())
    )
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return model
