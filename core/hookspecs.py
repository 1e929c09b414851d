"""Hook specifications: the whole plugin API.

A plugin is a module (or object) with functions decorated by :data:`crmkpi.hookimpl`,
published under the ``crmkpi`` entry-point group. Each hook receives a ``register``
callback; the core validates what is registered, rejects duplicate ids and remembers
which plugin provided it. Built-in connectors and metrics use exactly these hooks.
New capabilities are added as new ``register_*`` hooks here (``register_notifiers`` came with plugin API 1.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from .connector import ConnectorType
    from .metrics import Metric
    from .notify import NotifierType

hookspec = pluggy.HookspecMarker("crmkpi")


@hookspec
def register_connectors(register: Callable[[ConnectorType], None]) -> None:
    """Register connector types.

    Call ``register(ConnectorType(...))`` once per connector type. The type's ``name``
    is what users write as ``type:`` in a connector's config.
    """


@hookspec
def register_metrics(register: Callable[[Metric], None]) -> None:
    """Register metrics.

    Call ``register(Metric(...))`` once per metric. Ids are global: registering an id
    another plugin already registered is an error naming both plugins.
    """



@hookspec
def register_notifiers(register: Callable[[NotifierType], None]) -> None:
    """Register notifier types (new in plugin API 1.1).

    Call ``register(NotifierType(...))`` once per kind of channel. The type's ``name`` is what users
    write as ``type:`` in a channel of the config's ``channels:`` section; names are global, like
    connector types. crmkpi records each delivery before calling ``send`` and retries it, so a
    notifier only sends (docs/notifications.md).
    """
