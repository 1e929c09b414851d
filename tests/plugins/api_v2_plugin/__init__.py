"""A plugin written for a plugin API this crmkpi does not provide: it must be reported, and its hooks never run."""

from crmkpi import Metric, Value, hookimpl

CRMKPI_PLUGIN_API = ">=2.0,<3"


@hookimpl
def register_metrics(register):
    raise AssertionError("the hook of a plugin out of range must not be called")


FUTURE = Metric(id="future_metric", title="Future", description="From API 2.", formula="-", unit="count",
                direction="higher", tables=("deals",), compute=lambda ctx: Value(1.0))
