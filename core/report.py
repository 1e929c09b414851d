"""Rendering metric results and explanations as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from typing import Any

from .engine import COMPARISONS
from .metrics import Metric

#: The keys of a result as ``--format json`` prints it; comparisons and target only when asked for.
PUBLIC = ("metric", "period", "period_start", "period_end", "grain", "segment", "value", "unit", "numerator",
          "denominator", "note", "params", "data_freshness", "run_id")
TITLES = {"previous": "previous period", "year_ago": "year ago"}


def render(results: list[dict], fmt: str, metrics: dict[str, Metric]) -> str:
    rows = [public(r) for r in results]
    if fmt == "json":
        return json.dumps(rows, indent=2, default=_json_default)
    if fmt == "csv":
        return _csv(rows)
    return _table(rows, metrics)


def public(result: dict) -> dict:
    row = {k: result[k] for k in PUBLIC}
    row.update({k: result[k] for k in (*COMPARISONS, "target") if result.get(k) is not None})
    return row


CSV_COLUMNS = ("metric", "period", "period_start", "period_end", "segment", "value", "unit", "numerator",
               "denominator", "note")


def _csv(rows: list[dict]) -> str:
    flat = []
    for row in rows:
        item = {k: row[k] for k in CSV_COLUMNS}
        item["segment"] = json.dumps(row["segment"]) if row["segment"] else ""
        for kind in COMPARISONS:
            for key, value in (row.get(kind) or {}).items():
                item[f"{kind}_{key}"] = value
        for key in ("value", "status"):
            if row.get("target"):
                item[f"target_{key}"] = row["target"][key]
        flat.append(item)
    fields = list(dict.fromkeys(k for item in flat for k in item))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _json_default(v) if isinstance(v, (date, datetime)) else v for k, v in item.items()}
                     for item in flat)
    return out.getvalue().rstrip("\n")


def _table(rows: list[dict], metrics: dict[str, Metric]) -> str:
    from rich.console import Console
    from rich.table import Table

    segmented = any(r["segment"] for r in rows)
    compared = [k for k in COMPARISONS if any(k in r for r in rows)]
    targeted = any("target" in r for r in rows)
    table = Table(show_edge=False)
    table.add_column("Metric")
    table.add_column("Period")
    if segmented:
        table.add_column("Segment")
    for column in ("Value", "Numerator", "Denominator"):
        table.add_column(column, justify="right")
    for kind in compared:
        table.add_column(f"vs {TITLES[kind]}", justify="right")
    if targeted:
        table.add_column("Target")
    table.add_column("Note")
    for row in rows:
        unit = row["unit"]
        cells = [metrics[row["metric"]].title, row["period"]]
        if segmented:
            cells.append(", ".join(f"{k}={'(none)' if v is None else v}" for k, v in row["segment"].items()))
        cells += [format_value(row["value"], unit), _number(row["numerator"]), _number(row["denominator"])]
        cells += [_change(row.get(kind), unit) for kind in compared]
        if targeted:
            cells.append(_target(row.get("target"), unit))
        cells.append(row["note"] or "")
        table.add_row(*cells)
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(table)
    return console.file.getvalue().rstrip("\n")


def _change(comparison: dict | None, unit: str) -> str:
    if not comparison or comparison["change"] is None:
        return "—"
    change = comparison["change"]
    absolute = f"{change * 100:+.1f} pts" if unit == "ratio" else f"{change:+,.2f}".rstrip("0").rstrip(".")
    relative = f" ({comparison['change_pct']:+.1%})" if comparison["change_pct"] is not None else ""
    return absolute + relative


def _target(target: dict | None, unit: str) -> str:
    if not target:
        return ""
    status = (target["status"] or "—").replace("_", " ")
    return f"{status} ({format_value(target['value'], unit)})"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "currency":
        return f"{value:,.2f}"
    return f"{value:,.1f}" if unit in ("days", "hours", "months", "points", "score") else f"{value:,.0f}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def render_explanation(explanation: dict, metric: Metric) -> str:
    value = explanation["value"]
    segment = ", ".join(f"{k}={'(none)' if v is None else v}" for k, v in explanation["segment"].items()) \
        or "whole company"
    lines = [f"{metric.id}: {metric.title}, {explanation['period']} ({segment})", "",
             f"Formula: {metric.formula}",
             f"Params: {', '.join(f'{k}={v}' for k, v in explanation['params'].items()) or 'none'}",
             f"Value: {format_value(value.value, metric.unit)}"
             + (f" = {_number(value.numerator)} / {_number(value.denominator)}" if value.denominator is not None
                else "") + (f"  ({value.note})" if value.note else "")]
    for item in explanation["inputs"]:
        lines += ["", f"{item['label']}: {item['rows']:,} {item['table']} rows"
                  + (f", the first {len(item['first'])}:" if item["first"] else "")]
        if item["first"]:
            lines.append(_grid(item["columns"], item["first"]))
    return "\n".join(lines)


def _grid(columns: list[str], rows: list[tuple]) -> str:
    from rich.console import Console
    from rich.table import Table

    shown = [i for i, _ in enumerate(columns) if any(r[i] is not None for r in rows)]
    table = Table(show_edge=False)
    for i in shown:
        table.add_column(columns[i], no_wrap=True)
    for row in rows:
        table.add_row(*("" if row[i] is None else _cell(row[i]) for i in shown))
    console = Console(file=io.StringIO(), width=1000, force_terminal=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def _cell(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else str(value)
