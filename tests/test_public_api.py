"""Meta-tests of the plugin API (docs/compatibility.md): every public name and hook is importable, documented in
the generated reference and used by a test, ``import crmkpi`` stays cheap, and the API only grows within a major
version, against the record of each version in tests/data/plugin_api.json."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import crmkpi
from crmkpi import docgen

ROOT = Path(__file__).resolve().parent.parent
#: What each plugin API version offered: its hooks (arguments, pluggy options) and its public names.
RECORD = Path(__file__).resolve().parent / "data" / "plugin_api.json"
EAGER = ("__version__", "PLUGIN_API_VERSION", "hookimpl")


def current_api() -> dict:
    """The hooks and public names of this crmkpi, as tests/data/plugin_api.json records them."""
    hooks = {name: {"args": list(inspect.signature(spec).parameters),
                    "firstresult": bool(spec.crmkpi_spec.get("firstresult")),
                    "historic": bool(spec.crmkpi_spec.get("historic"))}
             for name, spec in docgen.hook_specs().items()}
    return {"hooks": hooks, "names": sorted(crmkpi.__all__)}


def recorded() -> dict[str, dict]:
    return json.loads(RECORD.read_text(encoding="utf-8"))


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


# --- the names ---------------------------------------------------------------------------


def test_every_public_name_imports_from_crmkpi_and_has_a_docstring():
    assert len(crmkpi.__all__) == len(set(crmkpi.__all__))
    undocumented = [name for name in crmkpi.__all__ if not docgen.public_doc(name)]
    assert undocumented == [], f"public names without a docstring (or a #: comment): {undocumented}"
    namespace: dict = {}
    exec(f"from crmkpi import {', '.join(crmkpi.__all__)}", namespace)  # noqa: S102 - the names of __all__
    assert set(crmkpi.__all__) <= set(namespace) and set(crmkpi.__all__) <= set(dir(crmkpi))


def test_what_type_checkers_see_is_what_is_imported_lazily():
    """``__all__``, the lazy imports (``_LAZY``) and the ``TYPE_CHECKING`` imports name the same things."""
    tree = ast.parse((ROOT / "core" / "__init__.py").read_text(encoding="utf-8"))
    [checking] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    seen = {alias.name: node.module for node in checking.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}
    assert seen == crmkpi._LAZY
    assert sorted(crmkpi.__all__) == sorted([*EAGER, *crmkpi._LAZY])
    for name, module in crmkpi._LAZY.items():  # each comes from the module that defines (or names) it
        assert getattr(crmkpi, name) is getattr(sys.modules[f"crmkpi.{module}"], name)


def test_import_crmkpi_stays_cheap():
    """Every command imports every plugin, and a plugin imports crmkpi: the public names load on first use."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, crmkpi; "
                             "print(sorted({'sqlalchemy', 'pydantic', 'click', 'crmkpi.metrics'} & set(sys.modules)))"],
                            capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="^module 'crmkpi' has no attribute 'Metrics'$"):
        crmkpi.Metrics  # noqa: B018
    with pytest.raises(ImportError):
        exec("from crmkpi import Metrics", {})  # noqa: S102


# --- the reference -------------------------------------------------------------------------


def test_every_public_name_and_attribute_is_in_the_reference():
    page = docgen.pages()["hooks.md"]
    missing = [name for name in crmkpi.__all__ if f"`crmkpi.{name}" not in page]
    assert missing == [], f"public names missing from docs/reference/hooks.md: {missing}"
    for name in crmkpi.__all__:
        value = getattr(crmkpi, name)
        if not inspect.isclass(value):
            continue
        section = page.split(f"### `crmkpi.{name}`\n", 1)[1].split("\n### ", 1)[0]
        fields = [f.name for f in dataclasses.fields(value)] if dataclasses.is_dataclass(value) else []
        members = [member for member, _ in docgen._members(value)]
        absent = [attribute for attribute in fields + members if f"`{attribute}" not in section]
        assert absent == [], f"crmkpi.{name}: attributes missing from the reference: {absent}"


def test_every_hook_spec_is_documented_in_the_reference():
    page = docgen.pages()["hooks.md"]
    for name, spec in docgen.hook_specs().items():
        assert inspect.getdoc(spec), f"hook {name} has no docstring"
        assert f"## `{name}(" in page and inspect.getdoc(spec) in page


def test_every_hook_and_public_name_is_used_by_a_test():
    """A name only this file mentions is untested: use it in a test, or in a fixture plugin a test loads."""
    sources = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py")
                        if path.name != Path(__file__).name)
    untested = [name for name in [*crmkpi.__all__, *docgen.hook_specs()]
                if not re.search(rf"(?<!\w){re.escape(name)}\b", sources)]
    assert untested == [], f"public names or hooks no test uses: {untested}"
    implemented = [name for name in docgen.hook_specs() if not re.search(rf"def {name}\(", sources)]
    assert implemented == [], f"hooks no test plugin implements: {implemented}"


# --- the API only grows ------------------------------------------------------------------------


def test_the_plugin_api_version_is_major_dot_minor():
    assert re.fullmatch(r"\d+\.\d+", crmkpi.PLUGIN_API_VERSION)


def test_the_record_of_the_running_version_is_the_current_api():
    versions = recorded()
    latest = max(versions, key=_version)
    assert latest == crmkpi.PLUGIN_API_VERSION, (
        f"tests/data/plugin_api.json records up to {latest}, crmkpi.PLUGIN_API_VERSION is {crmkpi.PLUGIN_API_VERSION}")
    assert versions[latest] == current_api(), (
        "the hooks or public names changed: raise crmkpi.PLUGIN_API_VERSION (the minor for an addition, the major "
        "for a removal) and record the new version in tests/data/plugin_api.json (docs/compatibility.md)")


def test_within_a_major_version_nothing_recorded_goes_away():
    """Hooks keep their arguments and options, names stay: a plugin written for 1.0 works with every 1.x."""
    versions = sorted(recorded().items(), key=lambda item: _version(item[0]))
    for (old, before), (new, after) in zip(versions, versions[1:]):
        if _version(old)[0] != _version(new)[0]:
            continue  # a new major may break: docs/compatibility.md says how
        assert set(before["names"]) <= set(after["names"]), f"{new} lost names of {old}"
        for hook, spec in before["hooks"].items():
            assert hook in after["hooks"], f"{new} lost the hook {hook} of {old}"
            grown = after["hooks"][hook]
            assert set(spec["args"]) <= set(grown["args"]), f"{new}: {hook} lost arguments of {old}"
            assert (grown["firstresult"], grown["historic"]) == (spec["firstresult"], spec["historic"])
