"""Pieces of the connector API that connectors share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from crmkpi.connector import StartDate, StreamStats


class Settings(BaseModel):
    start_date: StartDate


@pytest.mark.parametrize("given, expected", [
    ("all", "all"),
    ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T08:30:00", datetime(2024, 1, 1, 8, 30, tzinfo=UTC)),  # no offset: UTC
    ("2024-01-01T08:30:00+02:00", datetime(2024, 1, 1, 8, 30, tzinfo=timezone(timedelta(hours=2)))),
])
def test_start_date_is_a_moment_or_all(given, expected):
    value = Settings(start_date=given).start_date
    assert value == expected and (value == "all" or value.utcoffset() is not None)


@pytest.mark.parametrize("given", ["", "yesterday", "everything", None])
def test_start_date_rejects_anything_else(given):
    with pytest.raises(ValidationError):
        Settings(start_date=given)


def test_notes_are_kept_once_each():
    stats = StreamStats()
    stats.note("getDeleted reaches back 30 days only")
    stats.note("getDeleted reaches back 30 days only")
    assert stats.notes == ["getDeleted reaches back 30 days only"] and stats.errors == [] and stats.skipped == 0
