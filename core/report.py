"""Rendering metric results and explanations as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from typing import Any

from .engine import COMPARISONS, TITLES
from .metrics import Metric

#: The keys of a result as ``--format json`` prints it; comparisons and target only when asked for.
#: ``currency`` is the reporting currency of a currency value (else null); ``error`` says why a row
#: has no value when its metric failed; ``segment_labels`` shows each segment value as people know it
#: (a user's name, a stage's label; other values as they are).
PUBLIC = ("metric", "period", "period_start", "period_end", "grain", "segment", "segment_labels", "value", "unit",
          "currency", "numerator", "denominator", "note", "error", "params", "data_freshness", "run_id")
#: Units a value and a change are shown with (after the number); ratios are shown as % and changes in points.
SUFFIXES = {"days": " days", "hours": " hours", "months": " months", "points": " points"}


#: Control characters (C0, DEL, C1) shown as escapes in terminal text: a CRM value holding
#: ``ESC ]0;...`` must not retitle, recolour or rewrite the user's terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}


def printable(text: str) -> str:
    """``text`` for a terminal: control characters (line breaks too) written as ``\\x1b``."""
    return text.translate(_CONTROLS)


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


CSV_COLUMNS = ("metric", "period", "period_start", "period_end", "segment", "segment_labels", "value", "unit",
               "currency", "numerator", "denominator", "note", "error")


def _csv(rows: list[dict]) -> str:
    flat = []
    for row in rows:
        item = {k: row[k] for k in CSV_COLUMNS}
        for key in ("segment", "segment_labels"):
            item[key] = json.dumps(row[key]) if row[key] else ""
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
    shared = shared_labels(rows)
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
        unit, currency = row["unit"], row["currency"]
        cells = [title(metrics[row["metric"]], row["params"]), row["period"]]
        if segmented:
            cells.append(segment_text(row["segment"], row["segment_labels"], shared))
        cells += [format_value(row["value"], unit, currency), _number(row["numerator"]),
                  _number(row["denominator"])]
        cells += [format_change(row.get(kind), unit, currency) for kind in compared]
        if targeted:
            cells.append(_target(row.get("target"), unit, currency))
        cells.append("; ".join(filter(None, [row["note"], row["error"] and f"ERROR: {row['error']}"])))
        table.add_row(*map(printable, cells))
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(table)
    return console.file.getvalue().rstrip("\n")


def title(metric: Metric, params: dict[str, Any]) -> str:
    """The metric's title, with the statistic when it is not the mean: ``Sales cycle length (median)``."""
    stat = params.get("stat", "mean")
    return metric.title if stat == "mean" else f"{metric.title} ({stat})"


def shared_labels(rows: list[dict]) -> set[tuple[str, Any]]:
    """(dimension, label) pairs that stand for more than one value: shown with their values too."""
    values: dict[tuple[str, Any], set] = {}
    for row in rows:
        for dimension, value in row["segment"].items():
            values.setdefault((dimension, row["segment_labels"].get(dimension, value)), set()).add(value)
    return {key for key, found in values.items() if len(found) > 1}


def segment_text(segment: dict[str, Any], labels: dict[str, Any], shared: set[tuple[str, Any]] = frozenset()) -> str:
    """``owner=Ann Lee, region=EMEA``: labels instead of ids, ``(none)`` for rows without a value."""
    parts = []
    for dimension, value in segment.items():
        label = labels.get(dimension, value)
        text = "(none)" if value is None else str(label)
        if value is not None and (label != value and (dimension, label) in shared):
            text += f" ({value})"
        parts.append(f"{dimension}={text}")
    return ", ".join(parts)


def format_change(comparison: dict | None, unit: str, currency: str | None) -> str:
    """A comparison's change: ``+2.3 pts (+5.1%)`` for a ratio, ``-1,200 USD (-3.0%)``; ``—`` without one."""
    if not comparison or comparison["change"] is None:
        return "—"
    change = comparison["change"]
    if unit == "ratio":
        absolute = f"{change * 100:+.1f} pts"
    else:
        absolute = f"{change:+,.2f}".rstrip("0").rstrip(".") + _suffix(unit, currency)
    relative = f" ({comparison['change_pct']:+.1%})" if comparison["change_pct"] is not None else ""
    return absolute + relative


def _target(target: dict | None, unit: str, currency: str | None) -> str:
    if not target:
        return ""
    status = (target["status"] or "—").replace("_", " ")
    return f"{status} ({format_value(target['value'], unit, currency)})"


def format_value(value: float | None, unit: str, currency: str | None = None) -> str:
    """The value with its unit: ``30.0%``, ``1,234.57 USD``, ``34.6 days``, ``12.0 hours``, ``42.0 points``."""
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "currency":
        return f"{value:,.2f}" + _suffix(unit, currency)
    if unit in ("days", "hours", "months", "points", "score"):
        return f"{value:,.1f}" + _suffix(unit, currency)
    return f"{value:,.0f}"


def _suffix(unit: str, currency: str | None) -> str:
    return f" {currency}" if unit == "currency" and currency else SUFFIXES.get(unit, "")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def render_explanation(explanation: dict, metric: Metric) -> str:
    value = explanation["value"]
    segment = segment_text(explanation["segment"], explanation["segment_labels"]) or "whole company"
    currency = explanation["currency"]
    lines = [printable(line) for line in (
        f"{metric.id}: {title(metric, explanation['params'])}, {explanation['period']} ({segment})", "",
        f"Formula: {metric.formula}",
        f"Params: {', '.join(f'{k}={v}' for k, v in explanation['params'].items()) or 'none'}",
        f"Value: {format_value(value.value, metric.unit, currency)}" + _sides(value)
        + (f"  ({value.note})" if value.note else ""))]
    for item in explanation["inputs"]:
        lines += ["", f"{item['label']}: {item['rows']:,} {item['table']} rows"
                  + (f", the first {len(item['first'])}:" if item["first"] else "")]
        if item["first"]:
            lines.append(_grid(item["columns"], item["first"]))
    return "\n".join(lines)


def _sides(value) -> str:
    """`` = numerator / denominator`` of a ratio or mean; `` (of N)`` of a statistic without a numerator."""
    if value.denominator is None:
        return ""
    if value.numerator is None:
        return f" (of {_number(value.denominator)})"
    return f" = {_number(value.numerator)} / {_number(value.denominator)}"


def _grid(columns: list[str], rows: list[tuple]) -> str:
    from rich.console import Console
    from rich.table import Table

    shown = [i for i, _ in enumerate(columns) if any(r[i] is not None for r in rows)]
    table = Table(show_edge=False)
    for i in shown:
        table.add_column(printable(columns[i]), no_wrap=True)
    for row in rows:
        table.add_row(*("" if row[i] is None else _cell(row[i]) for i in shown))
    console = Console(file=io.StringIO(), width=1000, force_terminal=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def _cell(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else printable(str(value))
