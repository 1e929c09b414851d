"""The Salesforce connector: standard and custom sObjects into the normalized store."""

from __future__ import annotations

from crmkpi import hookimpl
from crmkpi.connector import ConnectorType, Stream, SyncContext
from crmkpi.errors import ConfigError

from .objects import OBJECTS, SObject
from .settings import SalesforceSettings


def _streams(context: SyncContext) -> list[Stream]:
    # Imported here, not at load: simple-salesforce and requests would slow every crmkpi command.
    from .client import SalesforceClient
    from .streams import ObjectStream, References, StageHistoryStream

    settings: SalesforceSettings = context.settings
    objects = dict(OBJECTS)
    for name, options in settings.objects.items():
        where = f"connectors.{context.name}.objects.{name}.table"
        if name in objects:
            if options.table and options.table != objects[name].table:
                raise ConfigError(f"{where}: {name} always maps onto {objects[name].table}")
        elif options.table is None:
            raise ConfigError(f"{where}: needed for {name} (which table it maps onto)")
        else:
            objects[name] = SObject(name, options.table)
    # Custom objects too are read before the objects read by Id when rows point at them (see OBJECTS).
    chosen = sorted((o for o in objects.values() if _enabled(settings, o.name)),
                    key=lambda o: o.before_start_date == "referenced")
    client = SalesforceClient(settings, context.base_dir, context.name)
    references = References()
    return [(StageHistoryStream if o.kind == "stage_history" else ObjectStream)(
        client, o, settings.objects.get(o.name), settings, context, references) for o in chosen]


def _enabled(settings: SalesforceSettings, name: str) -> bool:
    options = settings.objects.get(name)
    return options is None or options.enabled


@hookimpl
def register_connectors(register):
    register(
        ConnectorType(
            name="salesforce",
            description="Salesforce org (REST and Bulk API 2.0): users, accounts, contacts, leads, "
                        "opportunities with stage history, stages, cases, custom objects",
            settings=SalesforceSettings,
            streams=_streams,
            atomic=False,
        )
    )
