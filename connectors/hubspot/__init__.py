"""The HubSpot connector: owners, pipelines, companies, contacts, leads, deals, stage history, tickets."""

from __future__ import annotations

from crmkpi import hookimpl
from crmkpi.connector import ConnectorType, SyncContext

from .settings import HubSpotSettings


def _streams(context: SyncContext) -> list:
    # Imported here, not at load: hubspot-api-client would slow every crmkpi command.
    from .client import HubSpotClient
    from .streams import build_streams

    return build_streams(context.settings, context, HubSpotClient(context.settings, context.base_dir))


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
