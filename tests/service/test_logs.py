"""What ``crmkpi serve`` logs, as text and as JSON lines: levels, fields, redaction, uvicorn's warnings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from crmkpi.redact import register
from crmkpi.service.logs import LOGGER, logging_to_stderr, say

SECRET = "sk-live-51HdQaX9-not-a-real-secret"


@pytest.fixture
def secret() -> str:
    register(SECRET)
    return SECRET


def test_text_lines_name_a_level_only_when_it_is_not_info(capsys, secret):
    with logging_to_stderr("text"):
        say("nightly 2026-12-05T01:30: run 7 started", schedule="nightly")
        say(f"nightly 2026-12-05T01:30: run 7 failed: 401 for token {secret}", logging.ERROR)
    started, failed = capsys.readouterr().err.splitlines()
    assert started[:20].endswith("Z") and started[21:] == "nightly 2026-12-05T01:30: run 7 started"
    assert failed[21:] == "error: nightly 2026-12-05T01:30: run 7 failed: 401 for token [redacted]"


def test_json_lines_carry_the_fields_and_never_a_secret(capsys, secret):
    with logging_to_stderr("json"):
        say("nightly 2026-12-05T01:30: run 7 failed: 401", logging.ERROR, schedule="nightly",
            occurrence="2026-12-05T01:30", run_id=7, status="failed", error=f"401 for token {secret}")
        try:
            raise ValueError(f"bad credentials {secret}")
        except ValueError:
            LOGGER.exception("unexpected")
    failed, crashed = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert failed.pop("time").endswith("Z")
    assert failed == {"level": "error", "logger": "crmkpi.serve",
                      "message": "nightly 2026-12-05T01:30: run 7 failed: 401", "schedule": "nightly",
                      "occurrence": "2026-12-05T01:30", "run_id": 7, "status": "failed",
                      "error": "401 for token [redacted]"}
    assert crashed["message"] == "unexpected"
    assert crashed["exception"].endswith("ValueError: bad credentials [redacted]")


def test_uvicorn_warnings_go_the_same_way_and_its_info_does_not(capsys):
    with logging_to_stderr("json"):
        logging.getLogger("uvicorn.error").info("Started server process [41]")
        logging.getLogger("uvicorn.error").error("Exception in ASGI application")
    [line] = capsys.readouterr().err.splitlines()
    assert {k: v for k, v in json.loads(line).items() if k != "time"} == {
        "level": "error", "logger": "uvicorn.error", "message": "Exception in ASGI application"}


def test_the_loggers_are_as_before_afterwards(capsys):
    before = [(logger.level, logger.propagate, list(logger.handlers))
              for logger in (LOGGER, logging.getLogger("uvicorn"))]
    with logging_to_stderr("text"):
        pass
    assert [(logger.level, logger.propagate, list(logger.handlers))
            for logger in (LOGGER, logging.getLogger("uvicorn"))] == before
    say("after serve")
    assert capsys.readouterr().err == ""


def test_the_deployment_guides_log_examples_are_what_serve_writes(capsys):
    guide = (Path(__file__).parents[2] / "docs" / "deployment.md").read_text()
    text_block = guide.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    [json_line] = guide.split("```json\n", 1)[1].split("```", 1)[0].splitlines()
    example = json.loads(json_line)
    fields = {k: v for k, v in example.items() if k not in ("time", "level", "logger", "message")}
    with logging_to_stderr("text"):
        say(text_block[0].split(" ", 1)[1])
        say(text_block[1].split(" ", 1)[1].removeprefix("error: "), logging.ERROR)
    assert [line.split(" ", 1)[1] for line in capsys.readouterr().err.splitlines()] == \
        [line.split(" ", 1)[1] for line in text_block]
    with logging_to_stderr("json"):
        say(example["message"], logging.ERROR, **fields)
    written = json.loads(capsys.readouterr().err)
    assert list(written) == list(example) and {**written, "time": example["time"]} == example
