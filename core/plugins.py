"""Plugin loading: entry points of the ``crmkpi`` group, one at a time, failures isolated.

``CRMKPI_LOAD_PLUGINS`` chooses what loads: unset loads every installed plugin, an empty
value loads none, and a comma-separated list loads only the named entry points.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from . import hookspecs
from .connector import ConnectorType
from .errors import PluginError
from .metrics import Metric

ENTRY_POINT_GROUP = "crmkpi"
LOAD_PLUGINS_ENV = "CRMKPI_LOAD_PLUGINS"


@dataclass
class PluginInfo:
    """What one plugin is, where it came from and what it provided (or why it failed)."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    connectors: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.name} ({self.distribution} {self.version})" if self.distribution else self.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "metrics": self.metrics,
            "connectors": self.connectors,
            "errors": self.errors,
        }


class Registry:
    """The loaded plugins and the metrics and connector types they registered."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.pm = pluggy.PluginManager("crmkpi")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.metrics: dict[str, Metric] = {}
        self.connectors: dict[str, ConnectorType] = {}
        self._provider: dict[tuple[str, str], str] = {}

    def add(self, name: str, plugin: object, info: PluginInfo | None = None) -> None:
        """Register one plugin object and collect what its hooks register."""
        info = info or PluginInfo(name=name, module=getattr(plugin, "__name__", repr(plugin)))
        if not self._claim(name, info):
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validates hook signatures here
            self._fail(info, f"invalid plugin: {exc}")
            return
        info.hooks = sorted(
            hook.name for hook in self.pm.get_hookcallers(plugin) or [] if hook.name.startswith("register_")
        )
        self._collect(info, "register_connectors", "connector", ConnectorType, self.connectors, info.connectors)
        self._collect(info, "register_metrics", "metric", Metric, self.metrics, info.metrics)

    def _collect(self, info, hook_name, kind, expected_type, target: dict, provided: list) -> None:
        impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if i.plugin_name == info.name]
        pending: dict[str, Any] = {}

        def register(item: Any) -> None:
            if not isinstance(item, expected_type):
                raise PluginError(f"register() expects a {expected_type.__name__}, got {type(item).__name__}")
            key = item.id if kind == "metric" else item.name
            if key in target or key in pending:
                other = self._provider.get((kind, key), info.name)
                raise PluginError(f"duplicate {kind} id {key!r}: already provided by {self.plugins[other].describe()}")
            pending[key] = item

        for impl in impls:
            try:
                impl.function(register=register)
            except Exception as exc:
                self._fail(info, f"{hook_name}: {exc}")
                return
        for key, item in pending.items():
            target[key] = item
            self._provider[(kind, key)] = info.name
            provided.append(key)

    def _claim(self, name: str, info: PluginInfo) -> bool:
        """List the plugin under its name; a name already taken (say, by another distribution) fails it."""
        first = self.plugins.setdefault(name, info)
        if first is info:
            return True
        self.plugins[f"{name} ({info.distribution or info.module})"] = info
        self._fail(info, f"plugin name {name!r} is already taken by {first.describe()}")
        return False

    def _fail(self, info: PluginInfo, message: str) -> None:
        message = "; ".join(line.strip() for line in message.splitlines() if line.strip())  # one line
        if self.strict:
            raise PluginError(f"plugin {info.describe()}: {message}")
        info.errors.append(message)

    def provider_of(self, kind: str, key: str) -> PluginInfo:
        return self.plugins[self._provider[(kind, key)]]

    def errors(self) -> list[str]:
        return [f"plugin {p.describe()}: {e}" for p in self.plugins.values() for e in p.errors]

    def metric(self, metric_id: str) -> Metric:
        try:
            return self.metrics[metric_id]
        except KeyError:
            known = ", ".join(sorted(self.metrics)) or "none loaded"
            raise PluginError(f"unknown metric {metric_id!r} (known: {known})") from None

    def connector_type(self, name: str) -> ConnectorType:
        try:
            return self.connectors[name]
        except KeyError:
            known = ", ".join(sorted(self.connectors)) or "none loaded"
            raise PluginError(f"unknown connector type {name!r} (known: {known})") from None


def selected_entry_points(environ: dict[str, str] | os._Environ = os.environ,
                          distribution: str | None = None) -> list[EntryPoint]:
    """The entry points to load: ``CRMKPI_LOAD_PLUGINS`` decides, or only one distribution's."""
    # Built-ins load first, so a third-party plugin reusing one of their ids is the one rejected.
    eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (_distribution(ep) != "crmkpi", ep.name))
    if distribution is not None:
        return [ep for ep in eps if _distribution(ep) == distribution]
    wanted = environ.get(LOAD_PLUGINS_ENV)
    if wanted is None:
        return eps
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    return [ep for ep in eps if ep.name in names]


def _distribution(ep: EntryPoint) -> str | None:
    return ep.dist.metadata["Name"] if ep.dist else None


def load_registry(strict: bool = False, extra: dict[str, object] | None = None,
                  distribution: str | None = None) -> Registry:
    """Load every selected entry point on its own, then any ``extra`` plugin objects."""
    registry = Registry(strict=strict)
    for ep in selected_entry_points(distribution=distribution):
        info = PluginInfo(name=ep.name, module=ep.value, distribution=_distribution(ep),
                          version=ep.dist.version if ep.dist else None)
        if not registry._claim(ep.name, info):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            interruption = _interruption(exc)
            if interruption is not None:  # Ctrl-C or SIGTERM during the import: stop, not a broken plugin
                raise interruption from None
            registry._fail(info, f"failed to load {ep.value}: {type(exc).__name__}: {exc}")
            continue
        registry.add(ep.name, plugin, info)
    for name, plugin in (extra or {}).items():
        registry.add(name, plugin)
    return registry


def _interruption(exc: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM (a BaseException that is no Exception) behind ``exc``, if any: Python 3.11
    wraps what a class body's ``__set_name__`` raises in a RuntimeError, so an interruption landing
    there would otherwise read as a plugin that failed to import."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if not isinstance(cause, Exception):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None
