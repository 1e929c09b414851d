"""Which file of the folder feeds which table, and what is said about the files none reads."""

from __future__ import annotations

from pathlib import Path

from crmkpi.connector import SyncContext
from crmkpi.errors import ConnectorError
from crmkpi.models import ENTITIES

from .names import table_matches
from .reader import FileStream
from .settings import FileOptions, FilesSettings, folder_of, outside_folder

#: The extensions a file named after a table may have: CSV, then JSON Lines.
EXTENSIONS = (".csv", ".jsonl", ".ndjson")


def discover(settings: FilesSettings, context: SyncContext) -> list[FileStream]:
    """One stream per table whose file is in the folder (or configured); the other files are noted."""
    folder = folder_of(settings.path, context.base_dir)
    where = f"connectors.{context.name}"
    if not folder.is_dir():
        raise ConnectorError(f"{where}.path: folder not found: {folder}")
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    streams = []
    read: set[str] = set()
    for table in ENTITIES:
        options = settings.tables.get(table)
        path = _file_of(table, options, folder, files, where)
        if path is None:
            continue
        for lookup in options.lookups if options else ():
            if not (folder / lookup.file).is_file():
                raise ConnectorError(f"{where}.tables.{table}.lookups: file not found: {folder / lookup.file}")
            _confine(settings, folder, lookup.file, f"{where}.tables.{table}.lookups")
            read.add(lookup.file)
        configured = options is not None and options.file
        _confine(settings, folder, options.file if configured else path.name,
                 f"{where}.tables.{table}.file" if configured else where)
        read.add(path.name)
        streams.append(FileStream(table, path, options or FileOptions(), settings, context))
    unread = [_unread(name) for name in files if name not in read]
    if not streams:
        raise ConnectorError(f"{where}.path: no file in {folder} is named after a table"
                             + (f" ({'; '.join(unread[:3])})" if unread else
                                f" (expected e.g. deals.csv, accounts.csv; tables: {', '.join(ENTITIES)})"))
    if unread and settings.strict:  # a file left unread may be a table's data under another name
        raise ConnectorError(f"{where}: {unread[0]} (strict)")
    for note in unread:
        context.note(note)
    return streams


def _confine(settings: FilesSettings, folder: Path, name: str, where: str) -> None:
    if not settings.allow_outside_path and (problem := outside_folder(folder, name)):
        raise ConnectorError(f"{where}: {problem}")


def _file_of(table: str, options: FileOptions | None, folder: Path, files: list[str], where: str) -> Path | None:
    if options is not None and options.file:
        if not (folder / options.file).is_file():
            raise ConnectorError(f"{where}.tables.{table}.file: file not found: {folder / options.file}")
        return folder / options.file
    found = [f"{table}{ext}" for ext in EXTENSIONS if f"{table}{ext}" in files]
    if len(found) > 1:
        raise ConnectorError(f"{where}: {' and '.join(found)} are both files of {table}; "
                             f"set tables.{table}.file to the one to read")
    if not found and options is not None:  # configured, so expected: its absence would load nothing silently
        raise ConnectorError(f"{where}.tables.{table}: no {', '.join(table + e for e in EXTENSIONS)} in {folder}; "
                             f"set file: to its file")
    return folder / found[0] if found else None


def _unread(name: str) -> str:
    stem, dot, extension = name.partition(".")
    tables = [stem] if stem in ENTITIES else table_matches(stem)
    if not tables:
        return f"{name}: not read: not named after a table (or set tables.<table>.file: {name})"
    if stem in ENTITIES:
        return (f"{name}: not read: only {', '.join(EXTENSIONS)} files are read by name; "
                f"set tables.{stem}.file: {name}")
    table = tables[0]
    guess = f"{table}.{extension}" if f".{extension}" in EXTENSIONS else f"{table}.csv"
    return f"{name}: not read: not a table name; did you mean {guess}? (or set tables.{table}.file: {name})"
