"""The HubSpot connector: owners, pipelines, companies, contacts, leads, deals, stage history, tickets."""

from __future__ import annotations

from crmkpi import hookimpl
from crmkpi.connector import ConnectorType, SyncContext

from .client import HubSpotClient
from .settings import HubSpotSettings
from .streams import build_streams


def _streams(context: SyncContext) -> list:
    return build_streams(context.settings, context, HubSpotClient(context.settings))


@hookimpl
def register_connectors(register):
    register(
        ConnectorType(
            name="hubspot",
            description="HubSpot CRM (v3 API): owners, pipelines, companies, contacts, leads, deals with "
                        "stage history, tickets; incremental, archived records marked deleted",
            settings=HubSpotSettings,
            streams=_streams,
            atomic=False,
        )
    )
