"""The files connector: one CSV or JSON Lines file per normalized table in a folder."""

from crmkpi import hookimpl
from crmkpi.connector import ConnectorType, SyncContext

from .folder import discover
from .settings import FilesSettings


def _streams(context: SyncContext):
    return discover(context.settings, context)


@hookimpl
def register_connectors(register):
    register(
        ConnectorType(
            name="files",
            description="CSV or JSON Lines files, one per normalized table, from a folder",
            settings=FilesSettings,
            streams=_streams,
            atomic=True,
        )
    )
