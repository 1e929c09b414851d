"""Kill trials through the real CLI: files, Salesforce and HubSpot syncs and `crmkpi run`, on SQLite and
PostgreSQL, each killed with SIGKILL and SIGTERM at random moments (see kill_harness.py).

`make test` runs a few trials per case; `make reliability` sets CRMKPI_KILL_TRIALS for the long version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from conftest import ALL_BUILTINS
from crmkpi.models import ENTITIES
from crmkpi.store import Store
from emulator import Emulator, write_ca_bundle
from kill_harness import (CRMKPI, SIGNALS, Workload, postgres_reset, run_trials, seeded_random, sqlite_reset,
                          trials_per_case)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "connectors"))  # the API emulators' data
from hubspot_api import add_deals, sample_portal  # noqa: E402
from salesforce_api import build_org  # noqa: E402

#: Trials per case and signal in `make test` (16 cases: about a minute on two cores).
SHORT_TRIALS = 1
#: Sample company size: large enough that most kills land while rows are being written.
SAMPLE_DEALS = 1500
SF_TOKEN = "00D!kill-trial-token"
HUBSPOT_TOKEN = "pat-test-token"
#: Every table a sync writes (emptied between trials on PostgreSQL).
SYNC_TABLES = (*ENTITIES, "sync_state", "sync_runs", "metric_results")

pytestmark = pytest.mark.reliability


def environment(plugins: str, ca: Path | None = None, **secrets: str) -> dict[str, str]:
    env = {**os.environ, "CRMKPI_LOAD_PLUGINS": plugins, **secrets}
    if ca is not None:
        env.update(REQUESTS_CA_BUNDLE=str(ca), SSL_CERT_FILE=str(ca))
    return env


def write_config(folder: Path, store_url: str, connectors: dict) -> Path:
    config = folder / "crmkpi.yaml"
    config.write_text(yaml.safe_dump({"store": store_url, "connectors": connectors}), encoding="utf-8")
    return config


def sample_files(folder: Path) -> Path:
    data = folder / "data"
    subprocess.run([str(CRMKPI), "sample-data", "--out", str(data), "--deals", str(SAMPLE_DEALS)], check=True,
                   capture_output=True)
    return data


def sync_reset(folder: Path, store_url: str):
    """Emptying the store of a sync workload: a migrated empty copy (SQLite) or truncated tables."""
    if store_url.startswith("sqlite"):
        template = folder / "template.db"
        Store(f"sqlite:///{template}").engine.dispose()
        return sqlite_reset(Path(store_url.removeprefix("sqlite:///")), template)
    Store(store_url).engine.dispose()
    return postgres_reset(store_url, SYNC_TABLES)


def files_workload(folder: Path, store_url: str, stack: ExitStack, tls_ca) -> Workload:
    data = sample_files(folder)
    config = write_config(folder, store_url, {"crm": {"type": "files", "path": str(data)}})
    return Workload("files sync", store_url, config, ("sync", "--config", str(config)), environment("files"),
                    sync_reset(folder, store_url))


def salesforce_workload(folder: Path, store_url: str, stack: ExitStack, tls_ca) -> Workload:
    org = build_org()
    org.page_size = 10  # many pages, so a kill lands between committed checkpoints
    org.tokens.add(SF_TOKEN)
    api = stack.enter_context(Emulator(org, tls=tls_ca))
    org.url = api.url
    ca = write_ca_bundle(tls_ca, folder)
    config = write_config(folder, store_url, {"sf": {
        "type": "salesforce", "instance_url": api.url, "access_token": "${SF_ACCESS_TOKEN}", "start_date": "all",
        "ca_bundle": str(ca), "backoff": 0, "bulk_poll_seconds": 0}})
    return Workload("salesforce sync", store_url, config, ("sync", "--config", str(config)),
                    environment("salesforce", ca, SF_ACCESS_TOKEN=SF_TOKEN), sync_reset(folder, store_url))


def hubspot_workload(folder: Path, store_url: str, stack: ExitStack, tls_ca) -> Workload:
    portal = sample_portal()
    add_deals(portal, 300)
    api = stack.enter_context(Emulator(portal.app, tls=tls_ca))
    ca = write_ca_bundle(tls_ca, folder)
    config = write_config(folder, store_url, {"hub": {
        "type": "hubspot", "access_token": "${HUBSPOT_TOKEN}", "host": api.url, "ca_bundle": str(ca),
        "start_date": "all", "backoff": 0, "requests_per_second": 10_000, "search_requests_per_second": 10_000}})
    return Workload("hubspot sync", store_url, config, ("sync", "--config", str(config)),
                    environment("hubspot", ca, HUBSPOT_TOKEN=HUBSPOT_TOKEN), sync_reset(folder, store_url))


def run_workload(folder: Path, store_url: str, stack: ExitStack, tls_ca) -> Workload:
    """`crmkpi run` saving its results over a synced sample company; between trials only the results go."""
    data = sample_files(folder)
    env = environment(ALL_BUILTINS)
    synced = store_url
    if store_url.startswith("sqlite"):
        synced = f"sqlite:///{folder / 'template.db'}"
    load = write_config(folder, synced, {"crm": {"type": "files", "path": str(data)}})
    subprocess.run([str(CRMKPI), "sync", "--config", str(load)], env=env, check=True, capture_output=True)
    config = write_config(folder, store_url, {"crm": {"type": "files", "path": str(data)}})
    reset = (sqlite_reset(Path(store_url.removeprefix("sqlite:///")), folder / "template.db")
             if store_url.startswith("sqlite") else postgres_reset(store_url, ("metric_results",)))
    return Workload("crmkpi run", store_url, config,
                    ("run", "--config", str(config), "--period", "2025", "--grain", "quarter", "--format", "json"),
                    env, reset, compare="results")


WORKLOADS = {"files": files_workload, "salesforce": salesforce_workload, "hubspot": hubspot_workload,
             "run": run_workload}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("case", list(WORKLOADS))
def test_killed_commands_leave_no_process_no_running_run_and_an_intact_store(case: str, backend: str, tmp_path: Path,
                                                                            request, tls_ca):
    store_url = (f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite"
                 else request.getfixturevalue("postgres_url"))
    trials = trials_per_case(SHORT_TRIALS)
    rnd, seed = seeded_random(f"{case}-{backend}")
    with ExitStack() as stack:
        workload = WORKLOADS[case](tmp_path, store_url, stack, tls_ca)
        workload.name += f" on {backend}"
        outcome = run_trials(workload, trials, rnd, seed)
    assert sum(outcome.trials.values()) == trials * len(SIGNALS)
    assert not outcome.problems, f"seed {seed}: {outcome.summary()}\n" + "\n".join(outcome.problems[:10])
