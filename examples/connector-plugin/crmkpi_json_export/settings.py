"""The ``json_export`` block of a crmkpi config."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crmkpi import TABLES

#: The normalized tables an export may hold (every table but crmkpi's own sync_runs).
TABLE_NAMES = tuple(name for name, table in TABLES.items() if "is_deleted" in table.c)
#: The columns crmkpi fills itself.
OWN_COLUMNS = ("source", "synced_at", "extra")


class JsonExportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="the export's folder (relative to the config's): one <table>.json per table")
    batch_size: int = Field(500, ge=1, description="records committed together, with the cursor after them")
    on_error: Literal["skip", "fail"] = Field(
        "skip", description="skip: a bad record is skipped and listed in the sync report; fail: it fails the sync "
                            "(the batches before it stay committed)")
    timezone: str = Field("UTC", description="the time zone of timestamps without an offset")
    columns: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="table -> column -> the export's field, where the export names a column "
                                          "otherwise (e.g. deals: {amount: value})")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. Europe/Paris)") from None
        return value

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for table, columns in value.items():
            if table not in TABLE_NAMES:
                raise ValueError(f"{table!r} is not a table (tables: {', '.join(TABLE_NAMES)})")
            for column in columns:
                if column not in TABLES[table].c or column in OWN_COLUMNS:
                    raise ValueError(f"{column!r} is not a column of {table}")
        return value
