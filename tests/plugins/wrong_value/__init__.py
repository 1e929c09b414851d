"""Metrics that return the wrong type: ``compute`` a float, ``grouped`` floats or a list."""

from crmkpi import hookimpl
from crmkpi.metrics import Metric, Value


def metric(metric_id: str, compute, grouped=None) -> Metric:
    return Metric(id=metric_id, title=metric_id, description="d", formula="f", unit="count", direction="higher",
                  tables=("deals",), compute=compute, grouped=grouped)


@hookimpl
def register_metrics(register):
    register(metric("float_metric", lambda ctx: 1.0))
    register(metric("grouped_floats", lambda ctx: Value(1.0), lambda grid: {cell: 1.0 for cell in grid.cells}))
    register(metric("grouped_list", lambda ctx: Value(1.0), lambda grid: [Value(1.0) for cell in grid.cells]))
