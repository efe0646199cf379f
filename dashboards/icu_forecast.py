"""The "ctriage — ICU forecast" dashboard for bed managers: beds and ventilators, per unit.

Every panel queries the ``forecasts`` table of the reporting store (:mod:`dashboards.store`)
through ``$store``; the sink writes one row per forecast day and resource (``icu_beds`` or
``ventilators``; NULL in rows older than the ventilators means ICU beds), with the census at
issue time in ``occupancy_now``. ``$hospital`` and ``$unit`` pick one census (a unit, or
:data:`HOSPITAL_ICU` for a hospital-level ICU, stored with a NULL unit). Occupancy history is the
census recorded at each issue; the forecast is the latest issue's days. Times are clinical time
(the replayed demo lives in 2020). SQL is PostgreSQL that SQLite also runs (the unit tests).
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableHide,
    VariableRefresh,
    VariableSort,
)

from dashboards.datasources import (
    STORE_DATASOURCE,
    SqlFormatValues,
    datasource_variables,
    store_sql,
)

UID = "ctriage-icu-forecast"
TITLE = "ctriage — ICU forecast"
#: ``$unit`` value of a hospital's ICU without units (its rows have a NULL unit).
HOSPITAL_ICU = "(hospital ICU)"
BEDS = "icu_beds"
VENTILATORS = "ventilators"

HOSPITAL_VARIABLE_SQL = "SELECT DISTINCT hospital FROM forecasts ORDER BY 1"
UNIT_VARIABLE_SQL = f"""\
SELECT DISTINCT COALESCE(unit, '{HOSPITAL_ICU}') FROM forecasts
WHERE hospital = '$hospital' ORDER BY 1"""

_UNIT = f"hospital = '$hospital' AND COALESCE(unit, '{HOSPITAL_ICU}') = '$unit'"


def _scope(resource: str) -> str:
    return f"{_UNIT} AND COALESCE(resource, '{BEDS}') = '{resource}'"


def _latest(resource: str) -> str:
    return f"issued_at = (SELECT max(issued_at) FROM forecasts WHERE {_scope(resource)})"


def history_sql(resource: str) -> str:
    """The census at each forecast issue in the time range (occupied beds / ventilators)."""
    return f"""\
SELECT issued_at AS time, max(occupancy_now) AS "in use"
FROM forecasts
WHERE {_scope(resource)} AND $__timeFilter(issued_at)
GROUP BY issued_at
ORDER BY 1"""


def forecast_sql(resource: str) -> str:
    """The latest issue's days: median and the 80% / 95% prediction intervals."""
    return f"""\
SELECT
  day AS time,
  median AS "forecast median",
  lower80 AS "80% low",
  upper80 AS "80% high",
  lower95 AS "95% low",
  upper95 AS "95% high"
FROM forecasts
WHERE {_scope(resource)} AND {_latest(resource)}
ORDER BY 1"""


def capacity_sql(resource: str) -> str:
    """Capacity (staffed beds / ventilators) over the history and the forecast days."""
    return f"""\
SELECT time, max(capacity) AS "capacity"
FROM (
  SELECT issued_at AS time, capacity FROM forecasts
  WHERE {_scope(resource)} AND $__timeFilter(issued_at)
  UNION ALL
  SELECT day AS time, capacity FROM forecasts
  WHERE {_scope(resource)} AND {_latest(resource)}
) AS both_sides
GROUP BY time
ORDER BY 1"""


def now_sql(resource: str, label: str) -> str:
    """Census and capacity at the latest issue."""
    return f"""\
SELECT max(occupancy_now) AS "{label}", max(capacity) AS "capacity"
FROM forecasts
WHERE {_scope(resource)} AND {_latest(resource)}"""


def breach_sql(resource: str, label: str) -> str:
    """P(over capacity on some day of the horizon) at the latest issue."""
    return f"""\
SELECT max(p_breach) AS "{label}"
FROM forecasts
WHERE {_scope(resource)} AND {_latest(resource)}"""


LAST_UPDATED_SQL = f"""\
SELECT max(issued_at) AS "last forecast issued"
FROM forecasts
WHERE {_UNIT}"""

UNITS_SQL = f"""\
SELECT
  COALESCE(f.unit, '{HOSPITAL_ICU}') AS "unit",
  COALESCE(f.resource, '{BEDS}') AS "resource",
  max(f.occupancy_now) AS "in use now",
  max(f.capacity) AS "capacity",
  max(f.upper80) AS "80% high (horizon max)",
  max(f.p_breach) AS "P(breach)",
  max(f.issued_at) AS "issued"
FROM forecasts AS f
JOIN (
  SELECT hospital, COALESCE(unit, '') AS u, COALESCE(resource, '{BEDS}') AS r,
         max(issued_at) AS latest
  FROM forecasts
  WHERE hospital = '$hospital'
  GROUP BY hospital, COALESCE(unit, ''), COALESCE(resource, '{BEDS}')
) AS l
  ON f.hospital = l.hospital AND COALESCE(f.unit, '') = l.u
  AND COALESCE(f.resource, '{BEDS}') = l.r AND f.issued_at = l.latest
GROUP BY COALESCE(f.unit, '{HOSPITAL_ICU}'), COALESCE(f.resource, '{BEDS}')
ORDER BY "P(breach)" DESC"""

#: Breach-probability colours; the worker alerts from ``capacity_breach_probability`` (0.2).
BREACH_STEPS = [Threshold(None, "green"), Threshold(0.2, "orange"), Threshold(0.5, "red")]


def _variables() -> list[Any]:
    hospital = (
        dashboard_builder.QueryVariable("hospital")
        .label("Hospital")
        .description("Hospital of the census (the forecasts' hospital column).")
        .datasource(STORE_DATASOURCE)
        .query(HOSPITAL_VARIABLE_SQL)
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .hide(VariableHide.DONT_HIDE)
    )
    unit = (
        dashboard_builder.QueryVariable("unit")
        .label("ICU unit")
        .description(f"ICU unit of the hospital; {HOSPITAL_ICU} when it reports no units.")
        .datasource(STORE_DATASOURCE)
        .query(UNIT_VARIABLE_SQL)
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .hide(VariableHide.DONT_HIDE)
    )
    return [*datasource_variables(), hospital, unit]


def _fixed(colour: str) -> DynamicConfigValue:
    return DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})


def _band(upper: str, lower: str, colour: str, opacity: int) -> list[tuple[str, list[Any]]]:
    """Shade between two interval bounds (Grafana's fill-below-to), no lines of their own."""
    return [
        (upper, [_fixed(colour), DynamicConfigValue(id_val="custom.fillBelowTo", value=lower),
                 DynamicConfigValue(id_val="custom.fillOpacity", value=opacity),
                 DynamicConfigValue(id_val="custom.lineWidth", value=0)]),
        (lower, [_fixed(colour), DynamicConfigValue(id_val="custom.lineWidth", value=0)]),
    ]  # fmt: skip


def _forecast_panel(panel_id: int, resource: str, title: str, what: str) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(
            f"{what}: recorded at each forecast issue (history), then the latest forecast's "
            "median with its 80% and 95% prediction intervals, against capacity. Clinical time."
        )
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(history_sql(resource), SqlFormatValues.TIME_SERIES, "A"))
        .with_target(store_sql(forecast_sql(resource), SqlFormatValues.TIME_SERIES, "B"))
        .with_target(store_sql(capacity_sql(resource), SqlFormatValues.TIME_SERIES, "C"))
        .span(24)
        .height(10)
        .draw_style(GraphDrawStyle.LINE)
        .line_width(2)
        .unit("short")
        .decimals(0)
        .min(0)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    overrides = [
        ("in use", [_fixed("text")]),
        ("forecast median", [_fixed("blue")]),
        *_band("95% high", "95% low", "blue", 10),
        *_band("80% high", "80% low", "blue", 25),
        ("capacity", [_fixed("red"), DynamicConfigValue(
            id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]),
    ]  # fmt: skip
    for name, values in overrides:
        panel = panel.override_by_name(name, values)
    return panel


def _stat(panel_id: int, title: str, description: str, sqls: list[str]) -> stat.Panel:
    panel = (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(STORE_DATASOURCE)
        .span(6)
        .height(5)
        .graph_mode(BigValueGraphMode.NONE)
        .color_mode(BigValueColorMode.VALUE)
        .text_mode(BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    for ref_id, sql in zip("ABCD", sqls, strict=False):
        panel = panel.with_target(store_sql(sql, SqlFormatValues.TABLE, ref_id))
    return panel


def _breach() -> stat.Panel:
    return (
        _stat(
            3,
            "P(over capacity within the horizon)",
            "Probability that occupancy exceeds capacity on at least one day of the forecast "
            "horizon (simulated paths), latest issue. The worker raises a breach alert from "
            "CTRIAGE_WORKER__CAPACITY_BREACH_PROBABILITY (0.2 by default).",
            [breach_sql(BEDS, "ICU beds"), breach_sql(VENTILATORS, "ventilators")],
        )
        .unit("percentunit")
        .decimals(0)
        .min(0)
        .max(1)
        .color_mode(BigValueColorMode.BACKGROUND)
        .thresholds(
            dashboard_builder.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(BREACH_STEPS)
        )
    )


def _last_updated() -> stat.Panel:
    return _stat(
        4,
        "Last forecast issued",
        "Clinical time of the latest forecast of this unit. Forecasts are recomputed on every "
        "census change and hourly (CTRIAGE_WORKER__CAPACITY_REFRESH_S) while the unit is live.",
        [LAST_UPDATED_SQL],
    ).reduce_options(
        common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/.*/")
    )


def _units_table() -> table.Panel:
    return (
        table.Panel()
        .id(7)
        .title("Units of $hospital: latest forecast")
        .description("Every ICU unit of the hospital, beds and ventilators, riskiest first.")
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(UNITS_SQL, SqlFormatValues.TABLE))
        .span(24)
        .height(8)
        .show_header(True)
        .override_by_name(
            "P(breach)",
            [
                DynamicConfigValue(id_val="unit", value="percentunit"),
                DynamicConfigValue(id_val="decimals", value=0),
                DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
                DynamicConfigValue(
                    id_val="thresholds",
                    value={"mode": "absolute", "steps": [s.to_json() for s in BREACH_STEPS]},
                ),
            ],
        )
    )


def build_icu_forecast() -> dict[str, Any]:
    """The dashboard's JSON model (what Grafana's ``/api/dashboards/db`` takes as ``dashboard``)."""
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid(UID)
        .description(
            "ICU beds and ventilators for bed managers: census, forecast with 80%/95% "
            "intervals, capacity and breach risk, per hospital and unit. In the demo every "
            "figure comes from a synthetic cohort: it shows the plumbing, not clinical validity."
        )
        .tags(["ctriage", "capacity"])
        .time("now-30d", "now+14d")
        .refresh("5m")
        .variables(_variables())
        .with_panel(
            _stat(
                1,
                "ICU beds now",
                "Occupied ICU beds and staffed beds at the latest forecast issue.",
                [now_sql(BEDS, "occupied")],
            )
        )
        .with_panel(
            _stat(
                2,
                "Ventilators now",
                "Patients on invasive mechanical ventilation and the unit's ventilators.",
                [now_sql(VENTILATORS, "in use")],
            )
        )
        .with_panel(_breach())
        .with_panel(_last_updated())
        .with_panel(_forecast_panel(5, BEDS, "ICU beds: occupancy and forecast", "Occupied beds"))
        .with_panel(
            _forecast_panel(
                6, VENTILATORS, "Ventilators: in use and forecast", "Ventilated patients"
            )
        )
        .with_panel(_units_table())
    )
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return model
