"""Settings of a ``type: files`` connector."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crmkpi.config import check_zone
from crmkpi.models import ENTITIES

OnError = Literal["fail", "skip"]


class Derive(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", description="source column whose (recoded) value decides")
    map: dict[str, Any] = Field(description="source value -> column value")
    default: Any = None


class FileOptions(BaseModel):
    """How one file maps onto its normalized table."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = Field(None, description="file name in the folder; default <table>.csv or <table>.jsonl")
    format: Literal["csv", "jsonl"] | None = Field(None, description="default: from the file extension")
    delimiter: str = ","
    encoding: str = "utf-8"
    columns: dict[str, str] = Field(default_factory=dict, description="normalized column -> file column")
    values: dict[str, dict[str, Any]] = Field(default_factory=dict, description="column -> {file value: value}")
    derive: dict[str, Derive] = Field(default_factory=dict, description="column computed from another column")
    constants: dict[str, Any] = Field(default_factory=dict, description="column -> value for every row")
    datetime_format: str | None = Field(None, description="strptime format; default ISO 8601")
    date_format: str | None = Field(None, description="strptime format; default YYYY-MM-DD")
    timezone: str | None = Field(None, description="zone of datetimes without an offset")
    on_error: OnError | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return value and check_zone(value)


class FilesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="folder holding one file per table (relative to the config file)")
    on_error: OnError = Field("fail", description="fail: commit nothing; skip: skip bad rows and report them")
    timezone: str = Field("UTC", description="zone of datetimes without an offset")
    tables: dict[str, FileOptions] = Field(default_factory=dict, description="per-table options")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, tables: dict[str, FileOptions]) -> dict[str, FileOptions]:
        unknown = sorted(set(tables) - set(ENTITIES))
        if unknown:
            raise ValueError(f"unknown table {unknown[0]!r} (tables: {', '.join(ENTITIES)})")
        return tables
