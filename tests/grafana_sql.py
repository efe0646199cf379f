"""Dashboard SQL run on the real PostgreSQL store the way Grafana's datasource sends it.

Grafana cannot be installed here; its PostgreSQL macros are expanded as its datasource writes
them (``$__timeFilter`` a BETWEEN on the time range, ``$__timeGroupAlias`` an hourly floor),
template variables replaced, and the text run without bind parameters.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Engine


def grafana_expand(sql: str, start: datetime, end: datetime, **variables: str) -> str:
    """``sql`` for the time range ``start``..``end`` and ``$name`` variables (all must be set)."""
    since, until = (f"'{t.isoformat()}'" for t in (start, end))
    sql = re.sub(r"\$__timeFilter\(([\w.]+)\)", rf"\1 BETWEEN {since} AND {until}", sql)
    sql = re.sub(
        r"\$__timeGroupAlias\(([\w.]+)\s*,\s*'1h'\s*,\s*0\)",
        r'floor(extract(epoch from \1)/3600)*3600 AS "time"',
        sql,
    )
    sql = sql.replace("$__timeFrom()", since).replace("$__timeTo()", until)
    for name, value in variables.items():
        sql = re.sub(rf"\${name}\b", value, sql)
    assert "$" not in sql, sql
    return sql


def query(engine: Engine, sql: str) -> list[dict[str, Any]]:
    """Run SQL as Grafana does: as text, no bind parameters (so ``%`` in an alias is literal)."""
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor(row_factory=dict_row)  # type: ignore[union-attr]
        cursor.execute(sql)
        return list(cursor.fetchall())


def panel_sql(board: dict[str, Any], title: str, ref: str = "A") -> str:
    """The raw SQL of one panel's target (by panel title and target refId)."""
    (sql,) = [t["rawSql"] for p in board["panels"] if p["title"] == title
              for t in p["targets"] if t["refId"] == ref]  # fmt: skip
    return str(sql)
