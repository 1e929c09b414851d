"""Setting up a files project, and checking what a command did: its output, and the store read from outside
the code under test."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterable

import yaml
from sqlalchemy import create_engine, select

from crmkpi.models import ENTITIES, SyncRun


def files_project(work: Path, store_url: str, files: dict[str, str | bytes], **settings) -> Path:
    """Write ``files`` into work/data and a config with one files connector named ``files``."""
    data = work / "data"
    data.mkdir(exist_ok=True)
    for name, content in files.items():
        (data / name).write_bytes(content.encode() if isinstance(content, str) else content)
    config = work / "crmkpi.yaml"
    block = {"type": "files", "path": "data", **settings}
    config.write_text(yaml.safe_dump({"store": store_url, "connectors": {"files": block}}), encoding="utf-8")
    return config


def ok(result) -> str:
    """stderr of a successful CLI run."""
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stderr


def one_line_error(result) -> str:
    """The one-line error of a failed CLI run, without its ``Error: `` prefix."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0].removeprefix("Error: ")


def utc(value: Any) -> Any:
    """Datetimes as aware UTC, whichever backend returned them (SQLite gives naive ones)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def table_rows(url: str, table: str) -> dict[str, dict[str, Any]]:
    """Rows of a normalized table by id."""
    return {r["id"]: {k: utc(v) for k, v in r.items()} for r in all_rows(url, table)}


def all_rows(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of a normalized table, as the database returns it."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(ENTITIES[table].__table__)).mappings()]
    finally:
        engine.dispose()


def sync_runs(url: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(SyncRun.__table__).order_by(SyncRun.id)).mappings()]
    finally:
        engine.dispose()


def snapshot(url: str, tables: Iterable[str] = ENTITIES, ignore: tuple[str, ...] = ("synced_at",)) -> dict[str, list]:
    """Every row of the tables, comparable between runs and backends (``synced_at`` differs by design)."""
    return {table: sorted(tuple(sorted((k, repr(v)) for k, v in row.items() if k not in ignore))
                          for row in table_rows(url, table).values())
            for table in tables}
