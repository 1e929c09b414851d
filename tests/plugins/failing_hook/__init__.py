"""A plugin whose hook raises after registering one metric (which stays registered)."""

from crmkpi import hookimpl
from crmkpi.metrics import Metric, Value

HALF = Metric(id="half_registered", title="Half", description="d", formula="f", unit="count",
              direction="higher", tables=("deals",), compute=lambda ctx: Value(1.0))


@hookimpl
def register_metrics(register):
    register(HALF)
    raise ValueError("hook exploded: no API key")
