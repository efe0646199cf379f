"""How panels reach their data: datasource variables, references and query builders.

Every dashboard picks its datasources through two template variables, so one JSON model works in
any Grafana whatever the datasources' uids are there:

- ``$store``: the reporting store (PostgreSQL, the tables of :mod:`dashboards.store`);
- ``$prometheus``: the Prometheus that scrapes the workers' ``/metrics``.

grafana-foundation-sdk has no query builder for PostgreSQL, so :class:`SqlDataquery` (the model) and
:class:`SqlQuery` (its builder) implement the SDK's ``Dataquery`` / ``Builder`` protocols for the
JSON that Grafana's SQL datasources save in code mode.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus as prometheus_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableHide
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

#: Plugin id of Grafana's PostgreSQL datasource since Grafana 10.2.3 (``postgres`` before, kept
#: there as an alias). The datasource variable lists the datasources of exactly this type.
POSTGRES_PLUGIN_ID = "grafana-postgresql-datasource"
PROMETHEUS_PLUGIN_ID = "prometheus"

STORE_VARIABLE = "store"
PROMETHEUS_VARIABLE = "prometheus"

STORE_DATASOURCE = DataSourceRef(type_val=POSTGRES_PLUGIN_ID, uid=f"${{{STORE_VARIABLE}}}")
PROMETHEUS_DATASOURCE = DataSourceRef(
    type_val=PROMETHEUS_PLUGIN_ID, uid=f"${{{PROMETHEUS_VARIABLE}}}"
)


class SqlFormatValues(StrEnum):
    """Shape Grafana gives a SQL result (closed list of the SQL datasources' formats)."""

    TABLE = "table"
    TIME_SERIES = "time_series"


class SqlDataquery(cogvariants.Dataquery):
    """A raw SQL query of Grafana's SQL datasources (PostgreSQL here), written in code mode."""

    def __init__(
        self,
        raw_sql: str = "",
        format_val: SqlFormatValues = SqlFormatValues.TABLE,
        ref_id: str = "",
        datasource: DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.raw_sql = raw_sql
        self.format_val = format_val
        self.ref_id = ref_id
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        """The target as Grafana saves it (raw SQL in code mode, kept as written)."""
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "rawSql": self.raw_sql,
            "rawQuery": True,
            "editorMode": "code",
            "format": self.format_val,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Load a target saved by :meth:`to_json` (or by Grafana's SQL query editor)."""
        datasource = data.get("datasource")
        return cls(
            raw_sql=data.get("rawSql", ""),
            format_val=SqlFormatValues(data.get("format", SqlFormatValues.TABLE)),
            ref_id=data.get("refId", ""),
            datasource=DataSourceRef.from_json(datasource) if datasource is not None else None,
            hide=data.get("hide"),
        )


class SqlQuery(cogbuilder.Builder[SqlDataquery]):
    """Builder of :class:`SqlDataquery`, in the style of the SDK's query builders."""

    def __init__(self) -> None:
        self._internal = SqlDataquery()

    def build(self) -> SqlDataquery:
        """The query model."""
        return self._internal

    def raw_sql(self, raw_sql: str) -> Self:
        """SQL text; Grafana expands macros such as ``$__timeFilter(column)`` before running it."""
        self._internal.raw_sql = raw_sql
        return self

    def format(self, format_val: SqlFormatValues) -> Self:
        """Table, or time series (needs a ``time`` column; a ``metric`` column names series)."""
        self._internal.format_val = format_val
        return self

    def ref_id(self, ref_id: str) -> Self:
        """Identifier of the query within its panel."""
        self._internal.ref_id = ref_id
        return self

    def datasource(self, datasource: DataSourceRef) -> Self:
        """Datasource the query runs on."""
        self._internal.datasource = datasource
        return self

    def hide(self, hide: bool) -> Self:
        """Run the query without showing its result."""
        self._internal.hide = hide
        return self


def sql_variant_config() -> cogruntime.DataqueryConfig:
    """Lets ``Dashboard.from_json`` load PostgreSQL targets as :class:`SqlDataquery`.

    Pass it to ``grafana_foundation_sdk.cog.runtime.register_dataquery_variant``; nothing registers
    it at import (no side effects at import).
    """
    return cogruntime.DataqueryConfig(
        identifier=POSTGRES_PLUGIN_ID, from_json_hook=SqlDataquery.from_json
    )


def store_sql(raw_sql: str, format_val: SqlFormatValues, ref_id: str = "A") -> SqlQuery:
    """A query on the reporting store through the ``$store`` variable."""
    return (
        SqlQuery().raw_sql(raw_sql).format(format_val).ref_id(ref_id).datasource(STORE_DATASOURCE)
    )


def prometheus_expr(expr: str, legend: str, ref_id: str) -> prometheus_builder.Dataquery:
    """A PromQL range query through the ``$prometheus`` variable."""
    return (
        prometheus_builder.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref_id)
        .range()
        .editor_mode(QueryEditorMode.CODE)
        .format(PromQueryFormat.TIME_SERIES)
        .datasource(PROMETHEUS_DATASOURCE)
    )


def datasource_variables() -> list[dashboard_builder.DatasourceVariable]:
    """The ``$store`` and ``$prometheus`` variables every dashboard declares."""
    return [
        dashboard_builder.DatasourceVariable(STORE_VARIABLE)
        .label("Reporting store")
        .description("PostgreSQL reporting store written by the ctriage sinks.")
        .type(POSTGRES_PLUGIN_ID)
        .hide(VariableHide.DONT_HIDE),
        dashboard_builder.DatasourceVariable(PROMETHEUS_VARIABLE)
        .label("Prometheus")
        .description("Prometheus scraping the ctriage workers' /metrics.")
        .type(PROMETHEUS_PLUGIN_ID)
        .hide(VariableHide.DONT_HIDE),
    ]
