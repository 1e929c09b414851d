"""A plugin whose one hook registers valid metrics among invalid items: each invalid one is an error of
its own, and the valid ones load."""

from pydantic import BaseModel

from crmkpi import hookimpl
from crmkpi.connector import ConnectorType
from crmkpi.metrics import Metric, Value


class Settings(BaseModel):
    url: str


def metric(metric_id: str) -> Metric:
    return Metric(id=metric_id, title=metric_id, description="d", formula="f", unit="count", direction="higher",
                  tables=("deals",), compute=lambda ctx: Value(1.0))


@hookimpl
def register_metrics(register):
    register(metric("first_good"))
    register({"id": "dict_metric"})
    register(metric("close_rate"))  # the built-in sales plugin's
    register(ConnectorType(name="misfiled_source", description="d", settings=Settings, streams=lambda ctx: []))
    register(metric("first_good"))  # its own, again
    register(metric("second_good"))
