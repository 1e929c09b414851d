"""Every example of the files connector's README, run: the README fails this test when it drifts.

(And the configuration guide's examples, which must at least be valid configs.)

The README is read section by section (a heading starts one). In a section, a code block whose
info string is ``csv PATH`` or ``jsonl PATH`` is a file of the project, a ``yaml`` block is its
``crmkpi.yaml``, and a ``console`` block holds commands (``$ crmkpi ...``), each followed by the
exact output it must print. The blocks run in order in one project folder per section, shown in
the README as ``/home/me/crm``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from crmkpi.cli import cli
from crmkpi.config import load_config
from crmkpi.plugins import load_registry
from conftest import ALL_BUILTINS

README = Path(__file__).resolve().parents[2] / "connectors" / "files" / "README.md"
SHOWN_AS = "/home/me/crm"
BLOCK = re.compile(r"^```(\w*)[ \t]*(\S*)\n(.*?)^```", re.M | re.S)


@dataclass
class Section:
    title: str
    blocks: list[tuple[str, str, str]] = field(default_factory=list)  # (language, name, body)


def sections() -> list[Section]:
    found = []
    for part in re.split(r"^(?=#+ )", README.read_text(encoding="utf-8"), flags=re.M):
        blocks = BLOCK.findall(part)
        if blocks:
            found.append(Section(part.splitlines()[0].lstrip("# "), blocks))
    return found


def commands(console: str) -> list[tuple[list[str], str]]:
    """``$ crmkpi ARGS`` lines, each with the output expected after it."""
    runs = []
    for chunk in re.split(r"^\$ ", console, flags=re.M)[1:]:
        line, _, output = chunk.partition("\n")
        args = shlex.split(line)
        assert args[0] == "crmkpi", line
        runs.append((args[1:], output))
    return runs


EXAMPLES = [s for s in sections() if any(language == "console" for language, _, _ in s.blocks)]


def test_every_yaml_example_is_run():
    for section in sections():
        languages = [language for language, _, _ in section.blocks]
        for n, language in enumerate(languages):
            if language == "yaml":
                assert "console" in languages[n + 1:], f"{section.title}: a YAML example that no command runs"
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("section", EXAMPLES, ids=[s.title for s in EXAMPLES])
def test_readme_example(section: Section, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", ALL_BUILTINS)
    project = tmp_path / "crm"
    project.mkdir()
    monkeypatch.chdir(project)
    for language, name, body in section.blocks:
        if language in ("csv", "jsonl") and name:
            path = project / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
        elif language == "yaml":
            (project / "crmkpi.yaml").write_text(body, encoding="utf-8")
        elif language == "console":
            for args, expected in commands(body):
                result = CliRunner().invoke(cli, args)
                printed = result.output.replace(str(project.resolve()), SHOWN_AS)
                assert printed == expected, f"{section.title}: crmkpi {' '.join(args)}"
                assert result.exit_code == (1 if expected.startswith("Error: ") else 0), printed


GUIDE = README.parents[2] / "docs" / "configuration.md"


def test_the_configuration_guides_examples_are_valid_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    registry = load_registry(distribution="crmkpi")
    examples = [body for language, _, body in BLOCK.findall(GUIDE.read_text(encoding="utf-8")) if language == "yaml"]
    assert examples
    for body in examples:
        for variable in re.findall(r"\$\{(\w+)", body):
            monkeypatch.setenv(variable, "placeholder")
        config = tmp_path / "crmkpi.yaml"
        config.write_text(body, encoding="utf-8")
        load_config(config, registry)  # the form only: the guide's folders are not there
