"""A plugin with a misspelt hook (``register_metric``), a hook no spec has, and one valid hook."""

from pydantic import BaseModel

from crmkpi import hookimpl
from crmkpi.connector import ConnectorType


class Settings(BaseModel):
    url: str


@hookimpl
def register_metric(register):
    raise AssertionError("never called: no such hook")


@hookimpl
def on_startup():
    raise AssertionError("never called: no such hook")


@hookimpl
def register_connectors(register):
    register(ConnectorType(name="misnamed_source", description="d", settings=Settings, streams=lambda ctx: []))
