"""The plugin guide (docs/plugins.md) shows what the code does: every code example of it is run or checked here.

Each fenced block of the guide is one of:

- marked ``<!-- example: file PATH -->``: it is that file of the repository, as it is;
- marked ``<!-- example: excerpt PATH -->``: it is a run of whole, consecutive lines of that file;
- marked ``<!-- example: tree PATH -->``: a folder listing whose files exist under PATH;
- marked ``<!-- example: run -->``: Python, run here;
- marked ``<!-- example: test NAME -->``: output that the test NAME of this module checks;
- ``sh``: shell lines, each with how it is checked in :data:`SHELL`;
- ``yaml``: a config (or part of one), loaded as a config here, and its ``connectors:`` added to the config the
  guide's commands run with;
- ``json PATH``: a file the guide's commands read, written at PATH;
- no language: ``crmkpi`` command lines, run in document order through the CLI with the examples installed
  (output shown under a ``$ crmkpi`` line must be printed as shown, up to an elided ``...`` line).

Inline ``crmkpi ...`` commands run too, in the same order, except the few of :data:`MENTIONS` (a command named
without its arguments), whose command and options are checked against ``--help``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import invalidate_caches
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import ALL_BUILTINS, EXAMPLES
from crmkpi.cli import cli

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
#: A marker, a fenced block, or an inline ``crmkpi`` command, in document order.
TOKEN = re.compile(r"^<!-- example: (?P<marker>[^\n]*?) -->$"
                   r"|^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$"
                   r"|`(?P<inline>crmkpi [^`\n]+)`", re.M | re.S)
#: A command line of a block without a language: ``[$ ][VAR=value ...]crmkpi ARGS``.
COMMAND = re.compile(r"(\$ )?(\w+=\S* )*crmkpi ")
#: Every shell line of the guide (up to its comment), and how it is checked.
SHELL = {
    "pip install crmkpi": "not run: needs crmkpi on an index; the plugin's install without one is checked by "
                          "test_the_plugin_installs_where_crmkpi_is_installed",
    "pip install /path/to/crmkpi": "not run: the path is a placeholder (this suite runs in such an install)",
    "pip install -e '.[test]'": "test_the_plugin_installs_where_crmkpi_is_installed",
}
#: Inline commands named without their arguments: checked against ``--help``, not run.
MENTIONS = {"crmkpi run", "crmkpi explain", "crmkpi plugins --config FILE"}
PLUGINS = "example_deal_size,pipeline_coverage,json_export"


@dataclass
class Token:
    marker: str | None = None  # the marker of a fenced block
    info: str = ""  # its info string: language, and a path
    body: str = ""
    inline: str | None = None  # an inline command

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""


def tokens() -> list[Token]:
    """The guide's fenced blocks (each with the marker before it) and inline commands, in order."""
    found: list[Token] = []
    marker = None
    for match in TOKEN.finditer(GUIDE.read_text(encoding="utf-8")):
        if match["marker"] is not None:
            assert marker is None, f"two markers in a row: {marker!r}, {match['marker']!r}"
            marker = match["marker"]
        elif match["inline"] is not None:
            found.append(Token(inline=match["inline"]))
        else:
            found.append(Token(marker, match["info"].strip(), match["body"]))
            marker = None
    assert marker is None, f"a marker without a block after it: {marker!r}"
    return found


def blocks() -> list[Token]:
    return [t for t in tokens() if t.inline is None]


def shell_lines(body: str) -> list[str]:
    return [re.sub(r"\s+#.*$", "", line).strip() for line in body.splitlines() if line.strip()]


def test_every_block_is_run_or_checked() -> None:
    kinds: dict[str, int] = {}
    for block in blocks():
        kind, _, argument = (block.marker or "").partition(" ")
        kinds[kind or block.language or "commands"] = kinds.get(kind or block.language or "commands", 0) + 1
        where = block.body[:80]
        if kind == "file":
            assert block.body == (ROOT / argument).read_text(encoding="utf-8"), f"{argument} differs: {where}"
        elif kind == "excerpt":
            lines, source = block.body.splitlines(), (ROOT / argument).read_text(encoding="utf-8").splitlines()
            assert len(lines) >= 3, where
            assert any(source[i:i + len(lines)] == lines for i in range(len(source))), \
                f"not consecutive lines of {argument}: {where}"
        elif kind == "tree":
            top, *files = block.body.splitlines()
            assert top == Path(argument).name + "/"
            assert files and all((ROOT / argument / line.strip()).is_file() for line in files), block.body
        elif kind == "run":
            assert block.language == "python"
        elif kind == "test":
            assert callable(globals().get(argument)), f"no test {argument} checks: {where}"
        else:
            assert not block.marker, f"unknown marker {block.marker!r}"
            assert block.language in ("sh", "yaml", "json", ""), f"a {block.language} block no test checks: {where}"
            if block.language == "sh":
                assert all(line in SHELL for line in shell_lines(block.body)), where
            if block.language == "json":
                assert len(block.info.split()) == 2, f"a json block names the file it is: {where}"
            if block.language == "":  # commands, run below, and the output shown under a `$ crmkpi` line
                output = False
                for line in block.body.splitlines():
                    output = output or line.startswith("$ ")
                    assert COMMAND.match(line) or output and not line.startswith("$"), f"{line!r} is not run"
    assert sorted(line for b in blocks() if b.language == "sh" for line in shell_lines(b.body)) == sorted(SHELL)
    # The metric and connector tutorials and the tests shown are the examples' own files.
    assert kinds["file"] >= 4 and kinds["excerpt"] >= 6 and kinds["run"] >= 1


def test_inline_commands_fit_on_a_line() -> None:
    """An inline command broken over two lines would escape the runs below."""
    text = re.sub(r"^```.*?^```$", "", GUIDE.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert not re.findall(r"`crmkpi[ \n][^`]*\n[^`]*`", text)


def test_the_python_examples_run() -> None:
    ran = 0
    for block in blocks():
        if block.marker == "run":
            exec(compile(block.body, f"{GUIDE}:run", "exec"), {"__name__": "guide_example"})
            ran += 1
    assert ran


def invoke(command: str):
    """``[VAR=value ...] crmkpi ARGS``, run in process."""
    words = shlex.split(command)
    env = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "crmkpi", command
    return CliRunner().invoke(cli, words[1:], env=env, catch_exceptions=False)


def check_mention(command: str) -> None:
    """The command exists and has the options named."""
    words = command.split()[1:]
    path = [w for w in words if not w.startswith("-") and not w.isupper()]
    options = [w for w in words if w.startswith("--")]
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, (command, result.output)
    assert all(option in result.output for option in options), (command, result.output)


@pytest.fixture
def with_examples(installed_examples: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples installed, as a plugin author installs them, and every plugin selected."""
    monkeypatch.syspath_prepend(str(installed_examples))
    invalidate_caches()
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", f"{ALL_BUILTINS},{PLUGINS}")
    return installed_examples


def test_the_guides_commands_run(with_examples: Path, isolated: Path) -> None:
    """In an empty folder, the guide's commands run in its order (its files written, its connectors added to
    the config that `crmkpi init` writes), and print what it shows."""
    ran, mentioned = [], []
    for token in tokens():
        if token.inline is not None:
            if token.inline in MENTIONS:
                check_mention(token.inline)
                mentioned.append(token.inline)
                continue
            result = invoke(token.inline)
            assert result.exit_code == 0, (token.inline, result.output)
            ran.append(token.inline)
        elif token.language == "json":
            path = isolated / token.info.split()[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(token.body, encoding="utf-8")
        elif token.language == "yaml" and "connectors" in yaml.safe_load(token.body):
            config = yaml.safe_load((isolated / "crmkpi.yaml").read_text(encoding="utf-8"))
            config["connectors"].update(yaml.safe_load(token.body)["connectors"])
            (isolated / "crmkpi.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        elif token.language == "" and not token.marker:
            lines = token.body.splitlines()
            for i, line in enumerate(lines):
                if not COMMAND.match(line):
                    continue
                command = line.removeprefix("$ ")
                result = invoke(command)
                assert result.exit_code == 0, (command, result.output)
                ran.append(command)
                if line.startswith("$ "):
                    shown = [out for out in lines[i + 1:] if not out.startswith("$ ")]
                    shown = shown[:next((n for n, out in enumerate(shown) if "..." in out), len(shown))]
                    printed = result.stdout.splitlines()
                    assert any(printed[n:n + len(shown)] == shown for n in range(len(printed) or 1)), \
                        (command, shown, printed)
    assert set(mentioned) == MENTIONS
    start = ran.index("crmkpi init")
    assert ran[start:start + 3] == ["crmkpi init", "crmkpi sample-data --out data", "crmkpi sync"]
    assert "crmkpi sync crm" in ran and "crmkpi plugins --strict" in ran
    # The scaffolds the guide names were written (tests/test_scaffold.py installs and tests them).
    assert (isolated / "acme-kpis" / "acme_kpis" / "__init__.py").is_file()
    assert (isolated / "acme-source" / "acme_source" / "__init__.py").is_file()
    # The export the guide shows was synced by the example connector.
    assert any(line.startswith("crm: success") for line in invoke("crmkpi sync --status").stdout.splitlines())


def test_the_guides_configs_load(with_examples: Path, isolated: Path) -> None:
    """Each YAML block of the guide is a valid config, or a part of one that is valid on its own."""
    configs = [block.body for block in blocks() if block.language == "yaml"]
    assert len(configs) == 2
    for block in blocks():
        if block.language == "json":  # the export the connector block reads
            (isolated / block.info.split()[1]).parent.mkdir(parents=True, exist_ok=True)
            (isolated / block.info.split()[1]).write_text(block.body, encoding="utf-8")
    for n, body in enumerate(configs):
        (isolated / f"config{n}.yaml").write_text(body, encoding="utf-8")
        result = invoke(f"crmkpi validate --config config{n}.yaml")
        assert result.exit_code == 0, (body, result.output)
    plugins = invoke("crmkpi plugins --json --config config1.yaml")
    loaded = {p["name"] for p in json.loads(plugins.stdout)}
    assert {"example_deal_size", "json_export"} <= loaded and "pipeline_coverage" not in loaded
    # CRMKPI_LOAD_PLUGINS names pipeline_coverage: the warning the guide quotes
    warning = "CRMKPI_LOAD_PLUGINS: 'pipeline_coverage' is not loaded: the config's plugins.deny names it"
    assert f"Warning: {warning}" in plugins.stderr.splitlines()
    assert warning in " ".join(GUIDE.read_text(encoding="utf-8").split())


def test_the_cell_by_cell_note_is_what_crmkpi_prints(install, monkeypatch: pytest.MonkeyPatch) -> None:
    """The note shown for `my_metric` is the one crmkpi prints for a metric without a grouped compute."""
    [block] = [b for b in blocks() if b.marker == "test test_the_cell_by_cell_note_is_what_crmkpi_prints"]
    install("acme-crm-metrics", "1.2.3", {"acme": "good_metrics"})  # tests/plugins/good_metrics: deals_created
    monkeypatch.setenv("CRMKPI_LOAD_PLUGINS", "acme")
    printed = invoke("crmkpi plugins").stdout.splitlines()
    assert block.body.replace("my_metric", "deals_created").splitlines()[0] in printed


def test_the_trace_is_what_crmkpi_prints(installed_examples: Path) -> None:
    [block] = [b for b in blocks() if b.marker == "test test_the_trace_is_what_crmkpi_prints"]
    env = {**os.environ, "PYTHONPATH": str(installed_examples), "CRMKPI_LOAD_PLUGINS": "example_deal_size",
           "CRMKPI_TRACE_PLUGINS": "1"}
    done = subprocess.run([sys.executable, "-m", "crmkpi.cli", "plugins"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == block.body.splitlines()


def pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                           "--disable-pip-version-check", *args], cwd=cwd, capture_output=True, text=True)


def test_the_plugin_installs_where_crmkpi_is_installed(tmp_path: Path) -> None:
    """`pip install -e '.[test]'` in the plugin's folder, with crmkpi installed first: pip finds crmkpi satisfied
    and asks no index for it (there is none here). Without crmkpi installed, the same install fails."""
    plugin = tmp_path / "crmkpi-avg-deal-size"
    shutil.copytree(EXAMPLES / "crmkpi-avg-deal-size", plugin, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                                          "build"))
    done = pip("-e", ".[test]", cwd=plugin)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Would install crmkpi-avg-deal-size-0.1.0" in done.stdout
    assert "Would install crmkpi-0" not in done.stdout  # crmkpi: the one installed
    done = pip("--ignore-installed", "--no-deps", "-e", ".", cwd=plugin)  # the plugin alone, as a control
    assert done.returncode == 0, done.stdout + done.stderr
    done = pip("--ignore-installed", "-e", ".", cwd=plugin)  # crmkpi not counted as installed
    assert done.returncode != 0 and "No matching distribution found for crmkpi" in done.stderr, done.stderr


def test_a_quota_lies_within_its_quarter_in_tokyo(with_examples: Path, crmkpi_store) -> None:
    """The guide's case: in Asia/Tokyo, the metric example finds the quarter's quota, as quota_attainment does."""
    crmkpi_store.load("users", [{"id": "u1", "name": "Ann"}])
    crmkpi_store.load("quotas", [{"id": "q1", "owner_id": "u1", "period_start": "2025-01-01",
                                  "period_end": "2025-03-31", "amount": 100000}])
    for metric in ("pipeline_coverage", "quota_attainment"):
        cell = crmkpi_store.one(metric, "2025-Q1", timezone="Asia/Tokyo")
        assert cell.denominator == 100000, (metric, cell)
