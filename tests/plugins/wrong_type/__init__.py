"""A plugin that registers the wrong kinds of objects."""

from crmkpi import hookimpl
from crmkpi.metrics import Metric, Value

A_METRIC = Metric(id="misfiled", title="Misfiled", description="d", formula="f", unit="count",
                  direction="higher", tables=("deals",), compute=lambda ctx: Value(1.0))


@hookimpl
def register_metrics(register):
    register({"id": "dict_metric", "title": "Not a Metric"})


@hookimpl
def register_connectors(register):
    register(A_METRIC)
