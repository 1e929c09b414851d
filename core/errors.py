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
    """SIGTERM (systemd, a container stop, ``kill``): unwinds like Ctrl-C, through the same cleanup.

    Raising it from the signal handler can be lost: when the signal lands while a finalizer runs (a
    ``__del__``, a weakref callback), Python prints "Exception ignored in ..." and goes on. So the
    handler also sets ``requested``, and work that commits checks it first (:meth:`check`)."""

    requested = False

    @classmethod
    def check(cls) -> None:
        """Raise if a SIGTERM arrived, even one whose exception a finalizer swallowed."""
        if cls.requested:
            raise cls()


class NotifierError(CrmkpiError):
    """A notification could not be sent; ``retry`` says whether sending it again may succeed.

    A notifier raises it from ``send`` with a one-line message that names no secret. ``retry=False``
    when another attempt cannot help (the receiver refused the message) or could send it twice (the
    request went out and no answer came back)."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry
