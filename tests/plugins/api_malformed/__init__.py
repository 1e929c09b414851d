"""A plugin whose plugin API range cannot be read: it is reported, and not loaded."""

from crmkpi import hookimpl

CRMKPI_PLUGIN_API = ">= 1.0, and later"


@hookimpl
def register_metrics(register):
    raise AssertionError("the hook of a plugin with an unreadable range must not be called")
