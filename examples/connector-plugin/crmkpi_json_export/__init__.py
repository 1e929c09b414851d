"""An example third-party connector plugin: ``type: json_export``, a folder with one JSON export per table.

A CRM that exports ``deals.json``, ``accounts.json``, ... (any normalized table), each an object with the
table's ``records`` and the ids of the records it ``deleted``, is synced incrementally: each stream keeps
the position of the last record it committed as its cursor (that record's ``updated_at``) and state (its
id), and the next sync reads only the records after it. See ``stream.py`` for the sync's side of it.
"""

from crmkpi import ConnectorType, hookimpl

from .settings import JsonExportSettings
from .stream import export_streams

#: The plugin API versions this plugin is written for (docs/compatibility.md).
CRMKPI_PLUGIN_API = ">=1.0,<2"


@hookimpl
def register_connectors(register):
    register(ConnectorType(
        name="json_export",
        description="a folder of JSON exports, one <table>.json per table, synced incrementally by updated_at",
        settings=JsonExportSettings,
        streams=export_streams,
        # Not atomic: each checkpoint commits its records with the cursor, so a failed sync resumes after them.
        atomic=False,
    ))
