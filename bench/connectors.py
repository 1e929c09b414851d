"""Connector benchmark: memory and incremental transfer of the Salesforce and HubSpot syncs.

Proves the connectors' "memory stays flat" requirement and measures what a second,
incremental sync transfers, side by side in one run (see bench/README.md and
docs/performance.md). For each connector (``--connector`` picks one):

* an emulated source -- the HTTPS emulators of the tests (tests/emulator.py,
  tests/connectors/salesforce_api.py, tests/connectors/hubspot_api.py), served from a
  thread of this process -- with ``--records`` (N) records of the main object
  (Salesforce: Opportunity, each with two OpportunityHistory rows; HubSpot: deals, each
  with a two-stage ``dealstage`` history and a company), next to the emulators' small
  sample data for the other objects;
* a first ``crmkpi sync`` of that source into a new SQLite store, then the same at 10 N;
* on the 10 N source, every 100th main record changed (new modified stamp and amount),
  and a second sync into the same store.

Every sync is a child process. Measured: wall time, peak RSS from ``wait4``'s rusage
(the sync process; API connectors fork no row worker), peak PSS of its process tree
(sampled), records read and rows written (``sync_runs``), and the HTTP requests the
emulator answered.

Target: peak RSS at 10 N <= 1.5x peak RSS at N (memory stays flat while the data grows
10x). Correctness: every first sync stores every main record, and the second changes
exactly the changed records' rows (exit status 1 otherwise, always). With ``--check`` a
missed target exits with status 1 too.

Usage: .venv/bin/python bench/connectors.py [--connector salesforce|hubspot] [--records 20000] [--check]
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The emulators are test helpers, not a package: they import each other as top-level modules
# (``from emulator import Request``), which works in the tests because pytest puts their folders
# on sys.path. Doing the same here serves the very emulators the tests check the connectors
# against, instead of a copy that could drift from them. HERE is for ``ingest.measure``.
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "connectors"), str(HERE)]

RSS_RATIO_MAX = 1.5  # peak RSS of the 10 N first sync / the N first sync
GROWTH = 10  # the large source has GROWTH x the records of the small one
CHANGE_EVERY = 100  # every 100th main record changes before the second sync (1%)
REST_ONLY = 10**12  # a bulk_threshold no count reaches
THRESHOLDS = {"default": None, "rest": REST_ONLY}  # --bulk-threshold names
TOKEN = "bench-access-token"
TOKEN_ENV = "CRMKPI_BENCH_TOKEN"


# --------------------------------------------------------------------------------------
# Measuring a sync without this process's memory in it.
#
# A child's ru_maxrss starts at the peak RSS of the process it was forked (or vforked)
# from: Linux records the old address space's high-water mark when the child execs. This
# process holds an emulated source of hundreds of MB, so a sync spawned from it would
# report at least that much. Each sync is therefore spawned by a small launcher (this
# script in ``_measure`` mode), whose own address space after exec is that of a fresh
# interpreter; it runs ingest.py's measure() and prints the result as JSON.


def launch(argv: list[str], log: Path, interval: float, env: dict[str, str]) -> dict:
    """Run argv through the launcher; returns measure()'s figures (seconds, maxrss_mb, pss_mb, ...)."""
    launcher = [sys.executable, str(Path(__file__).resolve()), "_measure", str(log), str(interval), "--", *argv]
    done = subprocess.run(launcher, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"sync failed:\n{done.stderr}{log.read_text() if log.exists() else ''}")
    return json.loads(done.stdout)


def measure_child(log: str, interval: str, argv: list[str]) -> None:
    from ingest import measure  # the same timing, PSS sampling and wait4 as the ingest benchmark

    result = measure(argv, Path(log), float(interval))
    result.pop("output")  # already in the log file
    print(json.dumps(result))


# --------------------------------------------------------------------------------------
# Sources: the tests' emulators, with the main object grown to the size asked for.


@dataclass
class Source:
    """One emulated API with its data, and what this benchmark does to it."""

    connector: str  # salesforce or hubspot
    records: int  # main-object records in the source
    app: Callable  # the emulator's app
    settings: dict[str, Any]  # connector settings besides host, token and CA
    change: Callable[[datetime], dict[str, float]]  # changes 1% of the main records; returns id -> new amount
    path_of: Callable[[list], str]  # which endpoints a sync's requests read the main object with
    url_hook: Callable[[str], None] = lambda url: None


def salesforce_source(records: int, seed: int, bulk_threshold: int | None, bulk_page_size: int | None) -> Source:
    from salesforce_api import build_org

    org = build_org(seed)  # users, accounts, contacts, leads, cases, stages, 80 opportunities
    ids = add_opportunities(org, records - len(org.records["Opportunity"]), random.Random(seed))

    def change(at: datetime) -> dict[str, float]:
        changed = {}
        for opp_id in ids[::CHANGE_EVERY]:
            amount = org.records["Opportunity"][opp_id]["Amount"] * 1.1 + 1
            org.touch("Opportunity", opp_id, at, Amount=amount)  # SystemModstamp moves to `at`
            changed[opp_id] = amount
        return changed

    def url_hook(url: str) -> None:
        org.url = url  # the org's instance URL is the emulator's

    org.tokens.add(TOKEN)
    settings = {"type": "salesforce", "bulk_poll_seconds": 0}
    if bulk_threshold is not None:
        settings["bulk_threshold"] = bulk_threshold
    if bulk_page_size is not None:
        settings["bulk_page_size"] = bulk_page_size
    return Source("salesforce", len(org.records["Opportunity"]), org, settings, change, salesforce_path,
                  url_hook)


def add_opportunities(org: Any, count: int, rnd: random.Random) -> list[str]:
    """``count`` opportunities, each with a two-row stage history; returns their ids.

    ``build_org(scale=...)`` grows every object together and gives each opportunity up to
    ten history rows, too slow to build and serve at 200,000 opportunities; this grows
    only the main object, with the org's own users, accounts and stages.
    """
    from salesforce_api import EPOCH, STAGES, sf_datetime

    users, accounts = list(org.records["User"]), list(org.records["Account"])
    ids = []
    for i in range(count):
        created = EPOCH + timedelta(minutes=i % 400_000, seconds=i % 60)
        moved = created + timedelta(days=1 + i % 40, hours=i % 9)
        stage, _, probability, closed, won = STAGES[1 + i % 5]
        close_date = (moved if closed else moved + timedelta(days=30)).date().isoformat()
        opp_id = org.new_id("Opportunity")
        amount = float(rnd.randint(1, 50) * 1000)
        for moment, name in ((created, "Prospecting"), (moved, stage)):
            org.insert("OpportunityHistory", OpportunityId=opp_id, StageName=name, Amount=amount,
                       CloseDate=(moment + timedelta(days=30)).date().isoformat(),
                       CreatedDate=sf_datetime(moment), SystemModstamp=sf_datetime(moment))
        org.insert("Opportunity", Id=opp_id, AccountId=rnd.choice(accounts), OwnerId=rnd.choice(users),
                   Name=f"Bench deal {i}", StageName=stage, Amount=amount, Probability=probability,
                   Type=rnd.choice(["New Business", "Existing Business", None]), LeadSource="Web",
                   IsClosed=closed, IsWon=won, CloseDate=close_date,
                   CreatedDate=sf_datetime(created), LastModifiedDate=sf_datetime(moved),
                   SystemModstamp=sf_datetime(moved))
        ids.append(opp_id)
    return ids


def salesforce_path(requests: list) -> str:
    """Which API read what: objects read by Bulk 2.0 jobs, the rest by REST queries."""
    bulk = sorted({json.loads(r.body)["query"].split(" FROM ")[1].split()[0]
                   for r in requests if r.method == "POST" and r.path.endswith("/jobs/query")})
    return f"Bulk 2.0 ({', '.join(bulk)}) + REST" if bulk else "REST"


def indexed_portal() -> Any:
    """An empty hubspot_api.Portal whose id-ordered record lists are cached, list pages found by bisection.

    Portal sorts every record of a type on each request and scans them for the ``after``
    id: right for the tests' dozens of records, but at 200,000 deals those scans, not
    crmkpi, would be what the benchmark times. The answers stay the same records in the
    same order with the same paging. Call ``reindex()`` after adding records.
    """
    from hubspot_api import Portal

    class IndexedPortal(Portal):
        PAGE_MAX = 100  # the largest list page Portal._list serves

        def __init__(self) -> None:
            super().__init__()
            self._index: dict[tuple[str, bool], tuple[list[int], list]] = {}
            self._after = threading.local()  # the list request being answered, per server thread

        def _sorted(self, kind: str, archived: bool) -> list:
            key = (kind, archived)
            if key not in self._index:
                records = super()._sorted(kind, archived)
                self._index[key] = ([int(r.id) for r in records], records)
            ids, records = self._index[key]
            after = getattr(self._after, "value", None)
            if after is None:  # a search: it filters everything itself
                return records
            # _list keeps the records from `after` on and serves the first `limit` (<= 100) of
            # them; one more tells it whether there is a next page.
            start = bisect.bisect_left(ids, after)
            return records[start:start + self.PAGE_MAX + 1]

        def _list(self, kind: str, request: Any) -> Any:
            self._after.value = int(request.arg("after") or 0)
            try:
                return super()._list(kind, request)
            finally:
                self._after.value = None

        def reindex(self) -> None:
            self._index.clear()

    return IndexedPortal()


def hubspot_source(records: int, seed: int) -> Source:
    from hubspot_api import add_deals, sample_portal

    portal = indexed_portal()
    vars(portal).update(vars(sample_portal()))  # owners, pipelines, companies, contacts, 30 deals, tickets
    first_id = 1000  # above the sample's ids
    added = records - len(portal.objects["deals"])
    add_deals(portal, added, first_id=first_id)  # open deals, each with a two-stage history and a company
    portal.reindex()
    portal.tokens.add(TOKEN)
    bulk_ids = [str(n) for n in range(first_id, first_id + added)]

    def change(at: datetime) -> dict[str, float]:
        changed = {}
        for deal_id in bulk_ids[::CHANGE_EVERY]:
            amount = float(portal.objects["deals"][deal_id].properties["amount"]) * 1.1 + 1
            portal.update("deals", deal_id, at, amount=str(amount))  # hs_lastmodifieddate moves to `at`
            changed[deal_id] = amount
        return changed

    # The connector's default budgets (9 and 4 requests per second) model HubSpot's limits; at
    # 8,000 requests per sync they would make this a benchmark of the sleep. Same as the tests.
    settings = {"type": "hubspot", "requests_per_second": 10_000, "search_requests_per_second": 10_000}
    return Source("hubspot", len(portal.objects["deals"]), portal.app, settings, change, hubspot_path)


def hubspot_path(requests: list) -> str:
    """The endpoints the deals were read with: list pages on a backfill, search (+ batch read) after."""
    ends = {"deals": "list", "search": "search", "read": "batch read"}  # last part of the path
    used = {ends.get(r.path.rsplit("/", 1)[1]) for r in requests
            if r.path.startswith("/crm/v3/objects/deals") and r.arg("archived", "").lower() != "true"}
    return " + ".join(k for k in ("list", "search", "batch read") if k in used)


# --------------------------------------------------------------------------------------
# One sync


@dataclass
class Run:
    label: str
    variant: str  # the connector, and for salesforce which bulk_threshold
    records: int  # main records in the source
    seconds: float
    maxrss_mb: float
    pss_mb: float | None
    requests: int
    read: int  # records read, every stream
    written: int  # rows written, every stream
    main_read: int
    main_written: int
    path: str
    stall: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def write_config(work: Path, name: str, store: Path, url: str, ca: Path, settings: dict[str, Any]) -> Path:
    """The config a user would write, pointed at the emulator (JSON is YAML)."""
    block = {**settings, "access_token": "${" + TOKEN_ENV + "}", "start_date": "all", "ca_bundle": str(ca),
             "backoff": 0}
    block["instance_url" if settings["type"] == "salesforce" else "host"] = url
    config = work / f"{name}.yaml"
    config.write_text(json.dumps({"store": f"sqlite:///{store}", "connectors": {"bench": block}}, indent=1))
    return config


def child_env(connector: str, ca: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CRMKPI_PREFETCH", "CRMKPI_CONFIG")}
    # Only this connector's plugin: the sync must not depend on what else is installed. The CA
    # variables are set for the child, because the machine's own point at another bundle.
    env.update({"CRMKPI_LOAD_PLUGINS": connector, TOKEN_ENV: TOKEN, "REQUESTS_CA_BUNDLE": str(ca),
                "SSL_CERT_FILE": str(ca)})
    return env


def last_run(store: Path) -> dict[str, Any]:
    """The latest sync_runs row: totals and per-stream details."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        status, read, written, error, details = conn.execute(
            "SELECT status, rows_read, rows_written, error, details FROM sync_runs ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    if status != "success":
        raise SystemExit(f"sync_runs says {status}: {error}")
    return {"read": read, "written": written, "streams": json.loads(details or "{}")}


def sync(label: str, variant: str, source: Source, api: Any, store: Path, work: Path, ca: Path, crmkpi: str,
         interval: float) -> Run:
    config = write_config(work, label, store, api.url, ca, source.settings)
    seen = len(api.requests)
    figures = launch([crmkpi, "sync", "--config", str(config)], work / f"{label}.log", interval,
                     child_env(source.connector, ca))
    requests = api.requests[seen:]
    totals = last_run(store)
    main = [s for s in totals["streams"].values() if s.get("table") == "deals"][0]
    run = Run(label, variant, source.records, figures["seconds"], figures["maxrss_mb"],
              figures["pss_mb"], len(requests), totals["read"], totals["written"], main["read"], main["written"],
              source.path_of(requests), figures["stall"])
    print(f"  {label:<34} {run.seconds:7.1f} s  maxRSS {run.maxrss_mb:5.0f} MB  PSS {_mb(run.pss_mb)} MB  "
          f"{run.requests:6,} requests  {run.read:8,} read  {run.written:8,} written  [{run.path}]", flush=True)
    return run


# --------------------------------------------------------------------------------------
# Correctness of the second sync: exactly the changed records' rows differ.


def deal_rows(store: Path) -> dict[str, tuple]:
    """Every deals row without synced_at (which a rewrite would change without a value changing)."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        cursor = conn.execute("SELECT * FROM deals")
        names = [d[0] for d in cursor.description]
        keep = [i for i, n in enumerate(names) if n != "synced_at"]
        amount = names.index("amount")
        return {row[names.index("id")]: (row[amount], tuple(row[i] for i in keep)) for row in cursor}
    finally:
        conn.close()


def count_deals(store: Path) -> int:
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM deals").fetchone()[0]
    finally:
        conn.close()


def compare(before: dict[str, tuple], after: dict[str, tuple], changed: dict[str, float]) -> list[str]:
    problems = []
    differing = {i for i in after if before.get(i) != after[i]}
    if len(after) != len(before):
        problems.append(f"deals: {len(before):,} rows before, {len(after):,} after")
    if differing != set(changed):
        unexpected, missed = sorted(differing - set(changed)), sorted(set(changed) - differing)
        problems.append(f"{len(differing):,} deals rows changed, {len(changed):,} records changed; "
                        f"unexpected {unexpected[:3]}, missed {missed[:3]}")
    wrong = [i for i in differing & set(changed) if abs(after[i][0] - changed[i]) > 1e-6]
    if wrong:
        problems.append(f"{len(wrong)} changed deals hold a wrong amount, e.g. {wrong[:3]}")
    return problems


# --------------------------------------------------------------------------------------
# One connector: N, 10 N, then 1% changed at 10 N


def bench_connector(make: Callable[[int], Source], variant: str, records: int, work: Path, ca_obj: Any, ca: Path,
                    crmkpi: str, interval: float, tag: str = "") -> tuple[list[Run], list[str]]:
    from emulator import Emulator

    runs, problems = [], []
    for size in (records, records * GROWTH):
        started = time.perf_counter()
        source = make(size)
        print(f"{variant}: {source.records:,} main records built in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        store = work / f"{source.connector}{tag}-{size}.db"
        for path in (store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
            path.unlink(missing_ok=True)  # a new store: this is a first sync, also when --work is reused
        with Emulator(source.app, tls=ca_obj) as api:
            source.url_hook(api.url)
            first = sync(f"{source.connector}{tag}-{size}-first", variant, source, api, store, work, ca, crmkpi,
                         interval)
            runs.append(first)
            stored = count_deals(store)
            if first.main_read != source.records or stored != source.records:
                problems.append(f"{variant}: the first sync of {source.records:,} records read {first.main_read:,}, "
                                f"the store holds {stored:,} deals")
            if size == records:
                continue
            before = deal_rows(store)
            # Inside the second sync's window: after the first sync's start less the lookback (10
            # minutes), and before the second sync's start floored to the second.
            changed = source.change(datetime.now(UTC) - timedelta(seconds=1))
            run = sync(f"{source.connector}{tag}-{size}-second", variant, source, api, store, work, ca, crmkpi,
                       interval)
            run.extra["changed"] = len(changed)
            runs.append(run)
            found = compare(before, deal_rows(store), changed)
            if run.written != len(changed):
                found.append(f"the second sync wrote {run.written:,} rows, {len(changed):,} records changed")
            problems += [f"{variant}: {p}" for p in found]
            print(f"  1% changed: {len(changed):,} records; rows differing afterwards: "
                  f"{'as expected' if not found else '; '.join(found)}", flush=True)
        del source, api  # the N source is freed before the 10 N one is built
    return runs, problems


# --------------------------------------------------------------------------------------
# Report


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def report(groups: list[list[Run]], load: tuple[str, str]) -> tuple[str, list[tuple[str, bool | None, str]]]:
    """The Markdown table, and (target, passed or None when there is no target, measured) per line."""
    lines = [
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs; "
        f"load average before {load[0]}, after {load[1]}",
        "",
        "| connector | sync | main records | API path | HTTP requests | records read | rows written | s "
        "| s per 1,000 read | peak RSS MB (wait4) | peak PSS, process tree MB | CPU stall |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    checks = []
    for small, large, second in groups:
        for run, what in ((small, "first (new store)"), (large, "first (new store)"),
                          (second, f"second, {second.extra['changed']:,} changed")):
            lines.append(f"| {run.variant} | {what} | {run.records:,} | {run.path} | {run.requests:,} | {run.read:,} | "
                         f"{run.written:,} | {run.seconds:.1f} | {run.seconds / max(run.read, 1) * 1000:.3f} | "
                         f"{run.maxrss_mb:.0f} | {_mb(run.pss_mb)} | {_pct(run.stall)} |")
        name = small.variant
        ratio = large.maxrss_mb / small.maxrss_mb
        checks.append((f"{name}: peak RSS at {large.records:,} / at {small.records:,} records "
                       f"<= {RSS_RATIO_MAX}x while the data grows {GROWTH}x", ratio <= RSS_RATIO_MAX,
                       f"{large.maxrss_mb:.0f} MB / {small.maxrss_mb:.0f} MB = {ratio:.2f}x"))
        checks.append((f"{name}: second sync after 1% changed vs first sync at {large.records:,} (no target)", None,
                       f"requests {second.requests:,} / {large.requests:,} = {second.requests / large.requests:.3f}x, "
                       f"records read {second.read:,} / {large.read:,} = {second.read / large.read:.3f}x, "
                       f"time {second.seconds:.1f} s / {large.seconds:.1f} s = {second.seconds / large.seconds:.2f}x"))
    return "\n".join(lines), checks


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connector", choices=("salesforce", "hubspot", "both"), default="both",
                        help="which connector (default both)")
    parser.add_argument("--records", type=int, default=20_000,
                        help="main records (opportunities, deals) in the small source; the large one has 10x "
                        "(default 20,000)")
    parser.add_argument("--bulk-threshold", default="default,rest",
                        help="salesforce bulk_threshold, or several comma-separated, each a full set of runs: "
                        "'default' leaves the connector's (10,000: Bulk 2.0 for the opportunities), 'rest' never "
                        "uses Bulk, or a number (default: default,rest)")
    parser.add_argument("--bulk-page-size", type=int, help="salesforce bulk_page_size (default: the connector's, "
                        "50,000)")
    parser.add_argument("--seed", type=int, default=7, help="emulator data seed (default 7)")
    parser.add_argument("--interval", type=float, default=0.05, help="PSS sampling period in s (default 0.05)")
    parser.add_argument("--work", type=Path, help="folder for stores, configs and logs (default: a temporary "
                        "folder, removed at the end)")
    parser.add_argument("--crmkpi", default=str(Path(sys.executable).with_name("crmkpi")),
                        help="the crmkpi command (default: next to this Python)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.records < 200:
        parser.error("--records must be at least 200")
    try:
        thresholds = [THRESHOLDS.get(t.strip(), t.strip()) for t in args.bulk_threshold.split(",")]
        thresholds = [t if t is None else int(t) for t in thresholds]
    except ValueError:
        parser.error(f"--bulk-threshold: not default, rest or a number: {args.bulk_threshold}")

    work = (args.work or Path(tempfile.mkdtemp(prefix="crmkpi-bench-connectors-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, thresholds, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, thresholds: list[int | None], work: Path) -> int:
    import trustme
    from emulator import write_ca_bundle

    ca_obj = trustme.CA()
    ca = write_ca_bundle(ca_obj, work)
    load_before = f"{os.getloadavg()[0]:.2f}"
    groups, problems = [], []
    if args.connector in ("salesforce", "both"):
        for threshold in thresholds:
            tag = {None: "", REST_ONLY: "-rest"}.get(threshold, f"-bulk{threshold}")
            variant = {None: "salesforce, bulk_threshold default", REST_ONLY: "salesforce, REST only"}.get(
                threshold, f"salesforce, bulk_threshold {threshold}")
            make = functools.partial(salesforce_source, seed=args.seed, bulk_threshold=threshold,
                                     bulk_page_size=args.bulk_page_size)
            runs, found = bench_connector(make, variant, args.records, work, ca_obj, ca, args.crmkpi, args.interval,
                                          tag)
            groups.append(runs)
            problems += found
    if args.connector in ("hubspot", "both"):
        make = functools.partial(hubspot_source, seed=args.seed)
        runs, found = bench_connector(make, "hubspot", args.records, work, ca_obj, ca, args.crmkpi, args.interval)
        groups.append(runs)
        problems += found
    load_after = f"{os.getloadavg()[0]:.2f}"

    table, checks = report(groups, (load_before, load_after))
    print("\n" + table + "\n")
    for target, ok, measured in checks:
        print(f"{'INFO' if ok is None else 'PASS' if ok else 'FAIL'}  {target}: {measured}")
    print(f"{'PASS' if not problems else 'FAIL'}  correctness: every first sync stored every main record, and "
          f"the second changed exactly the changed records' rows"
          + ("" if not problems else ":\n  " + "\n  ".join(problems)))
    if problems:
        return 1
    return 1 if args.check and any(ok is False for _, ok, _ in checks) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        measure_child(sys.argv[2], sys.argv[3], sys.argv[5:])
    else:
        sys.exit(main())
