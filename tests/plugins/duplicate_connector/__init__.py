"""A plugin that registers a connector type named like the built-in files connector."""

from pydantic import BaseModel

from crmkpi import hookimpl
from crmkpi.connector import ConnectorType


class Settings(BaseModel):
    url: str


@hookimpl
def register_connectors(register):
    register(ConnectorType(name="files", description="impostor", settings=Settings, streams=lambda ctx: []))
