"""Ingest benchmark: ``crmkpi sync`` of a large deals.csv against a plain stdlib loader.

Measures, side by side in one run (see bench/README.md and docs/performance.md):

* baseline -- a stdlib-only script (this file, ``_baseline`` mode) in its own process:
  ``csv.reader`` over deals.csv, minimal value conversion, one
  ``INSERT ... ON CONFLICT (source, id) DO UPDATE`` ``executemany`` in one transaction,
  into a database whose schema crmkpi created beforehand (untimed);
* baseline, primary key only -- the same loader into the same schema without its secondary
  indexes (``ix_deals_created_at``, ``ix_deals_closed_at``): the floor of a plain load (no target);
* crmkpi first sync -- ``crmkpi sync --config <tmp>`` into a store file that does not
  exist yet (so the timing includes creating the schema);
* crmkpi second sync -- the same command again, file unchanged;
* crmkpi 1% changed -- a copy of the store after the second sync, synced from a copy of
  the folder in which 1% of the rows have a new ``updated_at`` and ``amount`` (no target).

Every run is a child process timed by wall clock from spawn to exit; while it runs, a
sampler sums the PSS of the child and all its descendants (``/proc/<pid>/smaps_rollup``)
every ``--interval`` seconds. The largest single-process max RSS of the tree comes from
``wait4``'s rusage. Variants repeat ``--repeat`` times, the baseline and the crmkpi
group alternating which goes first; medians are reported.

Targets (issue acceptance): first sync <= 1.5x baseline; peak memory < 150 MB;
second sync <= 0.6x first. With ``--check`` a missed target exits with status 1.

Usage: .venv/bin/python bench/ingest.py [--rows 1000000] [--repeat 3] [--data DIR] [--check]
Only the standard library and crmkpi's own code are used.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONNECTOR = "bench"
TIME_RATIO_MAX = 1.5  # crmkpi first sync / baseline
RESYNC_RATIO_MAX = 0.6  # second sync / first sync
MEMORY_MAX_MB = 150.0  # peak PSS of a crmkpi sync's process tree
CHANGED_UPDATED_AT = "2026-01-15T12:00:00Z"  # later than anything sample_data writes
DEAL_HEADER = ("id", "created_at", "updated_at", "is_deleted", "account_id", "owner_id", "name", "pipeline",
               "stage", "amount", "currency", "deal_type", "lead_source", "is_closed", "is_won", "closed_at",
               "forecast_category")


# --------------------------------------------------------------------------------------
# The baseline: what a plain stdlib script does. Runs in a child process; imports only
# the standard library (crmkpi is imported lazily by the harness functions below).


def run_baseline(csv_path: str, db_path: str, extra: str) -> None:
    from datetime import UTC, datetime

    source = CONNECTOR
    synced_at = datetime.now(UTC).isoformat()
    columns = ["source", "synced_at", *DEAL_HEADER[:-1], "extra"]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("source", "id"))
    sql = (f"INSERT INTO deals ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
           f"ON CONFLICT (source, id) DO UPDATE SET {updates}")
    dumps = json.dumps

    started = time.perf_counter()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader))
        if header != DEAL_HEADER:
            raise SystemExit(f"unexpected header: {header}")

        def rows():
            for (id_, created_at, updated_at, is_deleted, account_id, owner_id, name, pipeline, stage, amount,
                 currency, deal_type, lead_source, is_closed, is_won, closed_at, forecast) in reader:
                yield (source, synced_at, id_, created_at or None, updated_at or None, is_deleted == "true",
                       account_id or None, owner_id or None, name or None, pipeline or None, stage or None,
                       float(amount) if amount else None, currency or None, deal_type or None,
                       lead_source or None, is_closed == "true", is_won == "true", closed_at or None,
                       # the custom column, as JSON in `extra` like crmkpi stores it
                       '{"forecast_category":%s}' % dumps(forecast) if forecast and extra == "json" else None)

        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("BEGIN")
        cursor = conn.executemany(sql, rows())
        written = cursor.rowcount
        conn.execute("COMMIT")
        conn.close()
    print(json.dumps({"written": written, "inner_seconds": time.perf_counter() - started}))


# --------------------------------------------------------------------------------------
# Measuring a child process: wall time, peak PSS of its process tree, wait4 max RSS.


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as handle:
                    todo.extend(int(c) for c in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Polls the summed PSS of a process and its descendants; keeps the peak."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self.peak_procs = 0
        self.max_procs = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = _tree(self.pid)
            total = sum(_pss_kib(p) for p in pids)
            self.samples += 1
            self.max_procs = max(self.max_procs, len(pids))
            if total > self.peak_kib:
                self.peak_kib, self.peak_procs = total, len(pids)
            self.done.wait(self.interval)


def cpu_stall_us() -> int | None:
    """Microseconds some runnable task waited for a CPU, machine-wide (Linux PSI), or None."""
    try:
        with open("/proc/pressure/cpu") as handle:
            return int(handle.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def measure(argv: list[str], log: Path, interval: float, env: dict | None = None) -> dict:
    """Run argv to completion; returns seconds, peak tree PSS (MB), largest max RSS (MB), output."""
    stall_before = cpu_stall_us()
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(proc.pid, interval) if interval > 0 else None
        if sampler:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    if sampler:
        sampler.done.set()
        sampler.join()
    stall_after = cpu_stall_us()
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{text}")
    return {
        "seconds": seconds,
        "pss_mb": sampler.peak_kib / 1024 if sampler else None,
        "procs": sampler.max_procs if sampler else None,
        "samples": sampler.samples if sampler else 0,
        "maxrss_mb": usage.ru_maxrss / 1024,  # KiB on Linux; max over the child and its waited-for children
        "output": text,
        # share of the run's wall time in which some task on the machine waited for a CPU
        "stall": None if stall_before is None else (stall_after - stall_before) / 1e6 / seconds,
    }


# --------------------------------------------------------------------------------------
# Data


def count_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def prepare_data(folder: Path, rows: int, seed: int) -> None:
    """A folder holding only deals.csv with ``rows`` rows, written by crmkpi's sample-data generator."""
    target = folder / "deals.csv"
    if target.is_file():
        with open(target, newline="", encoding="utf-8") as handle:
            header = tuple(next(csv.reader(handle)))
        if header != DEAL_HEADER:
            raise SystemExit(f"{target}: header is not crmkpi.sample_data.HEADERS['deals']: {header}")
        found = count_rows(target)
        if found != rows:
            raise SystemExit(f"{target}: has {found} rows, --rows is {rows}")
        others = sorted(p.name for p in folder.iterdir() if p.name != "deals.csv")
        if others:
            raise SystemExit(f"{folder}: must hold only deals.csv (found {', '.join(others)})")
        print(f"reusing {target} ({rows:,} rows)", flush=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=folder.parent))
    print(f"generating {rows:,} deals (seed {seed}) ...", flush=True)
    started = time.perf_counter()
    # In a child process, like everything that imports crmkpi: this process stays small, because
    # a child's ru_maxrss starts at the size of the process that forked it.
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "_generate", str(staging), str(seed), str(rows)],
                   check=True)
    (staging / "deals.csv").rename(target)
    shutil.rmtree(staging)
    print(f"  wrote {target} ({target.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s",
          flush=True)


def make_changed_copy(src: Path, dst_folder: Path) -> dict[str, tuple[str, str]]:
    """Copy deals.csv with every 100th row given a new updated_at and amount; returns id -> (updated_at, amount)."""
    dst_folder.mkdir(parents=True, exist_ok=True)
    changed = {}
    with open(src, newline="", encoding="utf-8") as inp, \
            open(dst_folder / "deals.csv", "w", newline="", encoding="utf-8") as out:
        reader, writer = csv.reader(inp), csv.writer(out, lineterminator="\n")
        writer.writerow(next(reader))
        updated, amount = DEAL_HEADER.index("updated_at"), DEAL_HEADER.index("amount")
        for n, row in enumerate(reader):
            if n % 100 == 0:
                row[updated] = CHANGED_UPDATED_AT
                row[amount] = f"{float(row[amount] or 0) * 1.1 + 1:.2f}"
                changed[row[0]] = (row[updated], row[amount])
            writer.writerow(row)
    return changed


def write_config(path: Path, store: Path, folder: Path) -> None:
    path.write_text(
        "# written by bench/ingest.py\n"
        f"store: sqlite:///{store}\n"
        "reporting: {currency: USD, timezone: UTC}\n"
        f"connectors:\n  {CONNECTOR}:\n    type: files\n    path: {folder}\n",
        encoding="utf-8",
    )


def generate_deals(staging: str, seed: str, rows: str) -> None:
    from crmkpi.sample_data import HEADERS, generate

    if tuple(HEADERS["deals"]) != DEAL_HEADER:
        raise SystemExit("crmkpi.sample_data.HEADERS['deals'] changed; update DEAL_HEADER in bench/ingest.py")
    # generate() writes every table; the benchmark keeps deals.csv and drops the rest.
    counts = generate(Path(staging), seed=int(seed), deals=int(rows))
    assert counts["deals"] == int(rows), counts


def create_schema(path: str) -> None:
    from crmkpi.store import Store

    Store(f"sqlite:///{path}").engine.dispose()


def fresh_baseline_db(path: Path, secondary_indexes: bool = True) -> None:
    """An empty database with crmkpi's schema (its alembic migration, as a sync would create it), with or
    without the deals table's secondary indexes."""
    for p in _db_files(path):
        p.unlink(missing_ok=True)
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "_schema", str(path)], check=True)
    if not secondary_indexes:
        conn = sqlite3.connect(path)
        for _, name, unique, origin, *_ in conn.execute("PRAGMA index_list(deals)").fetchall():
            if not unique and origin == "c":
                conn.execute(f"DROP INDEX {name}")
        conn.close()


def _db_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def copy_db(src: Path, dst: Path) -> None:
    for s, d in zip(_db_files(src), _db_files(dst)):
        d.unlink(missing_ok=True)
        if s.exists():
            shutil.copyfile(s, d)


def written_of(output: str) -> str:
    """The sync's own report line for the deals stream."""
    for line in output.splitlines():
        if line.startswith(f"{CONNECTOR}/deals.csv:"):
            return line.split(":", 1)[1].strip()
    return "?"


# --------------------------------------------------------------------------------------
# Correctness


_COMPARED = ("created_at", "updated_at", "closed_at")
_PLAIN = ("is_deleted", "account_id", "owner_id", "name", "pipeline", "stage", "amount", "currency", "deal_type",
          "lead_source", "is_closed", "is_won")


def _differences(crmkpi_db: Path, baseline_db: Path) -> tuple[int, int, list[tuple]]:
    """Row counts of both stores and the rows that differ (timestamps compared as instants)."""
    conn = sqlite3.connect(f"file:{crmkpi_db}?mode=ro", uri=True)
    conn.execute("ATTACH ? AS b", (f"file:{baseline_db}?mode=ro",))
    n_crmkpi = conn.execute("SELECT count(*) FROM main.deals").fetchone()[0]
    n_base = conn.execute("SELECT count(*) FROM b.deals").fetchone()[0]
    cond = " OR ".join(
        [f"c.{col} IS NOT x.{col}" for col in _PLAIN]
        + [f"datetime(c.{col}) IS NOT datetime(x.{col})" for col in _COMPARED]
        + ["json_extract(c.extra, '$.forecast_category') IS NOT json_extract(x.extra, '$.forecast_category')",
           "c.source IS NOT x.source", "c.synced_at IS NULL"]
    )
    rows = conn.execute(
        "SELECT c.id, c.updated_at, c.amount FROM main.deals c LEFT JOIN b.deals x "
        f"ON x.source = c.source AND x.id = c.id WHERE x.id IS NULL OR {cond}"
    ).fetchall()
    conn.close()
    return n_crmkpi, n_base, rows


def spot_values(db: Path, ids: list[str]) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = [conn.execute("SELECT id, created_at, updated_at, amount, is_won, closed_at, extra FROM deals "
                        "WHERE id = ?", (i,)).fetchone() for i in ids]
    conn.close()
    return out


def verify(rows: int, baseline_db: Path, first_db: Path, changed_db: Path | None,
           changed: dict[str, tuple[str, str]], results: dict) -> list[str]:
    problems = []
    n_c, n_b, diff = _differences(first_db, baseline_db)
    print(f"  rows: baseline {n_b:,}, crmkpi {n_c:,}; rows differing after the first sync: {len(diff)}")
    if n_b != rows or n_c != rows:
        problems.append(f"row counts: baseline {n_b}, crmkpi {n_c}, expected {rows}")
    if diff:
        problems.append(f"{len(diff)} rows differ between the baseline and crmkpi, e.g. {diff[:3]}")
    if changed_db is not None:
        n_c2, _, diff2 = _differences(changed_db, baseline_db)
        wrong = [(i, u, a) for i, u, a in diff2
                 if i not in changed or u[:19] != changed[i][0][:10] + " " + changed[i][0][11:19]
                 or abs(a - float(changed[i][1])) > 1e-9]
        print(f"  after the 1% change: crmkpi {n_c2:,} rows, {len(diff2):,} differ from the baseline "
              f"({len(changed):,} changed in the file), {len(wrong)} unexpected")
        if n_c2 != rows or len(diff2) != len(changed) or wrong:
            problems.append(f"1% changed sync: {len(diff2)} rows differ (expected {len(changed)}), "
                            f"{len(wrong)} unexpected, e.g. {wrong[:3]}")
    for key, expected in (("first", f"{rows} read, {rows} written"),
                          ("second", "unchanged since the last sync")):
        lines = {written_of(r["output"]) for r in results[key]}
        if lines != {expected}:
            problems.append(f"{key} sync reported {lines}, expected {expected!r}")
    if changed_db is not None:
        lines = {written_of(r["output"]) for r in results["changed"]}
        if lines != {f"{rows} read, {len(changed)} written"}:
            problems.append(f"1% changed sync reported {lines}, expected {rows} read, {len(changed)} written")
    sample = ["D" + str(n).zfill(6) for n in (1, 2, rows // 2, rows - 1, rows)]
    for b, c in zip(spot_values(baseline_db, sample), spot_values(first_db, sample)):
        print(f"  spot {b[0]}: baseline {b[1:]}\n  {'':>{len(b[0]) + 5}} crmkpi   {c[1:]}")
    return problems


# --------------------------------------------------------------------------------------
# Report


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt_runs(runs: list[dict]) -> str:
    return ", ".join(f"{r['seconds']:.2f}" for r in runs)


def _peak(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return max(values) if values else None


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def report(results: dict, args, sqlite_version: str) -> tuple[str, list[tuple[str, bool, str]]]:
    base = _median([r["seconds"] for r in results["baseline"]])
    first = _median([r["seconds"] for r in results["first"]])
    second = _median([r["seconds"] for r in results["second"]])
    floor = _median([r["seconds"] for r in results["baseline_pk"]])
    rows = [
        ("baseline: stdlib csv + sqlite3 executemany upsert", "baseline", "1.00 (reference)"),
        ("baseline, primary key only", "baseline_pk", f"{floor / base:.2f} × baseline"),
        ("crmkpi sync, first (new store)", "first", f"{first / base:.2f} × baseline, {first / floor:.2f} × "
                                                    "primary key only"),
        ("crmkpi sync, second (file unchanged)", "second", f"{second / first:.2f} × first"),
    ]
    if results["changed"]:
        changed = _median([r["seconds"] for r in results["changed"]])
        rows.append(("crmkpi sync, 1% of rows changed", "changed", f"{changed / first:.2f} × first"))
    lines = [
        f"{args.rows:,} rows, {len(results['baseline'])} runs per variant, medians; "
        f"Python {sys.version.split()[0]}, SQLite {sqlite_version}, {os.cpu_count()} CPUs",
        "",
        "| variant | median s | runs s | ratio | peak PSS, process tree MB | max RSS, largest process MB "
        "| CPU stall, runs |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for label, key, ratio in rows:
        runs = results[key]
        lines.append(f"| {label} | {_median([r['seconds'] for r in runs]):.2f} | {_fmt_runs(runs)} | {ratio} | "
                     f"{_mb(_peak(runs, 'pss_mb'))} | {_mb(_peak(runs, 'maxrss_mb'))} | "
                     f"{', '.join(_pct(r['stall']) for r in runs)} |")
    crmkpi_runs = results["first"] + results["second"] + results["changed"]
    peak = _peak(crmkpi_runs, "pss_mb")
    checks = [
        (f"first sync <= {TIME_RATIO_MAX}× baseline", first / base <= TIME_RATIO_MAX,
         f"{first:.2f} s / {base:.2f} s = {first / base:.2f}"),
        (f"second sync <= {RESYNC_RATIO_MAX}× first", second / first <= RESYNC_RATIO_MAX,
         f"{second:.2f} s / {first:.2f} s = {second / first:.2f}"),
        (f"peak memory < {MEMORY_MAX_MB:.0f} MB", peak is not None and peak < MEMORY_MAX_MB,
         f"peak PSS of a crmkpi sync's process tree {_mb(peak)} MB (largest single process max RSS "
         f"{_mb(_peak(crmkpi_runs, 'maxrss_mb'))} MB)"),
    ]
    return "\n".join(lines), checks


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="deals in deals.csv (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--data", type=Path, help="folder with only deals.csv of --rows rows; generated there "
                        "if it has no deals.csv (default: a temporary folder)")
    parser.add_argument("--work", type=Path, help="folder for stores and configs (default: a temporary folder, "
                        "removed at the end)")
    parser.add_argument("--seed", type=int, default=42, help="sample-data seed (default 42)")
    parser.add_argument("--no-changed", action="store_true", help="skip the 1%%-changed re-sync")
    parser.add_argument("--baseline-extra", choices=("json", "drop"), default="json",
                        help="json (default): the baseline stores the custom column forecast_category as JSON in "
                        "extra, as crmkpi does; drop: it leaves it out")
    parser.add_argument("--interval", type=float, default=0.02, help="memory sampling period in s; 0 = no sampler")
    parser.add_argument("--crmkpi", default=str(Path(sys.executable).with_name("crmkpi")),
                        help="the crmkpi command (default: next to this Python)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be positive")
    if not Path(args.crmkpi).exists() and not shutil.which(args.crmkpi):
        parser.error(f"crmkpi command not found: {args.crmkpi}")

    work = args.work or Path(tempfile.mkdtemp(prefix="crmkpi-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    try:
        return _run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(args, work: Path) -> int:
    data = (args.data or work / "data").resolve()
    prepare_data(data, args.rows, args.seed)
    csv_path = data / "deals.csv"
    changed: dict[str, tuple[str, str]] = {}
    changed_folder = work / "data-changed"
    if not args.no_changed:
        changed = make_changed_copy(csv_path, changed_folder)
        print(f"1% changed copy: {len(changed):,} rows with a new updated_at and amount", flush=True)
    count_rows(csv_path)  # read once so that every variant starts with the file in the page cache

    results: dict[str, list[dict]] = {"baseline": [], "baseline_pk": [], "first": [], "second": [], "changed": []}
    load_before = os.getloadavg()
    baseline_cmd = [sys.executable, str(Path(__file__).resolve()), "_baseline", str(csv_path)]
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CRMKPI_PREFETCH"}
    last = {}
    for n in range(args.repeat):
        base_db, store = work / f"baseline-{n}.db", work / f"crmkpi-{n}.db"
        changed_store = work / f"crmkpi-changed-{n}.db"

        def baseline() -> None:
            for key, indexes in (("baseline", True), ("baseline_pk", False)):
                db = base_db if indexes else work / f"baseline-pk-{n}.db"
                fresh_baseline_db(db, indexes)
                r = measure(baseline_cmd + [str(db), args.baseline_extra], logs / f"{key}-{n}.log", args.interval)
                results[key].append(r)
                print(f"[{n}] {key:<21} {r['seconds']:7.2f} s  PSS {_mb(r['pss_mb'])} MB  "
                      f"maxRSS {_mb(r['maxrss_mb'])} MB  CPU stall {_pct(r['stall'])}", flush=True)
                if not indexes:
                    for p in _db_files(db):
                        p.unlink(missing_ok=True)

        def crmkpi() -> None:
            for p in _db_files(store):
                p.unlink(missing_ok=True)
            config = work / f"sync-{n}.yaml"
            write_config(config, store, data)
            for key in ("first", "second"):
                r = measure([args.crmkpi, "sync", "--config", str(config)], logs / f"{key}-{n}.log",
                            args.interval, env)
                results[key].append(r)
                print(f"[{n}] crmkpi sync {key:<10} {r['seconds']:7.2f} s  PSS {_mb(r['pss_mb'])} MB  "
                      f"maxRSS {_mb(r['maxrss_mb'])} MB  procs {r['procs']}  CPU stall {_pct(r['stall'])}  "
                      f"({written_of(r['output'])})",
                      flush=True)
            if not args.no_changed:
                copy_db(store, changed_store)  # untimed: the 1% sync goes into a copy, the store keeps the file
                config = work / f"sync-changed-{n}.yaml"
                write_config(config, changed_store, changed_folder)
                r = measure([args.crmkpi, "sync", "--config", str(config)], logs / f"changed-{n}.log",
                            args.interval, env)
                results["changed"].append(r)
                print(f"[{n}] crmkpi sync 1% changed {r['seconds']:5.2f} s  PSS {_mb(r['pss_mb'])} MB  "
                      f"maxRSS {_mb(r['maxrss_mb'])} MB  CPU stall {_pct(r['stall'])}  ({written_of(r['output'])})",
                      flush=True)

        for step in ((baseline, crmkpi) if n % 2 == 0 else (crmkpi, baseline)):
            step()
        # keep only the last repeat's databases (for the correctness check)
        for old in last.values():
            for p in _db_files(old):
                p.unlink(missing_ok=True)
        last = {"baseline": base_db, "first": store, "changed": changed_store}

    harness_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load_after = os.getloadavg()
    print("verifying (last repeat's databases) ...", flush=True)
    problems = verify(args.rows, last["baseline"], last["first"],
                      None if args.no_changed else last["changed"], changed, results)

    table, checks = report(results, args, sqlite3.sqlite_version)
    print()
    print(table)
    print(f"\n(max RSS comes from wait4; a child's ru_maxrss starts at the size of the process that spawned it, "
          f"and this harness peaked at {harness_rss:.0f} MB)")
    print("load average (1, 5, 15 min) before the runs %.2f %.2f %.2f, after %.2f %.2f %.2f"
          % (*load_before, *load_after))
    print("CPU stall: share of a run's wall time in which some task on the machine waited for a CPU "
          "(/proc/pressure/cpu); crmkpi's two processes plus the sampler cause some on 2 CPUs, more means other load")
    print()
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    for problem in problems:
        print(f"FAIL  correctness: {problem}")
    if not problems:
        print("PASS  correctness: row counts, full-table comparison with the baseline, sync reports")
    if problems:
        return 1
    return 1 if args.check and not all(ok for _, ok, _ in checks) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        run_baseline(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "_generate":
        generate_deals(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "_schema":
        create_schema(sys.argv[2])
    else:
        sys.exit(main())
