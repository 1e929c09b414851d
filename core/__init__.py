"""crmkpi: CRM KPIs from Salesforce, HubSpot or files, computed over one normalized store."""

import pluggy

__version__ = "0.1.0"

#: Decorate plugin functions with this to implement a hook from :mod:`crmkpi.hookspecs`.
hookimpl = pluggy.HookimplMarker("crmkpi")

__all__ = ["__version__", "hookimpl"]
