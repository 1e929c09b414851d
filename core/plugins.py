"""Plugin loading: entry points of the ``crmkpi`` group, one at a time, failures isolated.

``CRMKPI_LOAD_PLUGINS`` chooses what loads: unset loads every installed plugin, an empty
value loads none, and a comma-separated list loads only the named entry points. A config's
``plugins:`` section narrows that further (``allow``/``deny``, third-party plugins only).
``CRMKPI_TRACE_PLUGINS=1`` prints every hook call on stderr. A plugin whose ``CRMKPI_PLUGIN_API``
range excludes this plugin API (:mod:`crmkpi.plugin_api`) is reported and its hooks are not registered.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from . import __version__, hookspecs
from .connector import ConnectorType
from .errors import PluginError
from .metrics import Metric
from .notify import NotifierType
from .plugin_api import DECLARATION, PLUGIN_API_VERSION, in_range
from .suggest import did_you_mean

ENTRY_POINT_GROUP = "crmkpi"
LOAD_PLUGINS_ENV = "CRMKPI_LOAD_PLUGINS"
TRACE_PLUGINS_ENV = "CRMKPI_TRACE_PLUGINS"
#: The distribution of the built-in plugins, which a config's ``plugins:`` section cannot leave out.
BUILTIN_DISTRIBUTION = "crmkpi"


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
    notifiers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The plugin API versions it declares it works with (``CRMKPI_PLUGIN_API``), None when it declares none.
    plugin_api: str | None = None

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
            "notifiers": self.notifiers,
            "errors": self.errors,
            "plugin_api": {"declared": self.plugin_api, "running": PLUGIN_API_VERSION},
        }


class Registry:
    """The loaded plugins and the metrics, connector types and notifier types they registered."""

    def __init__(self, strict: bool = False, trace: bool = False) -> None:
        self.strict = strict
        self.trace = trace
        self.pm = pluggy.PluginManager("crmkpi")
        self.pm.add_hookspecs(hookspecs)
        self._hooks = sorted(name for name, hook in vars(self.pm.hook).items() if hook.has_spec())
        self.plugins: dict[str, PluginInfo] = {}
        self.metrics: dict[str, Metric] = {}
        self.connectors: dict[str, ConnectorType] = {}
        self.notifiers: dict[str, NotifierType] = {}
        self._provider: dict[tuple[str, str], str] = {}
        #: Problems of the selection itself (no plugin to pin them on), e.g. an unknown name in CRMKPI_LOAD_PLUGINS.
        self.warnings: list[str] = []

    def add(self, name: str, plugin: object, info: PluginInfo | None = None) -> None:
        """Register one plugin object and collect what its hooks register."""
        info = info or PluginInfo(name=name, module=getattr(plugin, "__name__", repr(plugin)))
        if not self._claim(name, info):
            return
        problem = self._out_of_range(plugin, info)
        if problem:  # its hooks were written for another API: none of them is called
            self._fail(info, problem)
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validates hook signatures here
            self._fail(info, f"invalid plugin: {exc}")
            return
        callers = self.pm.get_hookcallers(plugin) or []
        info.hooks = sorted(hook.name for hook in callers if hook.has_spec())
        if not callers:  # a plugin that provides nothing would otherwise list as if it had nothing to provide
            unmarked = [hook for hook in self._hooks if callable(getattr(plugin, hook, None))]
            self._fail(info, f"{', '.join(unmarked)} not marked @crmkpi.hookimpl: nothing is registered" if unmarked
                       else "implements no hook (functions marked @crmkpi.hookimpl, named after a hook: "
                            f"{', '.join(self._hooks)})")
        # pluggy accepts a @hookimpl without a spec (one may be added later): here it is a typo nothing calls
        for hook in callers:
            if not hook.has_spec():
                hint = did_you_mean(hook.name, self._hooks) or f" (hooks: {', '.join(self._hooks)})"
                self._fail(info, f"unknown hook {hook.name!r}{hint}")
        self._collect(info, "register_connectors", "connector", ConnectorType, self.connectors, info.connectors)
        self._collect(info, "register_metrics", "metric", Metric, self.metrics, info.metrics)
        self._collect(info, "register_notifiers", "notifier", NotifierType, self.notifiers, info.notifiers)

    def _out_of_range(self, plugin: object, info: PluginInfo) -> str | None:
        """Why ``plugin`` must not load against this plugin API (its declared range excludes it, or cannot be
        read), or None; no declaration is no objection."""
        try:
            declared = getattr(plugin, DECLARATION, None)
        except Exception as exc:  # a module __getattr__ of its own may raise anything
            return f"reading {DECLARATION} raised {type(exc).__name__}: {exc}; not loaded"
        if declared is None:
            return None
        if not isinstance(declared, str):
            return (f"{DECLARATION} must be a string such as '>=1.0,<2', got {type(declared).__name__} "
                    f"{declared!r}; not loaded")
        info.plugin_api = declared
        try:
            compatible = in_range(PLUGIN_API_VERSION, declared)
        except ValueError as exc:
            return f"{DECLARATION} {declared!r} is not a version range: {exc}; not loaded"
        self._trace(info, f"{DECLARATION} {declared!r}: plugin API {PLUGIN_API_VERSION} is "
                          f"{'in' if compatible else 'out of'} range")
        if compatible:
            return None
        return (f"needs plugin API {declared} ({DECLARATION}), but crmkpi {__version__} provides plugin API "
                f"{PLUGIN_API_VERSION}; not loaded")

    def _collect(self, info, hook_name, kind, expected_type, target: dict, provided: list) -> None:
        """Call the plugin's ``hook_name``: each valid item registers, each invalid one is an error of its own.
        The errors are reported after the hook returns: raised in ``register()``, a strict registry's
        error would pass through the plugin's code, which could swallow it."""
        impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if i.plugin_name == info.name]
        problems: list[str] = []

        def register(item: Any) -> None:
            problem = self._invalid(item, kind, expected_type, target)
            self._trace(info, f"register({_summary(item)}) -> {'rejected: ' + problem if problem else 'registered'}")
            if problem:
                problems.append(f"{hook_name}: {problem}")
                return
            key = _key(kind, item)
            target[key] = item
            self._provider[(kind, key)] = info.name
            provided.append(key)

        for impl in impls:
            self._trace(info, f"{hook_name}(register=<callback>)")
            before = len(provided)
            try:
                impl.function(register=register)
            except Exception as exc:  # what it registered before raising stays registered
                problems.append(f"{hook_name}: {exc}")
                outcome = f"raised {type(exc).__name__}: {exc}"
            else:
                outcome = "returned"
            self._trace(info, f"{hook_name} -> {outcome}; registered: {', '.join(provided[before:]) or 'nothing'}")
        for problem in problems:
            self._fail(info, problem)

    def _invalid(self, item: Any, kind: str, expected_type: type, target: dict) -> str | None:
        """Why ``item`` cannot be registered, or None."""
        if not isinstance(item, expected_type):
            return f"register() expects a {expected_type.__name__}, got {_summary(item)}"
        key = _key(kind, item)
        if key in target:
            return (f"duplicate {kind} id {key!r}: already provided by "
                    f"{self.plugins[self._provider[(kind, key)]].describe()}")
        return None

    def _trace(self, info: PluginInfo, message: str) -> None:
        if self.trace:
            print(f"trace: plugin {info.describe()}: {_one_line(message)}", file=sys.stderr)

    def _claim(self, name: str, info: PluginInfo) -> bool:
        """List the plugin under its name; a name already taken (say, by another distribution) fails it."""
        first = self.plugins.setdefault(name, info)
        if first is info:
            return True
        self.plugins[f"{name} ({info.distribution or info.module})"] = info
        self._fail(info, f"plugin name {name!r} is already taken by {first.describe()}")
        return False

    def _fail(self, info: PluginInfo, message: str) -> None:
        message = _one_line(message)
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

    def notifier_type(self, name: str) -> NotifierType:
        try:
            return self.notifiers[name]
        except KeyError:
            known = ", ".join(sorted(self.notifiers)) or "none loaded"
            raise PluginError(f"unknown notifier type {name!r} (known: {known})") from None


def _key(kind: str, item: Metric | ConnectorType | NotifierType) -> str:
    """The id a metric, or the name a connector or notifier type, registers under."""
    return item.id if kind == "metric" else item.name


def _one_line(message: str) -> str:
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _summary(item: Any) -> str:
    """``Metric 'win_rate'``: what a plugin passed to ``register()``, with its id (or name) where it has one."""
    key = getattr(item, "id", None) or getattr(item, "name", None)
    return f"{type(item).__name__} {key!r}" if isinstance(key, str) else type(item).__name__


def installed_entry_points() -> list[EntryPoint]:
    """Every installed entry point of the group: the built-ins first, so that a third-party plugin reusing
    one of their ids is the one rejected, then by name."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (not is_builtin(ep), ep.name))


def is_builtin(ep: EntryPoint) -> bool:
    return _distribution(ep) == BUILTIN_DISTRIBUTION


def selected_entry_points(environ: dict[str, str] | os._Environ = os.environ, distribution: str | None = None,
                          allow: Collection[str] | None = None, deny: Collection[str] = (),
                          installed: list[EntryPoint] | None = None) -> list[EntryPoint]:
    """The entry points to load of those ``installed`` (default: :func:`installed_entry_points`):
    ``CRMKPI_LOAD_PLUGINS`` decides, then ``allow`` and ``deny`` (which leave the built-ins alone); or only
    one distribution's."""
    eps = installed_entry_points() if installed is None else installed
    if distribution is not None:
        return [ep for ep in eps if _distribution(ep) == distribution]
    wanted = _wanted(environ)
    return [ep for ep in eps if (wanted is None or ep.name in wanted)
            and (is_builtin(ep) or ((allow is None or ep.name in allow) and ep.name not in deny))]


def _unknown_wanted(installed: list[EntryPoint], environ: dict[str, str] | os._Environ = os.environ) -> list[str]:
    """A warning for each name in ``CRMKPI_LOAD_PLUGINS`` that no ``installed`` plugin has: a typo there
    would otherwise leave a plugin out without a word."""
    names = [ep.name for ep in installed]
    return [f"{LOAD_PLUGINS_ENV}: no installed plugin is named {name!r}{did_you_mean(name, names)}"
            for name in sorted(_wanted(environ) or ()) if name not in names]


def _overruled(installed: list[EntryPoint], allow: Collection[str] | None, deny: Collection[str],
               environ: dict[str, str] | os._Environ = os.environ) -> list[str]:
    """A warning for each third-party plugin ``CRMKPI_LOAD_PLUGINS`` names that the config's ``plugins:``
    section leaves out: asked for by name, it would otherwise be missing without a word."""
    wanted = _wanted(environ) or set()
    found = []
    for ep in installed:
        if ep.name in wanted and not is_builtin(ep):
            if ep.name in deny:
                found.append(f"{LOAD_PLUGINS_ENV}: {ep.name!r} is not loaded: the config's plugins.deny names it")
            elif allow is not None and ep.name not in allow:
                found.append(f"{LOAD_PLUGINS_ENV}: {ep.name!r} is not loaded: the config's plugins.allow does not "
                             f"name it")
    return found


def _wanted(environ: dict[str, str] | os._Environ) -> set[str] | None:
    """The names ``CRMKPI_LOAD_PLUGINS`` lists; None when it is unset (every plugin)."""
    wanted = environ.get(LOAD_PLUGINS_ENV)
    return None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}


def _distribution(ep: EntryPoint) -> str | None:
    return ep.dist.metadata["Name"] if ep.dist else None


def load_registry(strict: bool = False, extra: dict[str, object] | None = None, distribution: str | None = None,
                  allow: Collection[str] | None = None, deny: Collection[str] = ()) -> Registry:
    """Load every selected entry point on its own (see :func:`selected_entry_points`), then any ``extra``
    plugin objects."""
    registry = Registry(strict=strict, trace=os.environ.get(TRACE_PLUGINS_ENV, "") not in ("", "0"))
    installed = installed_entry_points()  # read once: each read scans every installed distribution
    if distribution is None:
        registry.warnings = [*_unknown_wanted(installed), *_overruled(installed, allow, deny)]
    for ep in selected_entry_points(distribution=distribution, allow=allow, deny=deny, installed=installed):
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
