"""``crmkpi new-plugin``: a plugin package that installs and passes its own tests as written.

The templates beside this module are the package's files, with ``$names`` that :func:`write_plugin`
fills in: ``metric/`` (a metric, both ways, right per segment and per currency) and ``connector/`` (an
incremental connector with checkpoints, deletions and reported bad records). Their tests use crmkpi's
own fixtures (:mod:`crmkpi.testing`). ``package/`` becomes the plugin's module, ``tests/test_plugin.py``
is named after it, and a template's ``.tmpl`` suffix is dropped (it keeps pytest from collecting the
templates' tests in crmkpi's tree).
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path
from string import Template

from .. import __version__
from ..errors import ConfigError
from ..plugins import Registry

#: A distribution name as PyPI takes it (PEP 508), starting with a letter.
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]$|^[A-Za-z]$")


def write_plugin(name: str, parent: Path, *, connector: bool, registry: Registry) -> Path:
    """Write the package ``name`` into ``parent / name`` and return that folder. Its module, entry point and
    metric id (or connector type) are ``name`` in snake case. Refuses a folder that exists and an id the
    loaded plugins already provide (the plugin would be rejected as a duplicate once installed)."""
    if not NAME.match(name):
        raise ConfigError(f"new-plugin {name!r}: a package name is letters, digits, '-', '_' and '.', starting "
                          f"with a letter (e.g. acme-kpis)")
    module = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if keyword.iskeyword(module) or module == "crmkpi":
        raise ConfigError(f"new-plugin {name!r}: its module would be {module!r}, which Python or crmkpi "
                          f"already uses; choose another name")
    kind, taken = ("connector type", registry.connectors) if connector else ("metric id", registry.metrics)
    if module in taken:
        provider = registry.provider_of("connector" if connector else "metric", module)
        raise ConfigError(f"new-plugin {name!r}: {kind} {module!r} is already provided by {provider.describe()}; "
                          f"choose another name")
    folder = parent / name
    if folder.exists():
        raise ConfigError(f"new-plugin {name!r}: {folder} already exists")
    names = {"distribution": name, "module": module, "metric_id": module, "function": module,
             "title": module.replace("_", " ").capitalize(), "crmkpi_version": __version__}
    template = resources.files(__name__) / ("connector" if connector else "metric")
    files = {_placed(relative, module): Template(text).substitute(names)
             for relative, text in _templates(template, Path())}
    for relative, text in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder


def _templates(folder, relative: Path):
    """``(path in the package, template text)`` of every template under ``folder``."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _templates(entry, relative / entry.name)
        elif entry.name.endswith(".tmpl"):
            yield relative / entry.name.removesuffix(".tmpl"), entry.read_text(encoding="utf-8")


def _placed(path: Path, module: str) -> Path:
    """A template's path in the written package: ``package/`` is the module, and ``tests/test_plugin.py`` is
    named after it (pytest wants test files' names unique across the packages of a session)."""
    renamed = {"package": module, "test_plugin.py": f"test_{module}.py"}
    return Path(*(renamed.get(part, part) for part in path.parts))
