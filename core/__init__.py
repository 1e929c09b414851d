"""crmkpi: CRM KPIs from Salesforce, HubSpot or files, computed over one normalized store.

What a plugin imports comes from here, ``from crmkpi import hookimpl, Metric, Value``: the names of
``__all__`` and the hooks of :mod:`crmkpi.hookspecs` are the plugin API, whose version is
``PLUGIN_API_VERSION`` and whose stability docs/compatibility.md promises. Every other name of
crmkpi's modules is internal. The names are imported on first use (PEP 562), so that ``import
crmkpi`` stays cheap: every command imports each plugin, and a plugin importing ``hookimpl`` alone
must not pull in SQLAlchemy and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

from .plugin_api import PLUGIN_API_VERSION

#: The version of the crmkpi distribution (the plugin API has its own, ``PLUGIN_API_VERSION``).
__version__ = "0.1.0"

#: Decorate plugin functions with this to implement a hook from :mod:`crmkpi.hookspecs`.
hookimpl = pluggy.HookimplMarker("crmkpi")

#: Each public name imported on first use, and the module of crmkpi that defines it.
_LAZY = {
    # metrics: what a metric declares, receives and returns
    "Metric": "metrics", "MetricContext": "metrics", "Param": "metrics", "Value": "metrics", "Input": "metrics",
    "Converted": "metrics", "TABLES": "models", "ratio": "metrics", "at_least": "metrics",
    "stat_param": "metrics", "statistic": "metrics", "stat_value": "metrics", "duration_sums": "metrics",
    "PERCENTILES": "metrics", "STAT_DOC": "metrics",
    "Cell": "grouped", "Grid": "grouped", "left_out_note": "grouped", "by_label": "grouped",
    "instant": "sqlkit", "evaluated_once": "sqlkit",
    "Period": "periods",
    "same_results": "engine",
    # errors a plugin raises (or catches)
    "CrmkpiError": "errors", "ConfigError": "errors", "ConnectorError": "errors", "SourceDataError": "errors",
    "MetricError": "errors",
    # connectors: what a connector registers, receives and yields
    "ConnectorType": "connector", "SyncContext": "connector", "Stream": "connector", "StreamStats": "connector",
    "Checkpoint": "connector", "Coverage": "connector", "StartDate": "connector",
    "RowBuilder": "normalize", "RecordRows": "normalize", "Layout": "normalize", "Derivation": "normalize",
    "FieldError": "normalize",
    "retry_policy": "http",
    # notifiers: what a notifier registers, sends and raises (plugin API 1.1)
    "NotifierType": "notify", "Message": "notify", "NotifierError": "errors",
}

# Type checkers read these; at run time __getattr__ imports each on first use.
if TYPE_CHECKING:
    from .connector import Checkpoint, ConnectorType, Coverage, StartDate, Stream, StreamStats, SyncContext
    from .engine import same_results
    from .errors import ConfigError, ConnectorError, CrmkpiError, MetricError, NotifierError, SourceDataError
    from .grouped import Cell, Grid, by_label, left_out_note
    from .http import retry_policy
    from .metrics import (PERCENTILES, STAT_DOC, Converted, Input, Metric, MetricContext, Param, Value, at_least,
                          duration_sums, ratio, stat_param, stat_value, statistic)
    from .models import TABLES
    from .notify import Message, NotifierType
    from .normalize import Derivation, FieldError, Layout, RecordRows, RowBuilder
    from .periods import Period
    from .sqlkit import evaluated_once, instant

__all__ = [
    "__version__", "PLUGIN_API_VERSION", "hookimpl",
    "Metric", "MetricContext", "Param", "Value", "Input", "Converted", "TABLES", "ratio", "at_least", "stat_param",
    "statistic", "stat_value", "duration_sums", "PERCENTILES", "STAT_DOC",
    "Cell", "Grid", "left_out_note", "by_label", "instant", "evaluated_once", "Period", "same_results",
    "CrmkpiError", "ConfigError", "ConnectorError", "SourceDataError", "MetricError",
    "ConnectorType", "SyncContext", "Stream", "StreamStats", "Checkpoint", "Coverage", "StartDate",
    "RowBuilder", "RecordRows", "Layout", "Derivation", "FieldError", "retry_policy",
    "NotifierType", "Message", "NotifierError",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crmkpi' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is an ordinary one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
