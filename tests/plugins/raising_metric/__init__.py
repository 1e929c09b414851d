"""A third-party metric with a bug: its compute raises. A run must carry on without it."""

from crmkpi import hookimpl
from crmkpi.metrics import Metric, MetricContext, Value


def lookup(ctx: MetricContext) -> Value:
    raise KeyError("segment_weights")


BROKEN = Metric(id="weighted_pipeline", title="Weighted pipeline", description="d", formula="f", unit="currency",
                direction="higher", tables=("deals",), compute=lookup)


@hookimpl
def register_metrics(register):
    register(BROKEN)
