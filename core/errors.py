"""The error hierarchy. The CLI prints any of these as one line; tracebacks only with --debug."""


class CrmkpiError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(CrmkpiError):
    """The configuration file (or a command-line option) is wrong."""


class PluginError(CrmkpiError):
    """A plugin failed to load or registered something invalid."""


class ConnectorError(CrmkpiError):
    """A connector could not read its source."""


class SourceDataError(ConnectorError):
    """A record from a source is malformed; the message names where."""


class MetricError(CrmkpiError):
    """A metric could not be computed as asked."""


class StoreError(CrmkpiError):
    """The normalized store could not be opened, migrated or written."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, a container stop, ``kill``): unwinds like Ctrl-C, through the same cleanup."""
