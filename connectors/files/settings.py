"""Settings of a ``type: files`` connector.

Every key of a table's block that names a column is checked against that table, so that a
typo fails ``crmkpi validate`` instead of leaving a column empty. To know the table, ``tables``
is validated one table at a time with the table set in ``_scope``, which the checks of
:class:`FileOptions` and :class:`Lookup` read.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, ValidatorFunctionWrapHandler, field_validator,
                      model_validator)

from crmkpi.config import SourceCheck, check_zone
from crmkpi.models import ENTITIES
from crmkpi.normalize import FieldError, constant_value
from crmkpi.store import column_kinds
from crmkpi.suggest import suggest

from .names import column_suggestion, table_matches
from .rules import RULES, RuleName

OnError = Literal["fail", "skip"]
Duplicates = Literal["last", "first", "error"]


def _usable_delimiter(value: str) -> str:
    if value in ('"', "\r", "\n"):
        raise ValueError(f"{value!r} cannot separate columns (it quotes values or ends lines)")
    return value


def _text_encoding(value: str) -> str:
    """An encoding Python can decode text with, so that a typo fails ``crmkpi validate``, not the sync."""
    try:
        "a".encode(value)  # (an empty text would not even look the codec up)
    except UnicodeError:
        pass
    except LookupError:
        raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, utf-16, cp1252, latin-1)") from None
    return value


Delimiter = Annotated[str, Field(min_length=1, max_length=1), AfterValidator(_usable_delimiter)]
Encoding = Annotated[str, AfterValidator(_text_encoding)]


@dataclass(frozen=True)
class _Scope:
    table: str
    folder: Path | None  # set when ``crmkpi validate`` checks that the files exist
    allow_outside: bool = False


_scope: ContextVar[_Scope | None] = ContextVar("files_table", default=None)


def table_columns(table: str) -> list[str]:
    """The columns of ``table`` a file can give values for."""
    return [c for c in column_kinds(table) if c not in ("source", "synced_at", "extra")]


def folder_of(path: str, base_dir: Path) -> Path:
    folder = Path(path)
    return folder if folder.is_absolute() else base_dir / folder


def _check_columns(names: Iterable[str]) -> None:
    """Each of ``names`` must be a column of the table being validated."""
    scope = _scope.get()
    if scope is None:
        return
    columns = table_columns(scope.table)
    for name in names:
        if name not in columns:
            raise ValueError(f"{name!r} is not a column of {scope.table}{column_suggestion(name, columns)}")


def outside_folder(folder: Path, name: str) -> str | None:
    """Why ``folder / name`` is not read by default: it leads outside the folder (None: it does not).

    ``..``, an absolute path and a symbolic link all could, and a config or an export dropped into
    the folder must not make crmkpi read (and store) any file the user can read."""
    path = folder / name
    if path.resolve().is_relative_to(folder.resolve()):
        return None
    return (f"{name!r} is outside the folder {folder} (it leads to {path.resolve()}); "
            f"set allow_outside_path: true to read it")


def _check_file(name: str | None) -> str | None:
    scope = _scope.get()
    if name and scope is not None and scope.folder is not None:
        if not (scope.folder / name).is_file():
            raise ValueError(f"file not found: {scope.folder / name}")
        if not scope.allow_outside and (problem := outside_folder(scope.folder, name)):
            raise ValueError(problem)
    return name


class Derive(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", description="file column (or normalized column) whose value decides")
    map: dict[str, Any] = Field(description="value as the file has it (before `values` recodes it) -> column value")
    default: Any = None


class Lookup(BaseModel):
    """Columns of a table taken from another file, joined by key; that file is held in memory."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="the other file, in the folder (CSV or JSON Lines)")
    key: str = Field(description="its column that identifies a row (each value at most once)")
    by: str | None = Field(None, description="the table's file column whose value is looked up in key; "
                                           "default: the one named as key")
    columns: dict[str, str] = Field(default_factory=dict, description="normalized column -> its column")
    extra: list[str] = Field(default_factory=list, description="its columns kept in the row's extra")
    delimiter: Delimiter | None = Field(None, description="default: detected from its header")
    encoding: Encoding = "utf-8"

    _file = field_validator("file")(_check_file)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        if "id" in columns:
            raise ValueError("id comes from the table's own file, not from a lookup")
        _check_columns(columns)
        return columns


class FileOptions(BaseModel):
    """How one file maps onto its normalized table."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = Field(None, description="file name in the folder; default <table>.csv, .jsonl or .ndjson")
    format: Literal["csv", "jsonl"] | None = Field(None, description="default: from the file extension")
    delimiter: Delimiter | None = Field(None, description="default: detected from the header among , ; tab |")
    encoding: Encoding = "utf-8"
    columns: dict[str, str | list[str]] = Field(
        default_factory=dict, description="normalized column -> file column, or file columns tried in turn "
                                          "(the first non-empty value wins)")
    extra: list[str] = Field(default_factory=list,
                             description="file columns kept in extra on purpose (not reported as unknown)")
    values: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="column (normalized, or a file column kept in extra) -> "
                                          "{file value: value}")
    derive: dict[str, Derive] = Field(default_factory=dict, description="column computed from another column")
    constants: dict[str, Any] = Field(default_factory=dict, description="column -> value for every row")
    lookups: list[Lookup] = Field(default_factory=list, description="columns from other files, joined by key")
    datetime_format: str | None = Field(None, description="strptime format of datetimes; default ISO 8601")
    date_format: str | None = Field(None, description="strptime format of dates; default YYYY-MM-DD")
    formats: dict[str, str] = Field(default_factory=dict,
                                    description="column -> strptime format, over datetime_format/date_format")
    timezone: str | None = Field(None, description="zone of datetimes without an offset")
    on_error: OnError | None = None
    duplicates: Duplicates | None = Field(None, description="rows that repeat an id: keep the last or first, or "
                                                            "fail; default: the connector's")
    strict: bool | None = Field(None, description="default: the connector's")
    allow: list[RuleName] = Field(default_factory=list,
                                  description="consistency rules whose breaking rows are kept (and counted)")

    _file = field_validator("file")(_check_file)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return value and check_zone(value)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, Any]) -> dict[str, Any]:
        scope = _scope.get()
        for column, source in columns.items():
            if not source:
                raise ValueError(f"{column}: name at least one file column")
            if scope and isinstance(source, str) and column not in table_columns(scope.table) \
                    and source in table_columns(scope.table):
                raise ValueError(f"{column!r} is not a column of {scope.table}: columns maps a column to the file's "
                                 f"column, so write {source}: {column}")
        _check_columns(columns)
        return columns

    @field_validator("derive", "constants")
    @classmethod
    def _known_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_columns(value)
        return value

    @field_validator("constants")
    @classmethod
    def _typed_constants(cls, constants: dict[str, Any]) -> dict[str, Any]:
        scope = _scope.get()
        if scope is not None:
            kinds = column_kinds(scope.table)
            for column, value in constants.items():
                try:
                    constant_value(column, value, kinds[column])
                except FieldError as exc:
                    raise ValueError(f"{column}: {exc.reason}") from None
        return constants

    @field_validator("formats")
    @classmethod
    def _dated_columns(cls, formats: dict[str, str]) -> dict[str, str]:
        _check_columns(formats)
        scope = _scope.get()
        if scope is not None:
            kinds = column_kinds(scope.table)
            for column in formats:
                if kinds[column] not in ("date", "datetime"):
                    raise ValueError(f"{column!r} is a {kinds[column]} column of {scope.table}, not a date or "
                                     f"datetime")
        return formats

    @field_validator("extra")
    @classmethod
    def _not_columns(cls, extra: list[str]) -> list[str]:
        scope = _scope.get()
        for name in extra:
            if scope is not None and name in table_columns(scope.table):
                raise ValueError(f"{name!r} is a column of {scope.table}, so it is not kept in extra")
        return extra

    @field_validator("allow")
    @classmethod
    def _rules_of_table(cls, allow: list[str]) -> list[str]:
        scope = _scope.get()
        if scope is not None:
            rules = sorted({r.name for r in RULES.get(scope.table, ())})
            for name in allow:
                if name not in rules:
                    raise ValueError(f"{scope.table} has no rule {name!r} (its rules: {', '.join(rules) or 'none'})")
        return allow

    @model_validator(mode="after")
    def _one_way_per_column(self) -> FileOptions:
        ways = {"columns": set(self.columns), "constants": set(self.constants), "derive": set(self.derive),
                "lookups": {c for lookup in self.lookups for c in lookup.columns}}
        seen: dict[str, str] = {}
        for way, columns in ways.items():
            for column in sorted(columns):
                if column in seen:
                    raise ValueError(f"column {column!r} is set by both {seen[column]} and {way}")
                seen[column] = way
        return self


class FilesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="folder holding one file per table (relative to the config file)")
    allow_outside_path: bool = Field(False, description="read files outside the folder: a file: or lookup "
                                                        "with .. or an absolute path, or a symbolic link")
    on_error: OnError = Field("fail", description="fail: commit nothing; skip: skip bad rows and report them")
    timezone: str = Field("UTC", description="zone of datetimes without an offset")
    duplicates: Duplicates | None = Field(None, description="rows that repeat an id: keep the last or first, or "
                                                            "fail; default: keep the last and report it")
    strict: bool = Field(False, description="unknown columns, missing columns, repeated ids, unused mapping keys "
                                            "and broken consistency rules fail the sync instead of being noted")
    tables: dict[str, FileOptions] = Field(default_factory=dict, description="per-table options")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("path")
    @classmethod
    def _folder_exists(cls, path: str, info: ValidationInfo) -> str:
        if isinstance(info.context, SourceCheck):
            folder = folder_of(path, info.context.base_dir)
            if not folder.is_dir():
                raise ValueError(f"folder not found: {folder}")
        return path

    @field_validator("tables", mode="wrap")
    @classmethod
    def _each_table(cls, tables: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        if not isinstance(tables, dict):
            return handler(tables)
        for name in tables:
            if name not in ENTITIES:
                raise ValueError(f"unknown table {name!r}{suggest(table_matches(name))} "
                                 f"(tables: {', '.join(ENTITIES)})")
        folder = None
        if isinstance(info.context, SourceCheck) and "path" in info.data:
            folder = folder_of(info.data["path"], info.context.base_dir)
        validated = {}
        for name, options in tables.items():
            token = _scope.set(_Scope(name, folder, bool(info.data.get("allow_outside_path"))))
            try:
                validated.update(handler({name: options}))
            finally:
                _scope.reset(token)
        return validated
