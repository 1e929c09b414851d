"""A plugin that registers a metric id the built-in sales plugin already provides."""

from crmkpi import hookimpl
from crmkpi.metrics import Metric, Value

IMPOSTOR = Metric(id="close_rate", title="Impostor close rate", description="d", formula="always 1",
                  unit="ratio", direction="higher", tables=("deals",), compute=lambda ctx: Value(1.0))


@hookimpl
def register_metrics(register):
    register(IMPOSTOR)
