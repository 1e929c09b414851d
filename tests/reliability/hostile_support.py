"""What the hostile-input property tests share: the stores they run on, the oracle of a CLI outcome
(example counts: :func:`conftest.property_settings`)."""

from __future__ import annotations

import gc
import os
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from crmkpi.cli import cli
from crmkpi.store import Store

from conftest import POSTGRES_ENV, property_settings, store_url_for  # noqa: F401 (re-exported)
from storecheck import all_rows, utc

@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """{kind: store URL}: SQLite always; PostgreSQL too (a database of its own, dropped at the end)
    when CRMKPI_TEST_POSTGRES_URL is set."""
    kinds = ["sqlite", "postgresql"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]
    folder = tmp_path_factory.mktemp("stores")
    with ExitStack() as stack:
        urls = {kind: stack.enter_context(store_url_for(kind, folder, request)) for kind in kinds}
        for url in urls.values():
            Store(url).engine.dispose()  # migrated: every example compares the tables before and after
        yield urls


def invoke(config: Path, command: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, [command, "--config", str(config), *args])
    gc.collect()  # the command's engine, and so its PostgreSQL connections: a run makes hundreds
    return result


def outcome(result: Result) -> tuple[int, str]:
    """(exit status, stderr) of a command, asserting that it is a success or a clean one-line error:
    never a traceback, never an exception the CLI did not expect."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"the command raised {result.exception!r}") from result.exception
    assert result.exit_code in (0, 1), (result.exit_code, result.output)
    if result.exit_code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert not lines[0].startswith("Error: unexpected "), lines[0]  # what the CLI says of a bug
    return result.exit_code, result.stderr


def same_text(text: str, urls: dict[str, str]) -> str:
    """Output with the store's URL and its folder left out, to compare the outcomes of two stores."""
    for url in urls.values():
        text = text.replace(url.replace("postgresql://", "postgresql+psycopg://"), "STORE").replace(url, "STORE")
    return re.sub(r"(sqlite|postgresql\+psycopg)://\S+", "STORE", text)


def rows_by_key(url: str, table: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every row of a table by (source, id), as comparable values (``synced_at`` left out: it differs by design)."""
    return {(r["source"], r["id"]): {k: utc(v) for k, v in r.items() if k != "synced_at"}
            for r in all_rows(url, table)}
