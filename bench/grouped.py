"""Grouped metrics: a monthly series by owner with both comparisons against one overall value.

Target (issue 11): at 100,000 deals, ``crmkpi run -m M --period 2025 --grain month --segment owner
--compare both`` (``--segment source`` for spend, which has no owner; ``connector`` for syncs) takes
at most 2x ``crmkpi run -m M --period 2025`` for each metric with a grouped compute; and the whole
catalog ``crmkpi run --period 2025 --grain month --segment team`` at most 3x ``crmkpi run --period
2025`` (measured unless ``--metric`` picks metrics). Both sides are measured in the same run, each
command as its own process (``--no-save``), ``--repeat`` times alternating which goes first; medians
are reported. With ``--per-cell``, the same series is also computed cell by cell in this process
(``run_metrics(..., grouped=False)``, the path every metric took before), for the speed-up; its
results must equal the grouped ones.

Set-up (untimed): the sample company at ``--deals`` (``crmkpi sample-data``), synced into a new
SQLite store, or the empty database ``--store`` names (or reused from ``--work``).

The whole catalog's row also gives each side's peak memory (the largest max RSS of its runs). At
1,000,000 deals, ``--catalog-only`` measures only that row (the per-metric targets are at 100,000).

Usage: .venv/bin/python bench/grouped.py [--deals 100000] [--repeat 3] [--per-cell] [--check] [--metric M ...]
       [--store postgresql://...] [--catalog-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CRMKPI = [sys.executable, "-m", "crmkpi.cli"]
RATIO_MAX = 2.0
SERIES = ("--grain", "month", "--compare", "both")
#: The series' segment: owner, else the first of the others that applies to the metric's first table.
DIMENSIONS = ("owner", "source", "connector")
#: The whole catalog (every metric, one process) by month and team, against the whole catalog for one period.
CATALOG_RATIO_MAX = 3.0
CATALOG_SERIES = ("--grain", "month", "--segment", "team")


def crmkpi(*args: str) -> tuple[float, float]:
    """Run ``crmkpi args``: its wall time in seconds and its peak memory (max RSS, MB); exits on a failure.
    Status 3 is a run whose every value was computed but some metrics' rows carry an error: the whole
    catalog split by team, where team does not apply to spend and syncs."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen([*CRMKPI, *args], stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 3):
            errors.seek(0)
            sys.exit(f"crmkpi {' '.join(args)} exited with status {code}:\n{errors.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def prepare(work: Path, deals: int, store: str | None) -> Path:
    config = work / "crmkpi.yaml"
    if config.exists():
        return config
    crmkpi("sample-data", "--out", str(work / "data"), "--deals", str(deals))
    store = store or f"sqlite:///{work / 'store.db'}"
    config.write_text(f"store: {store}\nconnectors:\n  crm:\n    type: files\n    path: {work / 'data'}\n")
    crmkpi("sync", "--config", str(config))
    return config


def grouped_metrics() -> dict[str, str]:
    """Each metric with a grouped compute, and the dimension its series is split by."""
    from crmkpi.plugins import load_registry

    return {m.id: dimension_of(m) for m in sorted(load_registry().metrics.values(), key=lambda m: m.id) if m.grouped}


def dimension_of(metric) -> str:
    from crmkpi import segments
    from crmkpi.errors import MetricError
    from crmkpi.metrics import TABLES

    table = TABLES[metric.tables[0]]
    for dimension in DIMENSIONS:
        try:
            segments.expression(table, dimension)
            return dimension
        except MetricError:
            continue
    sys.exit(f"{metric.id}: none of {', '.join(DIMENSIONS)} applies to {table.name}")


def per_cell(config: Path, metric_id: str, dimension: str) -> tuple[float, float, bool]:
    """Seconds to compute the series in this process cell by cell, then grouped, and whether they are equal."""
    from crmkpi.cli import App, settings_of
    from crmkpi.engine import COMPARISONS, Run, run_metrics, same_results

    app = App(debug=False)
    loaded = app.config(str(config))
    settings = settings_of(loaded)
    run = Run([app.registry.metrics[metric_id]], settings.calendar.parse("2025", today=settings.today), {},
              "month", (dimension,), COMPARISONS)
    store = app.store(loaded)
    started = time.perf_counter()
    slow = run_metrics(store.engine, run, settings, persist=False, grouped=False)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    fast = run_metrics(store.engine, run, settings, persist=False, grouped=True)
    grouped = time.perf_counter() - started
    volatile = ("run_id", "computed_at")
    kept = [[{k: v for k, v in row.items() if k not in volatile} for row in rows] for rows in (slow, fast)]
    same = len(slow) == len(fast) and all(map(same_results, *kept))
    store.engine.dispose()
    return seconds, grouped, same


def median_pair(config: Path, repeat: int, first: tuple, second: tuple) -> tuple[float, float, float, float]:
    """Median seconds of ``crmkpi run`` with each of two argument lists, alternating which goes first, and
    each one's highest peak memory (MB)."""
    runs: tuple[list, list] = ([], [])
    for n in range(repeat):
        order = [(runs[0], first), (runs[1], second)]
        for found, extra in (order if n % 2 == 0 else order[::-1]):
            found.append(crmkpi("run", "--config", str(config), "--period", "2025", "--no-save", *extra))
    return (statistics.median(t for t, _ in runs[0]), statistics.median(t for t, _ in runs[1]),
            max(m for _, m in runs[0]), max(m for _, m in runs[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, help="keep (and reuse) the data and the store here")
    parser.add_argument("--per-cell", action="store_true", help="also time the series cell by cell")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--store", help="store URL to sync into (an empty PostgreSQL database, say); default: "
                                            "SQLite in the work folder")
    parser.add_argument("--metric", action="append", help="only this grouped metric (repeatable; default: all)")
    parser.add_argument("--catalog-only", action="store_true", help="only the whole catalog (at 1,000,000 deals)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="crmkpi-grouped-"))
    work.mkdir(parents=True, exist_ok=True)
    measured = grouped_metrics()
    unknown = sorted(set(args.metric or ()) - set(measured))
    if unknown:  # before the set-up, which takes minutes
        sys.exit(f"no grouped metric {unknown[0]!r} (grouped: {', '.join(measured)})")
    load_before = os.getloadavg()
    config = prepare(work, args.deals, args.store)
    rows, ok = [], True
    for metric_id in () if args.catalog_only else args.metric or measured:
        dimension = measured[metric_id]
        print(f"measuring {metric_id} by {dimension}", file=sys.stderr, flush=True)
        one, many, _, _ = median_pair(config, args.repeat, ("-m", metric_id),
                                      ("-m", metric_id, *SERIES, "--segment", dimension))
        slow = per_cell(config, metric_id, dimension) if args.per_cell else None
        rows.append((f"{metric_id} | {dimension}", one, many, slow))
        ok &= many / one <= RATIO_MAX and (slow is None or slow[2])
    if not args.metric:
        print("measuring the whole catalog", file=sys.stderr, flush=True)
    catalog = median_pair(config, args.repeat, (), CATALOG_SERIES) if not args.metric else None
    if catalog:
        ok &= catalog[1] / catalog[0] <= CATALOG_RATIO_MAX
    loads = [" ".join(f"{x:.2f}" for x in load) for load in (load_before, os.getloadavg())]
    print(f"\n{args.deals:,} deals on {(args.store or 'sqlite').split(':')[0]}, {args.repeat} runs each, medians; "
          f"load average {loads[0]} before, "
          f"{loads[1]} after\n")
    print("| metric | by | one value s | month × segment × both comparisons s | ratio | result |"
          + (" in process: cell by cell s | grouped s | speed-up | same results |" if args.per_cell else ""))
    print("|---|---|---:|---:|---:|---|" + ("---:|---:|---:|---|" if args.per_cell else ""))
    for metric_id, one, many, slow in rows:
        verdict = "PASS" if many / one <= RATIO_MAX else "FAIL"
        line = f"| {metric_id} | {one:.2f} | {many:.2f} | {many / one:.2f} | {verdict} |"
        if slow:
            line += f" {slow[0]:.1f} | {slow[1]:.2f} | {slow[0] / slow[1]:.0f}× | {'yes' if slow[2] else 'NO'} |"
        print(line)
    if catalog:
        one, many, one_mb, many_mb = catalog
        print(f"\nWhole catalog: one period {one:.2f} s (peak {one_mb:.0f} MB), month × team {many:.2f} s "
              f"(peak {many_mb:.0f} MB), ratio {many / one:.2f} (limit {CATALOG_RATIO_MAX:g}): "
              f"{'PASS' if many / one <= CATALOG_RATIO_MAX else 'FAIL'}")
    sys.exit(0 if ok or not args.check else 1)


if __name__ == "__main__":
    main()
