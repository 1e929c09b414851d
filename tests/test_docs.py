"""The docs say what the code does: their command examples run, and their generated facts match.

Every ``crmkpi`` command in README.md, docs/kpis.md and docs/reports.md runs, in document order, in one folder over
the sample company, through the real CLI, and must succeed: commands in fenced code blocks (lines
starting with ``crmkpi``, ``.venv/bin/crmkpi`` or ``$ crmkpi``) and in inline code (`` `crmkpi ...` ``).
README's ``cp`` line is carried out (the sample company is its ``my-export/``). Output shown under a
``$ crmkpi`` line must be the command's output, up to its first elided line (``...``). A changed
option, metric or output in the code then fails here until the docs follow.
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ALL_BUILTINS
from crmkpi.cli import cli
from crmkpi.docgen import builtin_registry, needed_columns
from crmkpi.sample_data import generate

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "docs" / "kpis.md", ROOT / "docs" / "reports.md")
#: Makefile targets in the docs: `make test` is this suite, `make demo` runs the same commands over the same data.
MAKE = {"make demo", "make test"}
EXAMPLE = re.compile(r"```[^\n]*\n(?P<block>.*?)```|`(?P<inline>crmkpi [^`\n]+)`", re.S)


@dataclass
class Example:
    doc: str
    command: str
    #: The output the doc shows under it, up to its first elided line.
    output: list[str]


def examples(path: Path) -> list[Example]:
    found = []
    for match in EXAMPLE.finditer(path.read_text(encoding="utf-8")):
        if match["inline"]:
            found.append(Example(path.name, match["inline"], []))
            continue
        lines = match["block"].splitlines()
        for i, line in enumerate(lines):
            command = re.sub(r"\s+#.*$", "", line.removeprefix("$ ")).strip().removeprefix(".venv/bin/")
            if not re.match(r"(crmkpi|cp|make)( |$)", command):
                continue
            shown = []
            if line.startswith("$ "):
                shown = [out for out in lines[i + 1:] if not out.startswith("$ ")]
                shown = shown[:next((n for n, out in enumerate(shown) if "..." in out), len(shown))]
            found.append(Example(path.name, command, shown))
    return found


def test_the_docs_hold_the_examples_this_test_runs():
    commands = [e.command for path in DOCS for e in examples(path)]
    assert {c for c in commands if c.startswith("make ")} == MAKE
    assert [c for c in commands if c not in MAKE][:3] == ["crmkpi init", "cp my-export/*.csv data/", "crmkpi sync"]
    assert "crmkpi explain close_rate --period 2025-Q4 --segment region=EMEA -n 3" in commands
    assert len(commands) > 20


def test_every_command_example_runs_as_documented(isolated, monkeypatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    generate(isolated / "my-export", seed=42, deals=2000)  # the sample company: `crmkpi sample-data`'s default
    for example in (e for path in DOCS for e in examples(path)):
        words = shlex.split(example.command)
        if example.command in MAKE:
            continue
        if words[0] == "cp":
            *sources, target = words[1:]
            for source in (f for pattern in sources for f in sorted(glob.glob(pattern))):
                shutil.copy(source, target)
            continue
        result = CliRunner().invoke(cli, words[1:], catch_exceptions=False)
        assert result.exit_code == 0, (example.doc, example.command, result.output)
        if example.output:
            shown = [line.rstrip() for line in example.output]
            assert result.stdout.splitlines()[:len(shown)] == shown, (example.doc, example.command)


def test_readme_lists_the_columns_the_metrics_need():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The columns each table needs")[1].split("\n#")[0]
    listed = {m["table"]: m["columns"].split(", ")
              for m in re.finditer(r"^- `(?P<table>\w+)`: (?P<columns>[\w, ]+)$", section, re.M)}
    assert listed == {table: list(columns) for table, columns in needed_columns(builtin_registry()).items()}


@pytest.mark.parametrize("doc", ["README.md"])
def test_the_metric_count_is_the_catalogs(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert f"({len(builtin_registry().metrics)} built-in metrics)" in text
